"""Memory promised to queued and running resizes counts against the quota and the host (issue 13, part 2).

A student with a 1024 MiB quota and two 256 MiB guests asks for 768 MiB on
both: the second request is refused whether the two arrive at the same
instant or one after the other while the first job waits or runs.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection

from labs.models import Guest, Host, StudentQuota, Task
from labs.services import QuotaExceeded, create_lab_batch, guest_action, memory_limits, quotas
from labs.services.capacity import allocated_mb

from .helpers import finish_worker, roster, start_worker, wait_for, work
from .test_concurrency import submit_together

pytestmark = pytest.mark.django_db(transaction=True)

OVER_QUOTA = "alice would use 1536 MiB of memory; the limit is 1024 MiB (maximum total memory)."


@pytest.fixture
def two_guests(ivy, alice, host, template, pool, sim) -> tuple[Guest, Guest]:
    """alice's two running 256 MiB guests, in two labs, with a quota of 1024 MiB."""
    StudentQuota.objects.create(user=alice, max_guests=2, max_memory_mb=1024)
    for slug in ("one", "two"):
        create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=256, slug=slug)
    work(host.queue_name)
    guests = tuple(Guest.objects.select_related("lab", "host", "student").order_by("domain_name"))
    assert [(g.domain_name, g.status, g.memory_mb) for g in guests] == [
        ("one-alice", "ready", 256),
        ("two-alice", "ready", 256),
    ]
    return guests


def _mem_tasks() -> list[tuple[str, int]]:
    return sorted((t.guest.domain_name, t.args["memory_mb"]) for t in Task.objects.filter(kind="mem_set"))


def test_two_resizes_at_once_do_not_both_pass(alice, two_guests, monkeypatch):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite runs one writing transaction at a time (BEGIN IMMEDIATE): no race to lose")
    one, two = two_guests
    read_usage = quotas.usage_for

    def slow_usage_for(*args, **kwargs):
        # Both requests would read the memory in use before either commits its Task.
        usage = read_usage(*args, **kwargs)
        time.sleep(0.5)
        return usage

    monkeypatch.setattr(quotas, "usage_for", slow_usage_for)
    results = submit_together(
        lambda: guest_action(alice, one, "mem_set", memory_mb=768),
        lambda: guest_action(alice, two, "mem_set", memory_mb=768),
    )
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1, results
    assert isinstance(refused[0], QuotaExceeded) and refused[0].message == OVER_QUOTA
    assert len(_mem_tasks()) == 1


@pytest.mark.parametrize("first_job", ["queued", "running"])
def test_a_resize_waiting_or_running_holds_its_memory(alice, two_guests, host, sim_dir, first_job):
    one, two = two_guests
    task = guest_action(alice, one, "mem_set", memory_mb=768)
    worker = None
    if first_job == "running":
        # A slow simulated dom0 (xl mem-set takes 2 s): the job is caught in the middle of its step.
        worker = start_worker(sim_dir, host.queue_name, delay=20.0)
        wait_for(lambda: Task.objects.filter(pk=task.pk, status="running", step="mem_set").exists(), timeout=60)
    assert Guest.objects.get(pk=one.pk).memory_mb == 256  # not resized yet
    with pytest.raises(QuotaExceeded) as refused:
        guest_action(alice, two, "mem_set", memory_mb=768)
    assert refused.value.message == OVER_QUOTA
    # What still fits is allowed, and the guest page offers no more than that.
    assert memory_limits(Guest.objects.get(pk=two.pk)) == (32, 256)
    if worker is not None:
        finish_worker(worker)
    else:
        work(host.queue_name)
    task.refresh_from_db()
    assert task.status == "succeeded", task.log
    assert Guest.objects.get(pk=one.pk).memory_mb == 768
    assert _mem_tasks() == [("one-alice", 768)]
    # Once done the promise is the guest's size: the same sum, counted once.
    assert quotas.usage_for([alice])[alice.pk] == quotas.Usage(2, 1024)


def test_a_waiting_resize_holds_its_memory_on_the_host(alice, bob, ivy, host, template, pool, sim):
    # Two students with room in their quotas share a host that has room for one resize only.
    create_lab_batch(ivy, template, pool, roster("alice", "bob"), memory_mb=256, slug="net")
    work(host.queue_name)
    Host.objects.filter(pk=host.pk).update(total_memory_mb=host.dom0_reserve_mb + 1280)
    mine = Guest.objects.get(domain_name="net-alice")
    his = Guest.objects.get(domain_name="net-bob")
    guest_action(alice, mine, "mem_set", memory_mb=768)
    assert allocated_mb([host]) == {host.pk: 768 + 256}
    with pytest.raises(QuotaExceeded, match="Host dom0-a has only 256 MiB free for guests."):
        guest_action(bob, his, "mem_set", memory_mb=768)
    assert memory_limits(Guest.objects.select_related("lab__template", "host", "student").get(pk=his.pk)) == (
        32,
        512,
    )
    guest_action(bob, his, "mem_set", memory_mb=512)
    assert allocated_mb([host]) == {host.pk: 1280}


def test_a_new_batch_counts_a_waiting_resize(alice, ivy, two_guests, template, pool):
    one, _two = two_guests
    StudentQuota.objects.filter(user=alice).update(max_guests=3, max_memory_mb=1536)
    guest_action(alice, one, "mem_set", memory_mb=768)  # queued: 768 + 256 promised
    with pytest.raises(QuotaExceeded, match="alice would use 1792 MiB of memory; the limit is 1536 MiB"):
        create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=768, slug="three")
    create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=512, slug="three")
