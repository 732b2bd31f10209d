"""A lab's expiry: when its VMs are destroyed, the notice everyone sees before that, and changing it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import formats, timezone
from django.utils.timesince import timeuntil
from django.utils.translation import gettext as _

from labs.access import may_change_lab_expiry
from labs.models import AuditEvent, Lab
from labs.services.errors import InvalidAction


def warning_window() -> timedelta:
    """How long before its expiry a lab is announced (XENPANEL_EXPIRY_WARNING_HOURS)."""
    return timedelta(hours=settings.XENPANEL_EXPIRY_WARNING_HOURS)


def when_words(moment: datetime) -> str:
    """A moment in the reader's language and the panel's time zone (the middle of a sentence, never its end:
    English formats end in "a.m.")."""
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def left_words(left: timedelta) -> str:
    """Time left in words: "1 day, 3 hours"; under a minute, not "0 minutes"."""
    if left < timedelta(minutes=1):
        return _("less than a minute")
    now = timezone.now()
    return timeuntil(now + left, now, depth=2)


@dataclass(frozen=True)
class ExpiryNotice:
    """What the banners say about one lab's coming expiry."""

    lab: Lab
    expires_at: datetime
    left: timedelta

    @property
    def soon(self) -> bool:
        return self.left <= warning_window()

    def words(self) -> str:
        return _(
            "The VMs of lab %(lab)s will be destroyed on %(when)s, in %(left)s: everything stored in them is lost."
        ) % {"lab": self.lab.name, "when": when_words(self.expires_at), "left": left_words(self.left)}


def expiry_notice(lab: Lab, now: datetime | None = None) -> ExpiryNotice | None:
    """The lab's expiry, for an active lab that has one (soon or not); None otherwise."""
    if lab.expires_at is None or lab.status != Lab.Status.ACTIVE:
        return None
    left = max(lab.expires_at - (now or timezone.now()), timedelta(0))
    return ExpiryNotice(lab, lab.expires_at, left)


def expiring_soon(labs, now: datetime | None = None) -> list[ExpiryNotice]:
    """The notices to show as banners: the given labs that expire within the warning window, soonest first."""
    notices = (expiry_notice(lab, now) for lab in {lab.pk: lab for lab in labs}.values())
    return sorted((n for n in notices if n is not None and n.soon), key=lambda n: n.expires_at)


def set_lab_expiry(actor, lab: Lab, expires_at: datetime | None) -> None:
    """Change (or clear) the lab's expiry, audited. A time in the past is refused: the sync loop would tear the
    lab down at once."""
    if not may_change_lab_expiry(actor, lab):
        raise InvalidAction(_("Only the lab's instructors can change its expiry while the lab is active."))
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidAction(_("The expiry date must be in the future."), field="expires_at")
    old = lab.expires_at
    Lab.objects.filter(pk=lab.pk).update(expires_at=expires_at)
    lab.expires_at = expires_at
    AuditEvent.objects.create(
        actor=actor,
        action="lab_expiry",
        lab=lab,
        target=lab.slug,
        result=AuditEvent.Result.SUCCEEDED,
        message=_("expiry changed from %(old)s to %(new)s")
        % {
            "old": old.isoformat(timespec="minutes") if old else _("none"),
            "new": expires_at.isoformat(timespec="minutes") if expires_at else _("none"),
        },
    )


def extended(lab: Lab, days: int, now: datetime | None = None) -> datetime:
    """The lab's expiry moved `days` later (from now, if it has none or it has passed)."""
    now = now or timezone.now()
    base = lab.expires_at if lab.expires_at is not None and lab.expires_at > now else now
    return base + timedelta(days=days)
