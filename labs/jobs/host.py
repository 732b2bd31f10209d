"""Host upkeep jobs the sync loop queues: state sync (`xl list`, `xl info`, usage samples) and health checks."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from labs.dom0.base import Dom0Host, Domain, DomainCounters
from labs.dom0.errors import Dom0Error
from labs.jobs import connect
from labs.models import Guest, Host, Xl
from labs.services import actions, usage
from labs.services.thin_pool import PoolFill
from labs.services.upkeep import SILENT_AFTER_SECONDS

log = logging.getLogger(__name__)


def sync_host(host_id: int, samples: bool = True) -> str:
    """State sync: one `xl list` and one `xl info`, written to the Host and its Guests.

    With `samples` (always, from the sync loop) the same list feeds the usage
    charts, and once a minute `xentop` adds the network and disk counters.
    """
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return "no such host"
    return sync_once(host, connect.connect_host(host), timezone.now(), samples)


def sync_once(host: Host, h: Dom0Host, now: datetime, samples: bool = True) -> str:
    """One sync of `host` through `h` as of `now` (the job; benchmarks and tests call it with their own)."""
    started = time.monotonic()
    info = h.info()
    domains = h.list_domains()
    letters = {d.name: d.letter for d in domains if d.domid != 0}
    # Silent for a while, then back: a dom0 that rebooted. Its guests come back restored by xendomains;
    # one that does not is told apart from a VM its student shut down.
    came_back = host.last_seen is not None and host.last_seen < now - timedelta(seconds=SILENT_AFTER_SECONDS)
    Host.objects.filter(pk=host.pk).update(
        total_memory_mb=info.total_memory_mb,
        free_memory_mb=max(info.free_memory_mb, 0),
        xen_version=info.xen_version[:64],
        last_seen=now,
    )
    changed: list[Guest] = []
    lost: list[Guest] = []
    vanished: list[Guest] = []
    guests = list(
        Guest.objects.filter(host=host).only(
            "pk", "domain_name", "observed_state", "busy_with", "lab", "student", "desired_state"
        )
    )
    for guest in guests:
        letter = letters.get(guest.domain_name, "")
        if letter != guest.observed_state:
            if _gone_unasked(guest, letter):
                (lost if came_back else vanished).append(guest)
            guest.observed_state = letter
            changed.append(guest)
    if changed:
        Guest.objects.bulk_update(changed, ["observed_state"])
    if lost:
        Guest.objects.filter(pk__in=[g.pk for g in lost]).update(last_error=LOST_IN_REBOOT % {"host": host.name})
    for guest in vanished:
        _report_failed_reboot(h, guest)
    Guest.objects.filter(host=host).update(observed_at=now)
    note = _sample(host, h, now, domains, info.nr_cpus, guests) if samples else ""
    return f"{len(letters)} domains, {len(changed)} changed{note}, {time.monotonic() - started:.3f} s"


# A dom0 that rebooted without xendomains restoring its guests is the usual cause, but a long silence of
# the worker alone (a shutdown inside the VM meanwhile) looks the same from here: the words say both.
LOST_IN_REBOOT = (
    "The host %(host)s came back after a silence without this VM: it was running before, and nothing restored"
    " it (the host restarted without xendomains, see deploy/dom0-setup.md, or the VM was shut down meanwhile)."
    " Start it again."
)


def _report_failed_reboot(h: Dom0Host, guest: Guest) -> None:
    """A running VM vanished with nobody asking: shut down from inside, or rebooted from inside and xl
    could not build it again (libxl's hotplug timeout, on a loaded host). Only xl's log tells them
    apart; the second is reported for the panel's sync loop to start it (actions.restart_failed_reboots)."""
    try:
        reason = h.restart_failure(guest.domain_name)
    except Dom0Error as e:  # then it stays a plain stop
        log.warning("could not read xl's log for %s: %s", guest.domain_name, e)
        return
    if reason:
        log.info("%s rebooted itself and xl could not build it again: %s", guest.domain_name, reason)
        Guest.objects.filter(pk=guest.pk).update(last_error=actions.REBOOT_FAILED % {"reason": reason})


def _gone_unasked(guest: Guest, letter: str) -> bool:
    """A VM that ran and is gone now, nobody having asked (no panel job, and it was to run)."""
    return (
        guest.observed_state in Xl.UP
        and letter == Xl.ABSENT
        and not guest.busy_with
        and guest.desired_state == Guest.Desired.RUNNING
    )


def _sample(host: Host, h: Dom0Host, now: datetime, domains: list[Domain], nr_cpus: int, guests: list[Guest]) -> str:
    """Feed the tick to the host's usage meter; xentop only on the tick that ends a minute."""
    meter = usage.load_meter(host)
    ts = now.timestamp()
    counters: list[DomainCounters] | None = None
    if meter.meter.due(ts):
        try:
            counters = h.domain_counters()
        except Dom0Error as e:
            # Charts lose that minute's network and disk figures; the sync itself goes on.
            log.warning("usage: xentop on %s failed: %s", host.name, e.detail())
    closed = usage.record(meter, ts, domains, nr_cpus, {g.domain_name: g for g in guests}, counters)
    return f", minute written ({len(closed.points)} points)" if closed else ""


class _Checks:
    """The health checks of one host, in order; each returns (ok, words) and may note facts for the Host row."""

    def __init__(self, host: Host, dom0host: Dom0Host) -> None:
        self.host, self.h = host, dom0host
        self.facts: dict[str, Any] = {}
        self.pool_fill: dict[str, Any] = {}

    def names(self) -> list[str]:
        checks = ["xen", "volume_group", "bridge", "guest_network", "dom0_reserve"]
        return checks + (["thin_pool"] if self.host.thin_pool else [])

    def run(self, name: str) -> dict[str, Any]:
        try:
            ok, detail = getattr(self, name)()
        except Dom0Error as e:
            ok, detail = False, e.detail()
        return {"ok": ok, "detail": detail}

    def xen(self) -> tuple[bool, str]:
        info = self.h.info()
        self.facts.update(
            total_memory_mb=info.total_memory_mb,
            free_memory_mb=max(info.free_memory_mb, 0),
            xen_version=info.xen_version[:64],
        )
        return True, f"Xen {info.xen_version}, {info.total_memory_mb} MiB, {info.free_memory_mb} MiB free"

    def volume_group(self) -> tuple[bool, str]:
        g = self.h.volume_group()
        mib = 1024 * 1024
        self.facts.update(vg_size_mb=g.size_bytes // mib, vg_free_mb=g.free_bytes // mib)
        return g.free_bytes > 0, f"{g.name}: {g.free_bytes // mib} of {g.size_bytes // mib} MiB free"

    def bridge(self) -> tuple[bool, str]:
        ok = self.h.bridge_exists(self.host.bridge)
        return ok, f"bridge {self.host.bridge} {'exists' if ok else 'is missing'}"

    def guest_network(self) -> tuple[bool, str]:
        # Students are root in their guests: a bridge that holds a dom0 address puts them on the
        # dom0's (and so the panel's) network, with its sshd, Redis and PostgreSQL in reach.
        addresses = self.h.bridge_addresses(self.host.bridge)
        if addresses:
            return False, (
                f"bridge {self.host.bridge} holds {', '.join(addresses)}: the guests share a network with this dom0;"
                " move the dom0's address off the guests' bridge (deploy/dom0-setup.md, the bridge)"
            )
        return True, f"bridge {self.host.bridge} holds no dom0 address"

    def dom0_reserve(self) -> tuple[bool, str]:
        total = self.facts.get("total_memory_mb")
        if total is None:
            return False, "unknown: xl info failed"
        reserve = self.host.dom0_reserve_mb
        room = total - reserve
        return room > 0, f"{reserve} MiB reserved for dom0, {max(room, 0)} MiB left for guests"

    def thin_pool(self) -> tuple[bool, str]:
        usage = self.h.thin_pool_usage()
        fill = PoolFill(f"{self.host.volume_group}/{usage.name}", usage.data_percent, usage.metadata_percent)
        # Kept in the report: placement reads the fill from the last check.
        self.pool_fill.update(data_percent=fill.data_percent, metadata_percent=fill.metadata_percent)
        if fill.full:
            return False, f"{fill.describe()}: nearly full, no new thin clones go here"
        return True, fill.describe()


def health_check(host_id: int) -> dict:
    """xl info, VG free space, bridge, dom0 reserve and the thin pool's fill, recorded on the Host row."""
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return {}
    checks = _Checks(host, connect.connect_host(host))
    # The VG's free space is read here and written below: under the lock guest jobs report it with,
    # or a check running beside a batch could write a figure read before the batch's volumes existed.
    with connect.host_lock(host, connect.VG_REPORT_LOCK):
        report = {name: checks.run(name) for name in checks.names()}
        if checks.pool_fill:
            report["thin_pool"].update(checks.pool_fill)
        now = timezone.now()
        Host.objects.filter(pk=host.pk).update(
            health_ok=all(c["ok"] for c in report.values()),
            health_report=report,
            health_checked_at=now,
            last_seen=now,
            **checks.facts,
        )
    return report
