"""Host capacity: the memory promised to guests on each host, and what is left."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, Sum
from django.utils.translation import gettext as _

from labs.models import Guest, Host, SavePoint, Task
from labs.services import thin_pool
from labs.services.errors import QuotaExceeded, ServiceError
from labs.services.quotas import promised_mb
from labs.services.thin_pool import PoolFill


def placed_on(hosts: Iterable) -> Q:
    """The guests promised memory on the hosts: a stopped guest may start any time."""
    hosts = list(hosts)
    return Q(host=hosts[0]) if len(hosts) == 1 else Q(host__in=hosts)


def allocated_mb(hosts: Iterable[Host]) -> dict[int, int]:
    """Memory promised to guests on each host, whatever their state: a stopped guest may start any time.

    A queued or running resize promises its new size (quotas.promised_mb).
    """
    rows = Guest.objects.filter(placed_on(hosts)).values("host_id").annotate(mem=Sum(promised_mb()))
    return {r["host_id"]: r["mem"] or 0 for r in rows}


def host_free_mb(host: Host, allocated: int) -> int | None:
    """Memory still free for new guests; None when the host has never reported its memory."""
    usable = host.usable_memory_mb
    return None if usable is None else usable - allocated


def _free_memory(hosts: list[Host]) -> dict[int, int]:
    """MiB free for new guests on each host that has reported its memory."""
    allocated = allocated_mb(hosts)
    free_mem: dict[int, int] = {}
    for host in hosts:
        free = host_free_mb(host, allocated.get(host.pk, 0))
        # Rule: a host that has never reported its memory (no state sync or
        # health check yet) gets no new guests, rather than a guess.
        if free is not None:
            free_mem[host.pk] = free
    if not free_mem:
        raise ServiceError(
            _(
                "No host has reported its memory yet: wait for the state sync (a few seconds after its worker starts)"
                " or run manage.py check_hosts."
            ),
            field="hosts",
        )
    return free_mem


def _free_disk(hosts: list[Host]) -> dict[int, int | None]:
    """MiB free in each host's volume group, less what guests not yet built will take; None when unknown."""
    return {host.pk: disk_free_mb(host) for host in hosts}


def disk_free_mb(host: Host) -> int | None:
    """MiB free in the host's volume group, less what is promised and not made yet; None when unknown.

    Promised: the volumes of guests not yet provisioned, and the full copies of save points being
    taken (plain-LVM hosts); neither is in vg_free_mb yet. Thin snapshots take nothing from the VG.
    And the root of a guest returning to a save point (queued or running): the job removes the root and
    clones a new one, and a job running beside it (a host runs several at once) may report the VG in
    between, without the old root and before the new one.
    """
    if host.vg_free_mb is None:
        return None
    pending = Guest.objects.filter(
        host=host, status__in=[Guest.Status.PENDING, Guest.Status.PROVISIONING]
    ).select_related("lab__template")
    promised = sum(g.lab.template.root_size_mb + g.lab.template.swap_size_mb for g in pending)
    copying = SavePoint.objects.filter(
        guest__host=host, status=SavePoint.Status.TAKING, method=SavePoint.Method.COPY
    ).aggregate(mb=Sum("size_mb"))["mb"]
    returning = Task.objects.filter(
        host=host, kind="savepoint_return", status__in=(Task.Status.QUEUED, Task.Status.RUNNING)
    ).aggregate(mb=Sum("guest__lab__template__root_size_mb"))["mb"]
    return host.vg_free_mb - promised - (copying or 0) - (returning or 0)


def _full_pools(hosts: list[Host]) -> dict[int, PoolFill]:
    fills = {h.pk: thin_pool.thin_pool_fill(h) for h in hosts}
    return {pk: fill for pk, fill in fills.items() if fill is not None and fill.full}


def bridge_failed(host: Host) -> bool:
    """Whether the host's last health check found its guests' bridge missing (a guest there cannot start)."""
    check = (host.health_report or {}).get("bridge")
    return isinstance(check, dict) and check.get("ok") is False


def place(count: int, hosts: list[Host], memory_mb: int, disk_mb: int, thin: bool = False) -> list[Host]:
    """A host for each of `count` new guests: the enabled host with the most free memory (and VG room when known).

    Hosts whose last health check failed on their bridge get none: `xl create`
    would fail there for every guest. `thin`: the guests are thin clones, so
    hosts whose thin pool was nearly full at their last health check get none
    (a full pool fails every guest on it). A pool not read yet is not held
    against its host. QuotaExceeded names what is short when they do not all fit.
    """
    if not hosts:
        raise ServiceError(_("No host accepts new guests: enable a host first."), field="hosts")
    skipped = [h for h in hosts if bridge_failed(h)]
    try:
        return _place(count, [h for h in hosts if h not in skipped], memory_mb, disk_mb, thin)
    except ServiceError as e:
        if not skipped:
            raise
        names = ", ".join(f"{h.name} ({h.bridge})" for h in skipped)
        why = _(
            "Hosts skipped because their last health check found the guests' bridge missing: %(hosts)s."
            " Fix the bridge, then run a health check."
        ) % {"hosts": names}
        raise type(e)(f"{e.message} {why}".strip(), field="hosts") from None


def _place(count: int, hosts: list[Host], memory_mb: int, disk_mb: int, thin: bool) -> list[Host]:
    if not hosts:
        raise QuotaExceeded(_("No host can take new guests."), field="hosts")
    free_mem, free_disk = _free_memory(hosts), _free_disk(hosts)
    # A refusal names what each host has, not what is left after the guests placed before it.
    before = (dict(free_mem), dict(free_disk))
    by_pk = {h.pk: h for h in hosts}
    full_pools = _full_pools(hosts) if thin else {}
    chosen = []
    for _guest in range(count):
        room = [
            pk
            for pk, free in free_mem.items()
            if free >= memory_mb and ((disk := free_disk[pk]) is None or disk >= disk_mb)
        ]
        fits = [pk for pk in room if pk not in full_pools]
        if not fits:
            raise _no_room(count, memory_mb, disk_mb, by_pk, free_mem, before, full_pools if room else {})
        best = max(fits, key=lambda pk: (free_mem[pk], -pk))
        chosen.append(by_pk[best])
        free_mem[best] -= memory_mb
        if (disk := free_disk[best]) is not None:
            free_disk[best] = disk - disk_mb
    return chosen


def _no_room(
    count: int,
    memory_mb: int,
    disk_mb: int,
    by_pk: dict[int, Host],
    free_mem: dict[int, int],
    before: tuple[dict[int, int], dict[int, int | None]],
    full_pools: dict[int, PoolFill],
) -> QuotaExceeded:
    """Why the next guest fits nowhere: full thin pools (that alone), no disk, or no memory.

    `free_mem` is what is left now, and says which ran out; the message gives what each host had
    before this batch (`before`: memory, disk), not what is left after the guests placed first.
    """
    free_disk = before[1]
    if full_pools:
        summary = "; ".join(f"{by_pk[pk].name} ({fill.describe()})" for pk, fill in sorted(full_pools.items()))
        return QuotaExceeded(
            _(
                "Not enough host capacity for thin clones: the thin pool is %(limit)d %% full or more on"
                " %(summary)s at the last health check, so no new thin clones go there. Extend the pool or"
                " remove guests, then run a health check."
            )
            % {"limit": thin_pool.THIN_POOL_FULL_PERCENT, "summary": summary},
            field="hosts",
        )
    if any(free >= memory_mb for free in free_mem.values()):
        # Memory is there but no volume group can hold the root and swap
        # volumes: say so, or the instructor looks at free memory in vain.
        summary = ", ".join(
            f"{by_pk[pk].name}: {max(free, 0)} MiB" for pk, free in sorted(free_disk.items()) if free is not None
        )
        return QuotaExceeded(
            _(
                "Not enough host capacity: %(n)d guest(s) need %(disk)d MiB of disk each for their root and swap"
                " volumes (free in the hosts' volume groups: %(summary)s)."
            )
            % {"n": count, "disk": disk_mb, "summary": summary},
            field="hosts",
        )
    summary = ", ".join(f"{by_pk[pk].name}: {max(free, 0)} MiB" for pk, free in sorted(before[0].items()))
    return QuotaExceeded(
        _(
            "Not enough host capacity: %(n)d guest(s) of %(mem)d MiB do not fit (free memory after the dom0"
            " reserve: %(summary)s)."
        )
        % {"n": count, "mem": memory_mb, "summary": summary},
        field="hosts",
    )
