"""Faults injected into the simulated dom0, hit by a real `manage.py rqworker` process.

Each test checks what is left afterwards: the guest's state and error text,
no leaked volume, config or domain on the host, and the guest's IP and name
held by that guest only (and free again after a teardown).
"""

from __future__ import annotations

import netaddr
import pytest

from labs.models import AuditEvent, Guest, Task
from labs.services import create_lab_batch, guest_action, lab_action
from labs.services.ipam import free_ips

from .helpers import finish_worker, roster, start_worker, work

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def batch(ivy, alice, bob, host, template, pool, sim):
    return create_lab_batch(ivy, template, pool, roster("alice", "bob"), memory_mb=256, slug="net")


def run_worker(sim_dir, host) -> str:
    return finish_worker(start_worker(sim_dir, host.queue_name))


def assert_clean_failure(sim, guest: Guest, step: str, text: str) -> None:
    guest.refresh_from_db()
    assert guest.status == "failed" and guest.busy_with == ""
    assert guest.last_error.startswith(f"{step}: ") and text in guest.last_error, guest.last_error
    task = Task.objects.get(guest=guest, kind="provision")
    assert task.status == "failed" and task.step == step and text in task.error
    assert f"FAILED in step {step}" in task.log
    assert AuditEvent.objects.get(task=task).result == "failed"
    # Nothing of alice's guest is left on the host...
    assert not any(v.startswith("vm-net-alice.") for v in sim.volumes())
    assert "net-alice" not in sim.configs() and "net-alice" not in sim.domains()
    # ...while bob's guest came up normally.
    assert Guest.objects.get(domain_name="net-bob").status == "ready"
    assert "net-bob" in sim.domains()
    # The IP stays with the failed guest (for its retry) and nobody else.
    assert Guest.objects.filter(ip=guest.ip).count() == 1
    assert netaddr.IPAddress(guest.ip) not in free_ips(guest.pool)


def retry_and_check(ivy, guest: Guest, sim) -> None:
    [task] = lab_action(ivy, guest.lab, "retry_failed")
    assert task.guest_id == guest.pk
    work(guest.host.queue_name)
    guest.refresh_from_db()
    assert guest.status == "ready", guest.last_error
    assert guest.last_error == ""
    assert {v for v in sim.volumes() if v.startswith("vm-net-alice.")} == {"vm-net-alice.raiz", "vm-net-alice.swap"}
    assert sim.domains()["net-alice"]["state"] == "-b----"


def test_lvcreate_out_of_space(batch, sim, sim_dir, host, ivy):
    # The root volume is created, then the swap volume does not fit.
    sim.inject("lvcreate", "no_space", match="vm-net-alice.swap", times=1)
    run_worker(sim_dir, host)
    alice = Guest.objects.get(domain_name="net-alice")
    assert_clean_failure(sim, alice, "volumes", "insufficient free space")
    assert "lvcreate" in Task.objects.get(guest=alice).error  # the command is in the detail
    retry_and_check(ivy, alice, sim)


def test_clone_failure(batch, sim, sim_dir, host, ivy):
    sim.inject("clone", "no_space", match="vm-net-alice.raiz", times=1)
    run_worker(sim_dir, host)
    alice = Guest.objects.get(domain_name="net-alice")
    assert_clean_failure(sim, alice, "clone", "Could not allocate block")
    retry_and_check(ivy, alice, sim)


def test_xl_create_failure(batch, sim, sim_dir, host, ivy):
    sim.inject("create", "no_memory", match="net-alice", times=1)
    run_worker(sim_dir, host)
    alice = Guest.objects.get(domain_name="net-alice")
    assert_clean_failure(sim, alice, "create", "Out of memory")
    retry_and_check(ivy, alice, sim)


def test_failed_guest_teardown_frees_ip_and_name(batch, sim, sim_dir, host, alice, ivy, template, pool):
    sim.inject("clone", "error", match="vm-net-alice.raiz")
    run_worker(sim_dir, host)
    guest = Guest.objects.get(domain_name="net-alice")
    assert guest.status == "failed"
    ip = guest.ip
    guest_action(ivy, guest, "teardown")
    run_worker(sim_dir, host)
    assert not Guest.objects.filter(domain_name="net-alice").exists()
    assert netaddr.IPAddress(ip) in free_ips(pool)
    assert not any(v.startswith("vm-net-alice.") for v in sim.volumes())


def test_failed_action_keeps_the_guest_usable(batch, sim, sim_dir, host, alice):
    run_worker(sim_dir, host)
    guest = Guest.objects.get(domain_name="net-alice")
    sim.inject("pause", "error", match="net-alice", times=1)
    task = guest_action(alice, guest, "pause")
    run_worker(sim_dir, host)
    task.refresh_from_db()
    guest.refresh_from_db()
    assert task.status == "failed" and "xl pause" in task.error and "simulated failure" in task.error
    assert guest.status == "ready" and guest.busy_with == "" and guest.observed_state == "b"
    assert "pause" in guest.last_error
    assert AuditEvent.objects.get(task=task).result == "failed"
    # Nothing was cleaned up: a failed pause must not cost the student their disk.
    assert {"vm-net-alice.raiz", "vm-net-alice.swap"} <= set(sim.volumes())
