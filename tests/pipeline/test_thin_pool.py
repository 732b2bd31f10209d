"""Thin pools: the health check reads the pool's fill, and no new thin clones go to a nearly full pool.

A full thin pool makes every guest on it fail writes; the panel has to see
it coming and stop adding clones there.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.utils import translation

from labs.dom0.simulated import SimulatedHost
from labs.jobs.connect import host_config
from labs.jobs.host import health_check
from labs.models import AuditEvent, Guest, Host, Lab, LabTemplate, Task
from labs.services import QuotaExceeded, create_lab_batch
from labs.services.thin_pool import THIN_POOL_FULL_PERCENT, thin_pool_fill, thin_pool_full

from .helpers import roster, work

pytestmark = pytest.mark.django_db(transaction=True)

POOL_MB = 1000  # the simulated pool's size: 10 MiB is 1 %


@pytest.fixture
def thin_host(host, sim_dir) -> Host:
    host.thin_pool = "pool0"
    host.save(update_fields=["thin_pool"])
    return host


@pytest.fixture
def thin_sim(thin_host) -> SimulatedHost:
    """The simulated dom0 of `thin_host` with a golden LV to clone, its pool POOL_MB MiB."""
    sim = SimulatedHost(host_config(thin_host))
    sim.set_thin_pool_size(POOL_MB)
    golden = sim.create_volume("golden", POOL_MB)
    sim.clone_template("/modelo", golden.path, "ext4", "mkfs")
    return sim


@pytest.fixture
def thin_template(template) -> LabTemplate:
    """A twin of the shared template whose guests are thin snapshots of the golden LV."""
    twin = LabTemplate.objects.get(pk=template.pk)
    twin.pk, twin.name = None, "debian-12-thin"
    twin.golden_volume, twin.clone_method, twin.swap_size_mb = "golden", LabTemplate.CloneMethod.THIN, 0
    twin.save()
    return twin


def fill(sim: SimulatedHost, percent: float) -> None:
    """Make the pool `percent` full: a clone whose guest wrote that much."""
    sim.snapshot_volume("golden", "vm-filler.raiz")
    sim.guest_writes("vm-filler.raiz", round(POOL_MB * percent / 100))


def test_threshold_counts_data_and_metadata():
    assert THIN_POOL_FULL_PERCENT == 90.0
    assert not thin_pool_full(89.99, 10.0)
    assert thin_pool_full(90.0, None)
    assert thin_pool_full(5.0, 90.0)
    assert not thin_pool_full(89.99, None)


def test_health_check_reports_the_fill_in_words(thin_host, thin_sim):
    report = health_check(thin_host.pk)
    assert report["thin_pool"] == {
        "ok": True,
        "detail": "Thin pool vg0/pool0: 0 % data, 0 % metadata used",
        "data_percent": 0.0,
        "metadata_percent": 0.0,
    }
    fill(thin_sim, 42)
    health_check(thin_host.pk)
    thin_host.refresh_from_db()
    assert thin_host.health_ok is True
    assert thin_host.health_report["thin_pool"]["detail"] == "Thin pool vg0/pool0: 42 % data, 10.5 % metadata used"


def test_health_check_is_not_ok_at_the_threshold(thin_host, thin_sim):
    fill(thin_sim, 90)
    health_check(thin_host.pk)
    thin_host.refresh_from_db()
    check = thin_host.health_report["thin_pool"]
    assert thin_host.health_ok is False and check["ok"] is False
    assert check["detail"] == (
        "Thin pool vg0/pool0: 90 % data, 22.5 % metadata used: nearly full, no new thin clones go here"
    )
    assert check["data_percent"] == 90.0
    # The other checks are unaffected.
    assert all(thin_host.health_report[name]["ok"] for name in ("xen", "volume_group", "bridge", "dom0_reserve"))


def test_health_check_of_a_missing_pool(thin_host, thin_sim):
    thin_sim.inject("thin_pool_usage", kind="no_pool", times=1)
    health_check(thin_host.pk)
    thin_host.refresh_from_db()
    check = thin_host.health_report["thin_pool"]
    assert check["ok"] is False and 'Failed to find logical volume "vg0/pool0"' in check["detail"]
    assert thin_host.health_ok is False
    assert thin_pool_fill(thin_host) is None  # unknown, not empty


def test_host_without_a_pool_has_no_thin_pool_check(host, sim):
    assert "thin_pool" not in health_check(host.pk)


def _nothing_created(users: int) -> None:
    assert Lab.objects.count() == Guest.objects.count() == Task.objects.count() == AuditEvent.objects.count() == 0
    assert User.objects.count() == users


def test_no_new_thin_clones_on_a_nearly_full_pool(ivy, thin_host, thin_sim, thin_template, template, pool):
    fill(thin_sim, 93)
    health_check(thin_host.pk)
    users = User.objects.count()
    with pytest.raises(QuotaExceeded) as info:
        create_lab_batch(ivy, thin_template, pool, roster("s1", "s2"), memory_mb=64)
    message = info.value.message
    assert "thin clones" in message and "90 % full or more" in message
    assert "dom0-a (Thin pool vg0/pool0: 93 % data, 23.3 % metadata used)" in message, message
    assert info.value.field == "hosts"
    _nothing_created(users)
    # Guests that are not thin clones do not use the pool: they are still placed there.
    batch = create_lab_batch(ivy, template, pool, roster("s1"), memory_mb=64)
    assert [g.host_id for g in batch.guests] == [thin_host.pk]


def test_the_refusal_gives_the_fill_in_the_users_language(ivy, thin_host, thin_sim, thin_template, pool):
    fill(thin_sim, 93)
    health_check(thin_host.pk)
    with translation.override("pt-br"), pytest.raises(QuotaExceeded) as info:
        create_lab_batch(ivy, thin_template, pool, roster("s1"), memory_mb=64)
    message = str(info.value.message)
    assert "Thin pool vg0/pool0: 93 % dos dados e 23,3 % dos metadados usados" in message, message
    assert "metadata used" not in message


def test_thin_clones_go_to_a_host_whose_pool_has_room(ivy, thin_host, thin_sim, thin_template, pool, second_host):
    second_host.thin_pool = "pool0"
    second_host.health_report = {
        "thin_pool": {"ok": True, "detail": "", "data_percent": 10.0, "metadata_percent": 2.0}
    }
    second_host.save()
    fill(thin_sim, 95)
    health_check(thin_host.pk)  # dom0-a has more free memory but a nearly full pool
    batch = create_lab_batch(ivy, thin_template, pool, roster("s1", "s2"), memory_mb=64)
    assert {g.host_id for g in batch.guests} == {second_host.pk}


def test_thin_clones_below_the_threshold_are_provisioned(ivy, thin_host, thin_sim, thin_template, pool):
    fill(thin_sim, 50)
    health_check(thin_host.pk)
    create_lab_batch(ivy, thin_template, pool, roster("s1"), memory_mb=64, slug="thin")
    work(thin_host.queue_name)
    guest = Guest.objects.get()
    assert guest.status == Guest.Status.READY, guest.last_error
    # Provisioning wrote to the clone: the pool holds more than the filler now.
    assert thin_sim.thin_pool_usage().data_percent > 50.0
