"""Template helpers for the panel: states in words, bars in numbers.

States are always rendered as words (plus the raw xl letter) so nothing
depends on colour alone; the CSS class only decorates.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from labs.access import roles_for
from labs.models import Guest, Host, Xl
from labs.services import capacity, expiry, explain, health, limits, registry, thin_pool
from labs.services.upkeep import silent_hosts

register = template.Library()

# `xl list` state letters. "b" (blocked) is a running guest waiting for
# work, so students see it as running.
XL_STATES = {
    Xl.RUNNING: pgettext_lazy("vm state", "running"),
    Xl.BLOCKED: pgettext_lazy("vm state", "running"),
    Xl.PAUSED: pgettext_lazy("vm state", "paused"),
    Xl.SHUTDOWN: pgettext_lazy("vm state", "shutting down"),
    Xl.CRASHED: pgettext_lazy("vm state", "crashed"),
    Xl.DYING: pgettext_lazy("vm state", "dying"),
    Xl.ABSENT: pgettext_lazy("vm state", "stopped"),
}
XL_CLASSES = {
    Xl.RUNNING: "success",
    Xl.BLOCKED: "success",
    Xl.PAUSED: "warning",
    Xl.SHUTDOWN: "info",
    Xl.CRASHED: "danger",
    Xl.DYING: "secondary",
    Xl.ABSENT: "secondary",
}
STATUS_CLASSES: dict[str, str] = {
    Guest.Status.PENDING: "info",
    Guest.Status.PROVISIONING: "info",
    Guest.Status.FAILED: "danger",
    Guest.Status.TEARING_DOWN: "dark",
}


def _key(guest: Guest) -> str:
    return guest.observed_state if guest.observed_state in XL_STATES else ""


SAVED = pgettext_lazy("vm state", "saved")
# A host silent since its guests ran: xendomains saved them as it shut down (deploy/dom0-setup.md).
SAVED_HOST_DOWN = pgettext_lazy("vm state", "saved (host down)")


def _saved(guest: Guest) -> str | None:
    """The state of a VM class hours saved, or of one that ran on a host now silent; None for others."""
    if guest.observed_state == Xl.ABSENT and guest.desired_state == Guest.Desired.SAVED:
        return str(SAVED)
    # Only a host the query brought along: a page of guests must not ask for each one's host.
    if guest.observed_state in Xl.UP and Guest.host.is_cached(guest) and _went_silent(guest.host):
        return str(SAVED_HOST_DOWN)
    return None


def _went_silent(host: Host) -> bool:
    """A host that answered once and is silent now (one never heard from has saved nothing)."""
    return host.last_seen is not None and bool(silent_hosts([host]))


@register.filter
def state_word(guest: Guest) -> str:
    """One word for what the student cares about: the VM's life-cycle state."""
    if guest.status != Guest.Status.READY:
        return guest.get_status_display()
    return _saved(guest) or str(XL_STATES[_key(guest)])


@register.filter
def state_class(guest: Guest) -> str:
    if guest.status != Guest.Status.READY:
        return STATUS_CLASSES.get(guest.status, "secondary")
    return "info" if _saved(guest) else XL_CLASSES[_key(guest)]


@register.filter
def xl_letter(guest: Guest) -> str:
    """The raw letter as `xl list` prints it, "-" when the domain does not exist."""
    return guest.observed_state or "-"


@register.filter
def busy_word(guest: Guest) -> str:
    """What the guest's current job is doing, in words ("" when idle)."""
    if not guest.busy_with:
        return ""
    return registry.busy_word(guest.busy_with)


@register.filter
def task_kind(kind: str) -> str:
    return registry.log_name(kind)


@register.filter
def elapsed(moment: datetime) -> str:
    """How long ago `moment` was, in words: "less than a minute" rather than "0 minutes" ("há 0 minuto")."""
    return expiry.left_words(timezone.now() - moment)


@register.filter
def over_limit(guest: Guest) -> bool:
    """The guest holds more memory than its lab and template allow now (labs.services.limits)."""
    return limits.over_fixed_limit(guest)


@register.filter
def step_label(step: str) -> str:
    """A job's recorded step in words (registry.step_label)."""
    return registry.step_label(step)


@register.filter
def plain_failure(raw: str) -> str:
    """A job's error or a guest's last error in a student's words (labs.services.explain)."""
    return explain.plain_failure(raw) if raw else ""


@register.filter
def percent(part: int | float | None, whole: int | float | None) -> int:
    """Whole-number percentage for bar widths, clamped to 0..100."""
    if not part or not whole:
        return 0
    return max(0, min(100, round(100 * part / whole)))


@register.simple_tag
def host_memory(host: Host) -> dict:
    """The numbers behind a host's memory bar: reserve, used by guests, free (MiB)."""
    total = host.total_memory_mb or 0
    free = min(host.free_memory_mb or 0, total)
    reserve = min(host.dom0_reserve_mb, total)
    used = max(total - free - reserve, 0)
    return {
        "known": bool(host.total_memory_mb),
        "total": total,
        "free": free,
        "reserve": reserve,
        "used": used,
        "reserve_pct": percent(reserve, total),
        "used_pct": percent(used, total),
        "free_pct": max(0, 100 - percent(reserve, total) - percent(used, total)),
        "low": bool(total) and free < 512,
    }


@register.simple_tag
def host_health(host: Host, stale_after_s: int = 300) -> dict:
    """Health in words: healthy / unhealthy / unknown, and whether the last report is stale."""
    from django.utils import timezone

    stale = host.last_seen is None or (timezone.now() - host.last_seen).total_seconds() > stale_after_s
    if host.health_ok is None:
        word, css = _("unknown"), "secondary"
    elif host.health_ok:
        word, css = _("healthy"), "success"
    else:
        word, css = _("unhealthy"), "danger"
    if stale and host.health_ok:
        word, css = _("not seen recently"), "warning"
    return {"word": word, "class": css, "stale": stale}


@register.simple_tag
def host_health_lines(host: Host) -> list[health.HealthLine]:
    """The host's last health check in words (labs.services.health)."""
    return health.health_lines(host)


@register.filter
def bridge_missing(host: Host) -> bool:
    """The host's last health check found its guests' bridge missing: placement gives it no new VMs."""
    return capacity.bridge_failed(host)


@register.simple_tag
def host_thin_pool(host: Host) -> dict:
    """The thin pool's fill at the last health check (None: not read yet), for the words on the host pages."""
    return {
        "pool": f"{host.volume_group}/{host.thin_pool}",
        "fill": thin_pool.thin_pool_fill(host),
        "limit": thin_pool.THIN_POOL_FULL_PERCENT,
    }


@register.simple_tag(takes_context=True)
def user_roles(context) -> dict:
    """What the navigation shows: the instructor pages, the admin link."""
    return roles_for(context["request"])


@register.simple_tag
def campus_login() -> bool:
    """Whether campus accounts sign in here (XENPANEL_LDAP_URI is set)."""
    return bool(settings.XENPANEL_LDAP_URI)
