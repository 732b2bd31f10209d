"""Per-VM usage: the sync's samples in bounded ring tables, and what the charts, the lab page and the report read.

Where the numbers come from. Each sync tick (`labs.jobs.host.sync_host`)
already runs `xl list`; its Time(s) column is each domain's CPU seconds since
it was built. `Meter` keeps, per host, the counters of the previous tick and
sums the differences over the current minute (CPU % of a guest = CPU seconds
used / seconds elapsed / its vCPUs; a domain whose domid changed, or whose
counter went down, was rebuilt in between: all its counter ran since the
last tick). Memory is the same list's Mem column: what Xen gives the
domain, not what the guest's programs use inside it, which a dom0 cannot see.
When a minute ends, the tick also runs `xentop` once (network and disk totals)
and the minute is written: one point per guest and one for the whole host
(dom0 included, CPU in % of the host's CPUs), each merged into three rings.

The rings (`TIERS`): 1-minute points for 2 hours, 10-minute points for 2 days
and 1-hour points for 30 days. A point goes to slot `bucket % size` of its
tier, merging into the point there when that is the same bucket (10 minute
points average up to ten minute points) and replacing it when it is an older
one: a guest never has more than ROWS_PER_OWNER rows, however long it runs. The
upsert (`INSERT ... ON CONFLICT DO UPDATE`) is plain SQL both SQLite and
PostgreSQL run. `UsageTotal` keeps each guest's running totals for the usage
report (labs.services.usage_report), beyond the rings' 30 days and after the
guest is deleted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import Avg, Count, Min, OuterRef, QuerySet, Subquery

from labs.dom0.base import Domain, DomainCounters
from labs.models import Guest, Host, HostUsageSample, Lab, UsageCursor, UsageSample, Xl


class Tier(NamedTuple):
    level: int  # UsageRing.tier
    step: int  # seconds
    size: int  # points in the ring
    key: str  # the range it draws: "2h", "2d", "30d"


TIERS = (Tier(0, 60, 120, "2h"), Tier(1, 600, 288, "2d"), Tier(2, 3600, 720, "30d"))
RANGES = {t.key: t for t in TIERS}
ROWS_PER_OWNER = sum(t.size for t in TIERS)
MINUTE = TIERS[0].step
# A tick further from the previous one than this is not differenced (the worker was away).
MAX_GAP = 300.0
# The lab page flags a VM whose every minute point of the last RUNAWAY_MINUTES was at least RUNAWAY_PERCENT;
# one missed minute (a late sync) is forgiven.
RUNAWAY_PERCENT = 90.0
RUNAWAY_MINUTES = 10
RUNAWAY_MIN_POINTS = RUNAWAY_MINUTES - 1


class Point(NamedTuple):
    cpu: float
    cpu_max: float
    mem: float
    mem_max: int
    net_rx: int | None = None
    net_tx: int | None = None
    disk_read: int | None = None
    disk_write: int | None = None


@dataclass
class Closed:
    """A minute that ended: one Point per domain name, the host's, and each domain's run and CPU seconds."""

    minute: int
    points: dict[str, Point]
    host: Point | None
    totals: dict[str, tuple[float, float, int]] = field(default_factory=dict)


def minute_of(ts: float) -> int:
    return int(ts // MINUTE)


def cpu_used(prev_domid: int, prev_cpu: float, domid: int, cpu: float, dt: float, vcpus: int) -> float:
    """CPU seconds a domain used between two ticks `dt` seconds apart.

    The same domain: the counter's difference. A new domid, or a counter that
    went down: the domain was built again in between (reboot, restore) and
    all of its counter ran since the last tick. Never more than its vCPUs
    could run in `dt`.
    """
    used = cpu - prev_cpu if domid == prev_domid and cpu >= prev_cpu else cpu
    return min(max(used, 0.0), dt * max(vcpus, 1))


def counter_delta(prev: int, new: int, same_domain: bool) -> int:
    return new - prev if same_domain and new >= prev else new


# ---------------------------------------------------------------- the meter (between ticks)

# A domain's accumulator, a JSON list: the last tick's domid, CPU counter and vCPUs, then the open minute's
# CPU seconds used, seconds covered, highest tick %, memory sum and count and highest, seconds up; last seen.
DOMID, COUNT, VCPUS, BUSY, SECS, PEAK, MEM_SUM, MEM_N, MEM_MAX, UP_S, SEEN = range(11)
# The host's: CPU seconds, seconds covered, highest tick %, memory sum and count and highest.
H_BUSY, H_SECS, H_PEAK, H_MEM_SUM, H_MEM_N, H_MEM_MAX = range(6)


class Meter:
    """One host's counters between ticks (the UsageCursor row's JSON), and the minute being summed."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.state: dict[str, Any] = state if state else {}

    def due(self, ts: float) -> bool:
        """Whether the tick at `ts` ends a minute (and so should bring xentop's counters)."""
        return "minute" in self.state and minute_of(ts) > self.state["minute"]

    def observe(
        self, ts: float, domains: Sequence[Domain], nr_cpus: int, counters: Sequence[DomainCounters] | None = None
    ) -> Closed | None:
        """Take one tick's `xl list`; returns the minute it ended, if it ended one."""
        closed = self._close(ts, domains, counters) if self.due(ts) else None
        self._tick(ts, domains, nr_cpus)
        return closed

    def _tick(self, ts: float, domains: Sequence[Domain], nr_cpus: int) -> None:
        s = self.state
        at = s.get("at")
        dt = ts - at if at is not None else 0.0
        valid = 0.0 < dt <= MAX_GAP
        accs = s.setdefault("g", {})
        busy = mem = 0.0
        for d in domains:
            if d.cpu_seconds is None:
                continue
            acc = accs.get(d.name) or [-1, 0.0, 1, 0.0, 0.0, 0.0, 0.0, 0, 0, 0.0, ts]
            accs[d.name] = acc
            if acc[SEEN] != at:
                acc[DOMID] = -1  # not in the last tick's list: built since, so all its counter is new
            if valid:
                busy += _add_interval(acc, d, dt)
            acc[DOMID], acc[COUNT], acc[VCPUS], acc[SEEN] = d.domid, d.cpu_seconds, max(d.vcpus, 1), ts
            acc[MEM_SUM] += d.memory_mb
            acc[MEM_N] += 1
            acc[MEM_MAX] = max(acc[MEM_MAX], d.memory_mb)
            mem += d.memory_mb
        h = s.setdefault("h", [0.0, 0.0, 0.0, 0.0, 0, 0])
        cpus = max(nr_cpus, 1)
        # The host cannot run more than its CPUs (only a simulated host, or a tick's jitter, says otherwise).
        busy = min(busy, dt * cpus)
        if valid:
            h[H_BUSY] += busy
            h[H_SECS] += dt
            h[H_PEAK] = max(h[H_PEAK], 100.0 * busy / (dt * cpus))
        h[H_MEM_SUM] += mem
        h[H_MEM_N] += 1
        h[H_MEM_MAX] = max(h[H_MEM_MAX], int(mem))
        s["at"], s["cpus"] = ts, cpus
        s.setdefault("minute", minute_of(ts))

    def _close(self, ts: float, domains: Sequence[Domain], counters: Sequence[DomainCounters] | None) -> Closed:
        s = self.state
        io = self._io(domains, counters)
        closed = Closed(minute=s["minute"], points={}, host=None)
        for name, acc in s.get("g", {}).items():
            if acc[SECS] > 0 and acc[MEM_N]:
                closed.points[name] = _point(acc, io.get(name))
                closed.totals[name] = (acc[UP_S], acc[BUSY], acc[MEM_MAX])
        h = s.get("h")
        if h and h[H_SECS] > 0 and h[H_MEM_N]:
            closed.host = _host_point(h, s.get("cpus", 1), io.values() if io else None)
        self._reset(s)
        s["minute"] = minute_of(ts)
        return closed

    def _io(self, domains: Sequence[Domain], counters: Sequence[DomainCounters] | None) -> dict[str, tuple[int, ...]]:
        """Network and disk bytes since the previous minute's xentop, per domain; {} without two readings."""
        if counters is None:
            self.state["x"] = {}  # a gap: the next reading starts afresh rather than span two minutes
            return {}
        domids = {d.name: d.domid for d in domains}
        before: dict[str, list[int]] = self.state.get("x", {})
        now: dict[str, list[int]] = {}
        io: dict[str, tuple[int, ...]] = {}
        for c in counters:
            values = [c.net_rx_bytes, c.net_tx_bytes, c.disk_read_bytes, c.disk_write_bytes]
            domid = domids.get(c.name, -1)
            now[c.name] = [domid, *values]
            prev = before.get(c.name)
            if prev is not None:
                same = prev[0] == domid
                io[c.name] = tuple(counter_delta(p, v, same) for p, v in zip(prev[1:], values, strict=True))
        self.state["x"] = now
        return io

    @staticmethod
    def _reset(s: dict[str, Any]) -> None:
        last = s.get("at")
        accs = s.get("g", {})
        for name in [n for n, acc in accs.items() if acc[SEEN] != last]:
            del accs[name]  # gone from xl list: nothing more to sum
        for acc in accs.values():
            acc[BUSY:SEEN] = [0.0, 0.0, 0.0, 0.0, 0, 0, 0.0]
        s["h"] = [0.0, 0.0, 0.0, 0.0, 0, 0]


def _add_interval(acc: list[Any], d: Domain, dt: float) -> float:
    vcpus = max(d.vcpus, 1)
    used = cpu_used(acc[DOMID], acc[COUNT], d.domid, d.cpu_seconds or 0.0, dt, vcpus)
    acc[BUSY] += used
    acc[SECS] += dt
    acc[PEAK] = max(acc[PEAK], 100.0 * used / (dt * vcpus))
    if d.letter in Xl.UP:
        acc[UP_S] += dt
    return used


def _point(acc: list[Any], io: tuple[int, ...] | None) -> Point:
    cpu = 100.0 * acc[BUSY] / (acc[SECS] * acc[VCPUS])
    return Point(round(cpu, 2), round(acc[PEAK], 2), acc[MEM_SUM] / acc[MEM_N], int(acc[MEM_MAX]), *(io or ()))


def _host_point(h: list[Any], cpus: int, io: Iterable[tuple[int, ...]] | None) -> Point:
    cpu = 100.0 * h[H_BUSY] / (h[H_SECS] * max(cpus, 1))
    sums: tuple[int, ...] = ()
    if io is not None:
        rows = list(io)
        sums = tuple(sum(r[i] for r in rows) for i in range(4)) if rows else ()
    return Point(round(cpu, 2), round(h[H_PEAK], 2), h[H_MEM_SUM] / h[H_MEM_N], int(h[H_MEM_MAX]), *sums)


# ---------------------------------------------------------------- writing (the sync job)


@dataclass
class HostMeter:
    host_id: int
    meter: Meter
    stored: bool


def load_meter(host: Host) -> HostMeter:
    row = UsageCursor.objects.filter(host_id=host.pk).values_list("state", flat=True).first()
    return HostMeter(host.pk, Meter(row), row is not None)


def record(
    hm: HostMeter,
    ts: float,
    domains: Sequence[Domain],
    nr_cpus: int,
    guests: dict[str, Guest],
    counters: Sequence[DomainCounters] | None = None,
) -> Closed | None:
    """Feed one tick to the host's meter; when it ends a minute, write that minute's points and totals."""
    closed = hm.meter.observe(ts, domains, nr_cpus, counters)
    with transaction.atomic():
        if closed is not None:
            _write(hm.host_id, closed, guests, ts)
        if hm.stored:
            UsageCursor.objects.filter(host_id=hm.host_id).update(state=hm.meter.state)
        else:
            UsageCursor.objects.create(host_id=hm.host_id, state=hm.meter.state)
            hm.stored = True
    return closed


_MERGE_COLUMNS = ("net_rx", "net_tx", "disk_read", "disk_write")


def _ring_sql(table: str, owner: str) -> str:
    same = f"{table}.bucket = excluded.bucket"

    def average(col: str) -> str:
        merged = f"({table}.{col} * {table}.n + excluded.{col}) / ({table}.n + 1)"
        return f"CASE WHEN {same} THEN {merged} ELSE excluded.{col} END"

    def highest(col: str) -> str:
        return f"CASE WHEN {same} AND {table}.{col} > excluded.{col} THEN {table}.{col} ELSE excluded.{col} END"

    def total(col: str) -> str:
        return (
            f"CASE WHEN {same} AND {table}.{col} IS NOT NULL AND excluded.{col} IS NOT NULL"
            f" THEN {table}.{col} + excluded.{col} WHEN {same} AND excluded.{col} IS NULL THEN {table}.{col}"
            f" ELSE excluded.{col} END"
        )

    sets = [
        f"n = CASE WHEN {same} THEN {table}.n + 1 ELSE 1 END",
        f"cpu = {average('cpu')}",
        f"cpu_max = {highest('cpu_max')}",
        f"mem_mb = {average('mem_mb')}",
        f"mem_max_mb = {highest('mem_max_mb')}",
        *(f"{c} = {total(c)}" for c in _MERGE_COLUMNS),
        "bucket = excluded.bucket",  # every right-hand side above reads the row as it was
    ]
    columns = f"{owner}, tier, slot, bucket, n, cpu, cpu_max, mem_mb, mem_max_mb, {', '.join(_MERGE_COLUMNS)}"
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * 13)})"
        f" ON CONFLICT ({owner}, tier, slot) DO UPDATE SET {', '.join(sets)}"
    )


def _ring_params(owner_id: int, minute: int, p: Point) -> list[tuple[Any, ...]]:
    start = minute * MINUTE
    out = []
    for t in TIERS:
        bucket = start // t.step
        out.append((owner_id, t.level, bucket % t.size, bucket, 1, *p))
    return out


_TOTAL_SQL = (
    "INSERT INTO labs_usagetotal (guest_id, lab_id, student_id, host_id, domain_name, run_seconds, cpu_seconds,"
    " peak_memory_mb, first_seen, last_seen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (guest_id) DO UPDATE SET run_seconds = labs_usagetotal.run_seconds + excluded.run_seconds,"
    " cpu_seconds = labs_usagetotal.cpu_seconds + excluded.cpu_seconds,"
    " peak_memory_mb = CASE WHEN labs_usagetotal.peak_memory_mb > excluded.peak_memory_mb"
    " THEN labs_usagetotal.peak_memory_mb ELSE excluded.peak_memory_mb END, last_seen = excluded.last_seen"
)


def _write(host_id: int, closed: Closed, guests: dict[str, Guest], ts: float) -> None:
    guest_rows: list[tuple[Any, ...]] = []
    totals: list[tuple[Any, ...]] = []
    seen = connection.ops.adapt_datetimefield_value(datetime.fromtimestamp(ts, tz=UTC))
    for name, point in closed.points.items():
        guest = guests.get(name)
        if guest is None:
            continue  # a domain the panel did not make (or dom0): only in the host's point
        guest_rows += _ring_params(guest.pk, closed.minute, point)
        run_s, cpu_s, mem_max = closed.totals[name]
        totals.append((guest.pk, guest.lab_id, guest.student_id, host_id, name, run_s, cpu_s, mem_max, seen, seen))
    with connection.cursor() as cursor:
        if guest_rows:
            cursor.executemany(_ring_sql(UsageSample._meta.db_table, "guest_id"), guest_rows)
            cursor.executemany(_TOTAL_SQL, totals)
        if closed.host is not None:
            sql = _ring_sql(HostUsageSample._meta.db_table, "host_id")
            cursor.executemany(sql, _ring_params(host_id, closed.minute, closed.host))


# ---------------------------------------------------------------- reading (charts)


@dataclass
class Series:
    """A range of points, one per bucket of the tier, oldest first; None where there is no point."""

    tier: Tier
    times: list[int]  # seconds since the epoch, start of each bucket
    columns: dict[str, list[float | None]]


SERIES_COLUMNS = ("cpu", "cpu_max", "mem_mb", "mem_max_mb", "net_rx", "net_tx", "disk_read", "disk_write")


def _window(tier: Tier, now: float | None) -> tuple[int, int]:
    end = int((time.time() if now is None else now) // tier.step)
    return end - tier.size + 1, end


def series(qs: QuerySet, tier: Tier, now: float | None = None) -> Series:
    """The points of `qs` (one owner's UsageSample or HostUsageSample rows) in the tier's whole ring."""
    start, end = _window(tier, now)
    columns: list[list[float | None]] = [[None] * tier.size for _ in SERIES_COLUMNS]
    rates = [columns[SERIES_COLUMNS.index(c)] for c in _MERGE_COLUMNS]
    rows = qs.filter(tier=tier.level, bucket__gte=start, bucket__lte=end).values_list("bucket", "n", *SERIES_COLUMNS)
    for bucket, n, *values in rows:
        i = bucket - start
        for column, value in zip(columns, values, strict=True):
            column[i] = value
        for column in rates:  # bytes per second over the minutes the point covers
            if column[i] is not None:
                column[i] = round(column[i] / (n * MINUTE), 1)  # type: ignore[operator]
    return Series(
        tier, [b * tier.step for b in range(start, end + 1)], dict(zip(SERIES_COLUMNS, columns, strict=True))
    )


def guest_series(guest: Guest, tier: Tier, now: float | None = None) -> Series:
    return series(UsageSample.objects.filter(guest_id=guest.pk), tier, now)


def host_series(host: Host, tier: Tier, now: float | None = None) -> Series:
    return series(HostUsageSample.objects.filter(host_id=host.pk), tier, now)


@dataclass(frozen=True)
class Summary:
    average: float | None
    peak: float | None
    peak_at: datetime | None
    points: int


def summarize(values: Sequence[float | None], peaks: Sequence[float | None], times: Sequence[int]) -> Summary:
    """Average of the points, and the highest peak with when it was."""
    have = [v for v in values if v is not None]
    if not have:
        return Summary(None, None, None, 0)
    best, at = -math.inf, 0
    for peak, value, t in zip(peaks, values, times, strict=True):
        top = peak if peak is not None else value
        if top is not None and top > best:
            best, at = top, t
    return Summary(sum(have) / len(have), best, datetime.fromtimestamp(at, tz=UTC), len(have))


# ---------------------------------------------------------------- the lab page


@dataclass(frozen=True)
class Recent:
    """A guest's last RUNAWAY_MINUTES minute points."""

    average: float
    lowest: float
    latest: float
    points: int

    @property
    def runaway(self) -> bool:
        return self.points >= RUNAWAY_MIN_POINTS and self.lowest >= RUNAWAY_PERCENT


def _recent_window(now: float | None) -> tuple[int, int]:
    end = minute_of(time.time() if now is None else now)  # the minute under way is not written yet
    return end - RUNAWAY_MINUTES, end - 1


def recent_cpu(guest_ids: Iterable[int], now: float | None = None) -> dict[int, Recent]:
    start, end = _recent_window(now)
    rows = UsageSample.objects.filter(
        guest_id__in=list(guest_ids), tier=0, bucket__gte=start, bucket__lte=end
    ).values_list("guest_id", "bucket", "cpu")
    seen: dict[int, list[tuple[int, float]]] = {}
    for guest_id, bucket, cpu in rows:
        seen.setdefault(guest_id, []).append((bucket, cpu))
    out = {}
    for guest_id, points in seen.items():
        cpus = [c for _, c in sorted(points)]
        out[guest_id] = Recent(sum(cpus) / len(cpus), min(cpus), cpus[-1], len(cpus))
    return out


def runaways(lab: Lab, now: float | None = None) -> list[Guest]:
    """The lab's guests over RUNAWAY_PERCENT in every minute of the last RUNAWAY_MINUTES (one minute forgiven)."""
    start, end = _recent_window(now)
    flagged = (
        UsageSample.objects.filter(guest__lab=lab, tier=0, bucket__gte=start, bucket__lte=end)
        .values("guest_id")
        .annotate(points=Count("id"), lowest=Min("cpu"))
        .filter(points__gte=RUNAWAY_MIN_POINTS, lowest__gte=RUNAWAY_PERCENT)
        .values_list("guest_id", flat=True)
    )
    return list(Guest.objects.filter(pk__in=list(flagged)).order_by("domain_name"))


def with_recent(qs: QuerySet[Guest], now: float | None = None) -> QuerySet[Guest]:
    """Guests annotated with `recent_cpu` (%) and `recent_mem` (MiB): their averages over the last
    RUNAWAY_MINUTES minute points (None without points), to sort the lab page by."""
    start, end = _recent_window(now)
    points = UsageSample.objects.filter(guest=OuterRef("pk"), tier=0, bucket__gte=start, bucket__lte=end)

    def average(column: str) -> Subquery:
        return Subquery(points.values("guest").annotate(a=Avg(column)).values("a"))

    return qs.annotate(recent_cpu=average("cpu"), recent_mem=average("mem_mb"))


def sparklines(guest_ids: Sequence[int], now: float | None = None) -> dict[str, Any]:
    """The last two hours of CPU % and memory per guest, for the lab page's small charts."""
    tier = TIERS[0]
    start, end = _window(tier, now)
    out: dict[str, Any] = {
        "t": [b * tier.step for b in range(start, end + 1)],
        "guests": {str(g): {"cpu": [None] * tier.size, "mem": [None] * tier.size} for g in guest_ids},
    }
    rows = UsageSample.objects.filter(
        guest_id__in=list(guest_ids), tier=0, bucket__gte=start, bucket__lte=end
    ).values_list("guest_id", "bucket", "cpu", "mem_mb")
    for guest_id, bucket, cpu, mem in rows:
        g = out["guests"][str(guest_id)]
        g["cpu"][bucket - start] = cpu
        g["mem"][bucket - start] = mem
    return out


# ---------------------------------------------------------------- the host page


def host_cpus(host: Host) -> int:
    """The host's CPUs, as its last sync's `xl info` said (1 before any)."""
    state = UsageCursor.objects.filter(host_id=host.pk).values_list("state", flat=True).first() or {}
    return max(int(state.get("cpus", 1)), 1)


def host_stack(host: Host, tier: Tier, visible: QuerySet[Guest], now: float | None = None, top: int = 6) -> dict:
    """The host's CPU and memory with its busiest `top` guests (among those the user may see) stacked under them.

    A guest's part of the host's CPU is its own CPU % times its vCPUs over
    the host's CPUs; the rest of the host's figure (dom0, guests not shown)
    is "rest". Memory stacks in MiB.
    """
    start, end = _window(tier, now)
    busiest = list(
        UsageSample.objects.filter(
            guest__in=visible.filter(host=host), tier=tier.level, bucket__gte=start, bucket__lte=end
        )
        .values("guest_id")
        .annotate(a=Avg("cpu"))
        .order_by("-a")
        .values_list("guest_id", flat=True)[:top]
    )
    whole = host_series(host, tier, now)
    cpus = host_cpus(host)
    guests = Guest.objects.filter(pk__in=busiest).select_related("lab__template")
    stacked = []
    for g in sorted(guests, key=lambda g: busiest.index(g.pk)):
        s = guest_series(g, tier, now)
        share = g.lab.template.vcpus / cpus
        stacked.append(
            {
                "id": g.pk,
                "label": g.domain_name,
                "cpu": [None if v is None else v * share for v in s.columns["cpu"]],
                "mem": s.columns["mem_mb"],
            }
        )
    return {"series": whole, "guests": stacked, "cpus": cpus}
