"""Usage samples (labs.services.usage): CPU % between ticks, the minute's point, and the bounded rings.

The meter is fed `xl list` rows (labs.dom0.base.Domain) and xentop rows as
the sync job would, at chosen times; the rings are written to the test
database (SQLite by default, PostgreSQL with DATABASE_URL).
"""

from __future__ import annotations

import json

import pytest
from django.db.models import Count

from labs.dom0.base import Domain, DomainCounters
from labs.models import HostUsageSample, UsageCursor, UsageSample, UsageTotal
from labs.services import usage

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 3600  # the start of an hour


def dom(name: str, domid: int, cpu: float, vcpus: int = 1, mem: int = 256, state: str = "-b----") -> Domain:
    return Domain(name, domid, mem, vcpus, state, cpu_seconds=cpu)


def dom0(cpu: float) -> Domain:
    return Domain("Domain-0", 0, 1024, 2, "r-----", cpu_seconds=cpu)


def top(name: str, rx_kb: int, tx_kb: int, rsect: int, wsect: int) -> DomainCounters:
    return DomainCounters(name, "--b---", 0, 0.0, 0, None, 1, 1, tx_kb, rx_kb, 2, 0, 0, 0, rsect, wsect)


# ---------------------------------------------------------------- CPU % from two ticks


def test_cpu_used_between_two_ticks():
    assert usage.cpu_used(3, 100.0, 3, 103.0, 5.0, 1) == 3.0
    # Never more than the vCPUs could run in the interval (a late tick, a rounding).
    assert usage.cpu_used(3, 100.0, 3, 120.0, 5.0, 2) == 10.0


def test_cpu_used_after_a_restart_counts_the_new_domains_counter():
    """Rebooted between the ticks: a new domid, a counter that went down. All of it ran since the last tick."""
    assert usage.cpu_used(3, 500.0, 7, 2.5, 5.0, 1) == 2.5
    # The same domid with a counter that went back (a restore under the same id): the same rule.
    assert usage.cpu_used(3, 500.0, 3, 1.0, 5.0, 1) == 1.0


def test_a_minute_of_ticks_gives_the_guests_cpu_percent():
    meter = usage.Meter()
    ticks = [T0 + 5 * i for i in range(13)]  # 0..60 s: the last one ends the first minute
    closed = None
    for i, ts in enumerate(ticks):
        doms = [dom0(1000 + 0.1 * i), dom("busy", 3, 50.0 + 4.8 * i), dom("idle", 4, 7.0 + 0.01 * i)]
        closed = meter.observe(ts, doms, nr_cpus=2) or closed
    assert closed is not None and closed.minute == usage.minute_of(T0)
    busy, idle = closed.points["busy"], closed.points["idle"]
    assert busy.cpu == pytest.approx(96.0, abs=0.01) and busy.cpu_max == pytest.approx(96.0, abs=0.01)
    assert idle.cpu == pytest.approx(0.2, abs=0.01)
    assert busy.mem == 256 and busy.net_rx is None  # no xentop reading yet
    # The host: every domain's CPU seconds over two CPUs (dom0 included).
    assert closed.host is not None
    assert closed.host.cpu == pytest.approx(100 * (0.1 + 4.8 + 0.01) / 5 / 2, abs=0.01)
    assert closed.host.mem == 1024 + 256 + 256
    run_s, cpu_s, peak = closed.totals["busy"]
    assert (run_s, peak) == (55.0, 256) and cpu_s == pytest.approx(4.8 * 11)


def test_the_host_never_runs_more_than_its_cpus():
    meter = usage.Meter()
    meter.observe(T0, [dom0(0.0), dom("a", 3, 0.0, vcpus=2), dom("b", 4, 0.0, vcpus=2)], nr_cpus=2)
    meter.observe(T0 + 5, [dom0(1.0), dom("a", 3, 10.0, vcpus=2), dom("b", 4, 10.0, vcpus=2)], nr_cpus=2)
    closed = meter.observe(T0 + 60, [dom0(1.0), dom("a", 3, 10.0, vcpus=2), dom("b", 4, 10.0, vcpus=2)], nr_cpus=2)
    assert closed is not None and closed.host is not None
    assert closed.host.cpu_max == 100.0 and closed.points["a"].cpu_max == 100.0


def test_a_reboot_between_two_ticks_is_not_a_negative_cpu():
    meter = usage.Meter()
    meter.observe(T0, [dom("g", 3, 900.0)], 1)
    meter.observe(T0 + 5, [dom("g", 3, 904.0)], 1)
    meter.observe(T0 + 10, [dom("g", 8, 1.5)], 1)  # rebooted: domain 8, 1.5 s of CPU so far
    meter.observe(T0 + 15, [dom("g", 8, 1.6)], 1)
    closed = meter.observe(T0 + 60, [dom("g", 8, 1.7)], 1)
    assert closed is not None
    g = closed.points["g"]
    assert g.cpu_max == pytest.approx(80.0)  # the first interval, 4 s of 5
    assert g.cpu == pytest.approx(100 * (4.0 + 1.5 + 0.1) / 15, abs=0.01)
    assert g.cpu >= 0


def test_a_guest_that_appears_between_ticks_counts_from_its_first_tick():
    meter = usage.Meter()
    meter.observe(T0, [dom0(10.0)], 2)
    meter.observe(T0 + 5, [dom0(10.1), dom("new", 5, 2.0)], 2)  # built during these 5 s
    closed = meter.observe(T0 + 60, [dom0(11.0), dom("new", 5, 2.5)], 2)
    assert closed is not None and closed.points["new"].cpu == pytest.approx(40.0)


def test_a_long_gap_is_not_differenced():
    meter = usage.Meter()
    meter.observe(T0, [dom("g", 3, 100.0)], 1)
    closed = meter.observe(T0 + 1000, [dom("g", 3, 600.0)], 1)  # the worker was away
    assert closed is not None and closed.points == {}
    meter.observe(T0 + 1065, [dom("g", 3, 601.0)], 1)  # 65 s later: trusted again, for the next minute
    closed = meter.observe(T0 + 1130, [dom("g", 3, 601.0)], 1)
    assert closed is not None and closed.points["g"].cpu == pytest.approx(100 / 65, abs=0.01)


def test_network_and_disk_come_from_two_xentop_readings_a_minute_apart():
    meter = usage.Meter()
    first = [top("g", rx_kb=100, tx_kb=10, rsect=1000, wsect=20)]
    meter.observe(T0, [dom("g", 3, 1.0)], 1)
    assert meter.due(T0 + 60) and not meter.due(T0 + 30)
    meter.observe(T0 + 30, [dom("g", 3, 1.2)], 1)
    closed = meter.observe(T0 + 60, [dom("g", 3, 1.5)], 1, first)
    assert closed is not None and closed.points["g"].net_rx is None  # a baseline only
    second = [top("g", rx_kb=160, tx_kb=13, rsect=1200, wsect=420)]
    closed = meter.observe(T0 + 120, [dom("g", 3, 2.0)], 1, second)
    assert closed is not None
    g = closed.points["g"]
    assert (g.net_rx, g.net_tx, g.disk_read, g.disk_write) == (60 * 1024, 3 * 1024, 200 * 512, 400 * 512)
    # A reboot between readings: the new domain's totals are all new.
    third = [top("g", rx_kb=5, tx_kb=1, rsect=300, wsect=2)]
    closed = meter.observe(T0 + 180, [dom("g", 9, 0.4)], 1, third)
    assert closed is not None and closed.points["g"].net_rx == 5 * 1024
    # xentop failed this minute: no figures, and the next reading is only a baseline again.
    closed = meter.observe(T0 + 240, [dom("g", 9, 0.5)], 1, None)
    assert closed is not None and closed.points["g"].net_rx is None
    closed = meter.observe(T0 + 300, [dom("g", 9, 0.6)], 1, third)
    assert closed is not None and closed.points["g"].net_rx is None


# ---------------------------------------------------------------- the rings


def _feed(hm, ts: float, cpu: float, guests: dict, guest_name: str, busy: float = 0.5) -> None:
    usage.record(hm, ts, [dom0(cpu * 0.02), dom(guest_name, 3, cpu * busy)], 2, guests)


@pytest.mark.django_db
def test_the_ring_keeps_a_constant_number_of_rows_per_guest_over_10000_ticks(alice_guest, host):
    """10,000 ticks 293 s apart (34 days): every ring wraps; a guest never has more than 1128 rows."""
    assert usage.ROWS_PER_OWNER == 120 + 288 + 720
    hm = usage.load_meter(host)
    guests = {alice_guest.domain_name: alice_guest}
    counts, state_sizes = [], []
    cpu = 0.0
    for i in range(10_000):
        ts = T0 + 293 * i
        cpu += 293 * (0.9 if (i // 100) % 2 else 0.1)
        usage.record(hm, ts, [dom0(ts * 0.01), dom(alice_guest.domain_name, 3, cpu)], 2, guests)
        if i % 1000 == 999:
            counts.append(UsageSample.objects.filter(guest=alice_guest).count())
            state_sizes.append(len(json.dumps(UsageCursor.objects.get(host=host).state)))
    per_tier = dict(
        UsageSample.objects.filter(guest=alice_guest)
        .values_list("tier")
        .annotate(n=Count("id"))
        .values_list("tier", "n")
    )
    assert per_tier == {0: 120, 1: 288, 2: 720}
    assert max(counts) == usage.ROWS_PER_OWNER and counts[-1] == counts[-2] == usage.ROWS_PER_OWNER, counts
    assert HostUsageSample.objects.filter(host=host).count() == usage.ROWS_PER_OWNER
    assert UsageTotal.objects.filter(guest=alice_guest).count() == 1
    assert max(state_sizes) - min(state_sizes) < 64, state_sizes  # the cursor does not grow either
    # The newest points are the newest minutes (and nothing from before the ring's reach).
    last_minute = usage.minute_of(T0 + 293 * 9_999)
    newest = UsageSample.objects.filter(guest=alice_guest, tier=0).order_by("-bucket").first()
    assert newest is not None and last_minute - 5 <= newest.bucket < last_minute
    oldest = UsageSample.objects.filter(guest=alice_guest, tier=2).order_by("bucket").first()
    assert oldest is not None and oldest.bucket > last_minute // 60 - 720


@pytest.mark.django_db
def test_coarser_points_merge_the_minutes_of_their_bucket(alice_guest, host):
    hm = usage.load_meter(host)
    guests = {alice_guest.domain_name: alice_guest}
    cpu = 0.0
    # 20 minutes at 5 s ticks: 10 minutes near 10 %, then 10 near 90 %.
    for i in range(20 * 12 + 1):
        ts = T0 + 5 * i
        usage.record(hm, ts, [dom0(0.0), dom(alice_guest.domain_name, 3, cpu)], 2, guests)
        cpu += 5 * (0.1 if i < 119 else 0.9)  # the interval to the next tick, which counts in that tick's minute
    ten = list(
        UsageSample.objects.filter(guest=alice_guest, tier=1).order_by("bucket").values_list("n", "cpu", "cpu_max")
    )
    assert [n for n, _, _ in ten] == [10, 10]
    assert ten[0][1] == pytest.approx(10.0, abs=0.1) and ten[1][1] == pytest.approx(90.0, abs=0.1)
    hour = UsageSample.objects.get(guest=alice_guest, tier=2)
    assert hour.n == 20 and hour.cpu == pytest.approx(50.0, abs=0.1) and hour.cpu_max == pytest.approx(90.0, abs=0.1)
    total = UsageTotal.objects.get(guest=alice_guest)
    # 239 intervals of 5 s closed (the last tick's own interval opens minute 20).
    assert total.run_seconds == pytest.approx(1195.0) and total.cpu_seconds == pytest.approx(599.5, abs=0.01)
    assert (total.lab_id, total.student_id, total.host_id) == (alice_guest.lab_id, alice_guest.student_id, host.pk)


@pytest.mark.django_db
def test_series_fills_the_range_with_nulls_where_there_are_no_points(alice_guest, host):
    hm = usage.load_meter(host)
    guests = {alice_guest.domain_name: alice_guest}
    for i in range(3 * 12 + 1):
        usage.record(hm, T0 + 5 * i, [dom(alice_guest.domain_name, 3, 0.5 * 5 * i)], 1, guests)
    s = usage.guest_series(alice_guest, usage.RANGES["2h"], now=T0 + 185)
    assert len(s.times) == 120 and s.times[-1] == T0 + 180
    cpu = s.columns["cpu"]
    assert cpu[-4:] == [pytest.approx(50.0), pytest.approx(50.0), pytest.approx(50.0), None]
    assert all(v is None for v in cpu[:-4])
    summary = usage.summarize(cpu, s.columns["cpu_max"], s.times)
    assert summary.points == 3 and summary.average == pytest.approx(50.0)
