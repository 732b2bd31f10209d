"""The golden LV: built on a host with a thin pool, after which the template's guests there are thin snapshots
of it by themselves; hosts without one (or without the golden LV) go on cloning the directory."""

from __future__ import annotations

import pytest

from labs.dom0.simulated import SimulatedHost
from labs.jobs.connect import host_config
from labs.models import Guest, LabTemplate, Task
from labs.services import ServiceError, create_lab_batch
from labs.services.templates import clone_method_on, enqueue_golden_build, uses_thin

from .helpers import roster, work

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def thin_host(host, sim_dir):
    host.thin_pool = "pool0"
    host.save(update_fields=["thin_pool"])
    SimulatedHost(host_config(host)).set_thin_pool_size(20000)
    return host


def _build(host, template, actor, capture) -> Task:
    with capture(execute=True):
        task = enqueue_golden_build(host, template, actor=actor)
    work(host.queue_name)
    task.refresh_from_db()
    return task


def test_the_button_s_job_builds_the_golden_lv_and_guests_become_thin_snapshots(
    thin_host, template, pool, ivy, admin_user, django_capture_on_commit_callbacks
):
    assert template.clone_method == LabTemplate.CloneMethod.MKFS and not uses_thin(template)
    task = _build(thin_host, template, admin_user, django_capture_on_commit_callbacks)
    assert task.status == Task.Status.SUCCEEDED, task.log
    assert (task.kind, task.steps_done, task.steps_total) == ("build_golden", 4, 4)
    template.refresh_from_db()
    golden = f"xenpanel-golden-{template.pk}"
    assert template.golden_volume == golden and uses_thin(template)
    sim = SimulatedHost(host_config(thin_host))
    volumes = sim.volumes()
    assert golden in volumes and f"{golden}.new" not in volumes and volumes[golden]["thin"]
    assert ["lvrename", "vg0", f"{golden}.new", golden] in sim.history

    create_lab_batch(ivy, template, pool, roster("s1"), memory_mb=64, slug="gold")
    work(thin_host.queue_name)
    guest = Guest.objects.get()
    assert guest.status == Guest.Status.READY, guest.last_error
    log = guest.tasks.get().log
    assert f"thin snapshot /dev/vg0/{guest.root_lv} of {golden}" in log
    assert sim.volumes()[guest.root_lv].get("origin") == golden


def test_a_rebuild_replaces_the_golden_lv_and_keeps_existing_clones(
    thin_host, template, admin_user, django_capture_on_commit_callbacks
):
    _build(thin_host, template, admin_user, django_capture_on_commit_callbacks)
    template.refresh_from_db()
    sim = SimulatedHost(host_config(thin_host))
    sim.snapshot_volume(template.golden_volume, "vm-old.raiz")
    serial = sim.volume_serial(template.golden_volume)
    task = _build(thin_host, template, admin_user, django_capture_on_commit_callbacks)
    assert task.status == Task.Status.SUCCEEDED, task.log
    assert sim.volume_serial(template.golden_volume) != serial
    assert "vm-old.raiz" in sim.volumes()


def test_no_thin_pool_no_golden_lv(host, sim_dir, template, admin_user):
    with pytest.raises(ServiceError, match="has no thin pool"):
        enqueue_golden_build(host, template, actor=admin_user)
    assert not Task.objects.exists()


def test_the_method_is_picked_per_host():
    template = LabTemplate(clone_method=LabTemplate.CloneMethod.MKFS, golden_volume="xenpanel-golden-1")
    assert clone_method_on(template, "pool0", {"xenpanel-golden-1": None}) == "thin"
    assert clone_method_on(template, "", {"xenpanel-golden-1": None}) == "mkfs"  # no thin pool
    assert clone_method_on(template, "pool0", {}) == "mkfs"  # not built on this host
    copy = LabTemplate(clone_method=LabTemplate.CloneMethod.COPY)
    assert clone_method_on(copy, "pool0", {}) == "copy"
