"""Usage samples from the sync loop's own jobs: the same `xl list`, and xentop once a minute.

The sync job runs in a real RQ worker against the simulated dom0, whose
first guest (alice's) is the demo's runaway and the second (bob's) idles.
A minute is made to end between two jobs by moving the meter's open minute
back, so the test does not wait for the clock. A tick's own interval counts
in the minute it opens: the minute it ends holds the intervals before it.
"""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from labs.jobs.host import sync_host
from labs.models import Guest, Host, HostUsageSample, UsageCursor, UsageSample, UsageTotal
from labs.services import usage
from labs.services.upkeep import tick

from .helpers import work

pytestmark = pytest.mark.django_db(transaction=True)
XENTOP = ["xentop", "-b", "-i", "2", "-d", "1", "-f"]


def _checked_just_now(host: Host) -> None:
    Host.objects.filter(pk=host.pk).update(health_checked_at=timezone.now())


def end_the_minute(host: Host) -> None:
    """Make the next sync end the meter's open minute (as if a minute boundary had passed)."""
    cursor = UsageCursor.objects.get(host=host)
    cursor.state["minute"] -= 1
    cursor.save()


def sync(host: Host) -> None:
    assert tick()["synced"] == 1
    work(host.queue_name)


def a_minute(host: Host, seconds: float = 1.0) -> None:
    """Let `seconds` pass after the last sync, sync, then sync again ending the minute."""
    time.sleep(seconds)
    sync(host)
    end_the_minute(host)
    sync(host)


@pytest.fixture
def aged(running_guest, sim, host):
    """Both guests past their boot (an hour old), so their CPU is the profile's, not the boot's."""
    for name in ("net-alice", "net-bob"):
        sim.backdate(name, 3600)
    _checked_just_now(host)
    return running_guest


def test_the_sync_samples_the_runaway_and_the_idle_guest(aged, host, sim):
    alice, bob = Guest.objects.get(domain_name="net-alice"), Guest.objects.get(domain_name="net-bob")
    assert sim.domains()["net-alice"]["load"] == "spin" and sim.domains()["net-bob"]["load"] == "idle"
    sim.clear_history()
    sync(host)
    # The first tick only takes the counters: one xl list, one xl info, no xentop, nothing written.
    assert sim.history.count(["xl", "list"]) == 1 and XENTOP not in sim.history
    assert not UsageSample.objects.exists() and UsageCursor.objects.filter(host=host).exists()

    time.sleep(2)  # CPU time to difference (xl list prints tenths of a second)
    sync(host)
    assert XENTOP not in sim.history and not UsageSample.objects.exists()
    end_the_minute(host)
    sim.clear_history()
    sync(host)
    assert sim.history.count(XENTOP) == 1 and sim.history.count(["xl", "list"]) == 1
    spin = UsageSample.objects.get(guest=alice, tier=0)
    idle = UsageSample.objects.get(guest=bob, tier=0)
    assert 85 <= spin.cpu <= 100 and idle.cpu <= 6, (spin.cpu, idle.cpu)
    assert spin.mem_max_mb == 256 and spin.net_rx is None  # the first xentop is a baseline
    assert {s.tier for s in UsageSample.objects.filter(guest=alice)} == {0, 1, 2}
    host_point = HostUsageSample.objects.get(host=host, tier=0)
    assert host_point.mem_max_mb == 1024 + 256 + 256 and 30 <= host_point.cpu <= 60  # ~1 of 2 CPUs
    total = UsageTotal.objects.get(guest=alice)
    assert total.run_seconds > 1 and total.cpu_seconds > 1 and total.peak_memory_mb == 256

    a_minute(host)
    # The second xentop: network and disk over the minute.
    assert UsageSample.objects.filter(guest=alice, tier=0, net_rx__isnull=False, disk_write__gt=0).exists()
    assert usage.runaways(alice.lab) == []  # one minute is not ten


def test_a_failing_xentop_costs_the_minutes_io_figures_only(aged, host, sim):
    alice = Guest.objects.get(domain_name="net-alice")
    sync(host)
    sim.inject("xentop", "error", error="Failed to initialize xenstat library")
    a_minute(host)
    point = UsageSample.objects.get(guest=alice, tier=0)
    assert point.cpu > 50 and point.net_rx is None
    assert Guest.objects.get(pk=alice.pk).observed_at is not None


def test_sync_without_samples_writes_none(running_guest, host, sim):
    sim.clear_history()
    assert "domains" in sync_host(host.pk, samples=False)
    assert not UsageCursor.objects.exists()
    assert {tuple(a[:2]) for a in sim.history} == {("xl", "info"), ("xl", "list")}


def test_deleting_a_guest_deletes_its_samples_and_keeps_its_total(aged, host, sim, ivy):
    from labs.services import guest_action

    alice = Guest.objects.get(domain_name="net-alice")
    sync(host)
    a_minute(host)
    assert UsageSample.objects.filter(guest=alice).count() == 3
    guest_action(ivy, alice, "teardown")
    work(host.queue_name)
    assert not Guest.objects.filter(pk=alice.pk).exists()
    assert not UsageSample.objects.filter(guest_id=alice.pk).exists()
    total = UsageTotal.objects.get(domain_name="net-alice")
    assert total.guest_id is None and total.lab_id == alice.lab_id and total.cpu_seconds > 0
