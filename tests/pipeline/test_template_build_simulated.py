"""The demo's simulated dom0 builds a template through the real job and queue, and registers it."""

from __future__ import annotations

import pytest

from labs.dom0.simulated import SimulatedHost
from labs.jobs.connect import host_config
from labs.models import AuditEvent, LabTemplate, Task
from labs.services.templates import enqueue_template_build, make_spec

from .helpers import work

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/srv/xenpanel/templates/debian-12-sim"


def test_the_simulated_dom0_builds_and_the_template_is_registered(
    host, sim_dir, admin_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        task = enqueue_template_build(host, "debian-12-sim", make_spec(path=PATH), actor=admin_user)
    work(host.queue_name)
    task.refresh_from_db()
    assert task.status == Task.Status.SUCCEEDED, task.log
    assert (task.steps_done, task.steps_total) == (3, 3)
    assert "(simulated) debootstrap --variant=minbase" in task.log
    assert "registered template debian-12-sim" in task.log
    template = LabTemplate.objects.get(name="debian-12-sim")
    assert template.rootfs_path == PATH and template.kernel.startswith(f"{PATH}/boot/vmlinuz-")
    assert AuditEvent.objects.get(task=task).result == AuditEvent.Result.SUCCEEDED
    # The tree is on the simulated host, with the recipe's touches.
    tree = SimulatedHost(host_config(host)).templates()[PATH]
    assert "alias ls='ls --color=auto'" in tree["files"]["/etc/profile"]


def test_a_second_build_at_the_same_path_fails_in_words(host, sim_dir, django_capture_on_commit_callbacks):
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            task = enqueue_template_build(host, "twice", make_spec(path=PATH))
        work(host.queue_name)
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert task.error == f"bootstrap: {PATH} already exists: choose another path, or replace it (rebuild)"
