"""A host's last health check in words, in the reader's language.

The check runs on the dom0 (labs.jobs.host), which has no language of its
own: its report keeps, per check, whether it passed and the host's own
words. The pages say each check again here from the facts the same check
wrote on the Host row (memory, volume group, bridge, reserve),
and keep the host's words for a failure whose cause only they tell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy

from labs.models import Host

LABELS: dict[str, Promise] = {
    "xen": pgettext_lazy("health check", "Xen"),
    "volume_group": pgettext_lazy("health check", "Volume group"),
    "bridge": pgettext_lazy("health check", "Bridge"),
    "guest_network": pgettext_lazy("health check", "Guests' network"),
    "dom0_reserve": pgettext_lazy("health check", "dom0 reserve"),
}


@dataclass(frozen=True)
class HealthLine:
    label: str
    ok: bool
    words: str  # the check in the reader's language
    detail: str = ""  # the host's own words, when they tell more than `words` (a failure)


def _xen(host: Host, ok: bool) -> str:
    if not ok:
        return _("xl info did not answer.")
    return _("Xen %(version)s answers: %(total)s MiB of memory, %(free)s MiB free.") % {
        "version": host.xen_version or "?",
        "total": host.total_memory_mb if host.total_memory_mb is not None else "?",
        "free": host.free_memory_mb if host.free_memory_mb is not None else "?",
    }


def _volume_group(host: Host, ok: bool) -> str:
    if host.vg_size_mb is None:
        return _("Volume group %(vg)s could not be read.") % {"vg": host.volume_group}
    words = _("Volume group %(vg)s: %(free)s of %(size)s MiB free.") % {
        "vg": host.volume_group,
        "free": host.vg_free_mb,
        "size": host.vg_size_mb,
    }
    return words if ok else " ".join((words, _("No room for new VMs.")))


def _bridge(host: Host, ok: bool) -> str:
    if ok:
        return _("Bridge %(bridge)s exists.") % {"bridge": host.bridge}
    return _("Bridge %(bridge)s is missing: new VMs cannot join the lab's network.") % {"bridge": host.bridge}


def _guest_network(host: Host, ok: bool) -> str:
    if ok:
        return _("Bridge %(bridge)s holds no dom0 address: the guests cannot reach this host.") % {
            "bridge": host.bridge
        }
    return _(
        "Bridge %(bridge)s holds a dom0 address: the guests share a network with this dom0. Move the dom0's"
        " address off the guests' bridge (deploy/dom0-setup.md)."
    ) % {"bridge": host.bridge}


def _dom0_reserve(host: Host, ok: bool) -> str:
    room = host.usable_memory_mb
    if room is None:
        return _("Unknown: xl info did not answer.")
    words = _("%(reserve)s MiB reserved for dom0, %(room)s MiB left for guests.") % {
        "reserve": host.dom0_reserve_mb,
        "room": room,
    }
    return words if ok else " ".join((words, _("The reserve leaves no memory for guests.")))


_WORDS: dict[str, Callable[[Host, bool], str]] = {
    "xen": _xen,
    "volume_group": _volume_group,
    "bridge": _bridge,
    "guest_network": _guest_network,
    "dom0_reserve": _dom0_reserve,
}


def health_lines(host: Host) -> list[HealthLine]:
    """Each check of the host's last health check, in words; a check this panel does not know, as reported."""
    lines = []
    for name, check in (host.health_report or {}).items():
        # The thin pool's fill has its own line on the host pages (_host_thin_pool.html).
        if name == "thin_pool" or not isinstance(check, dict):
            continue
        ok = bool(check.get("ok"))
        raw = str(check.get("detail", ""))
        say = _WORDS.get(name)
        words = say(host, ok) if say is not None else raw
        label = str(LABELS.get(name, name.replace("_", " ")))
        lines.append(HealthLine(label, ok, words, "" if ok or say is None else raw))
    return lines
