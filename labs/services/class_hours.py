"""Class hours: a lab's VMs sleep outside its weekly schedule and wake 10 minutes before class.

The schedule is in the panel's time zone (settings.TIME_ZONE): "Tue and Thu
14:00-16:00" means 14:00 on the wall clock, summer time or not. Its moments,
a wake-up at 13:50 and a start of sleep at 16:00, are worked out per local
date and only then turned into UTC, so a class after a DST change still wakes
at 13:50 local time.

The sync loop's tick calls `apply_class_hours`. It acts on the latest moment
that has passed and not been acted on (ClassSchedule.applied_at): a panel
that was down at 16:00 puts the VMs to sleep when it comes back, and a VM a
student woke outside class is left awake until the next moment. Sleeping is
`xl save` to /var/lib/xen/save (the memory is freed; programs go on where
they were after `xl restore`) or a shutdown, as the lab says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from labs.access import may_wake_outside_class_hours
from labs.class_hours_models import ClassSchedule
from labs.models import Guest, Lab
from labs.services.errors import InvalidAction
from labs.services.registry import Situation, situation

log = logging.getLogger(__name__)

# VMs come back this long before class, so they have booted (or restored) when it starts.
WAKE_LEAD = timedelta(minutes=10)
# What each situation of an idle guest gets at the start of sleep (by the lab's setting) and at wake-up.
SLEEP_JOBS = {
    ClassSchedule.Outside.SAVE: {Situation.RUNNING: "save", Situation.PAUSED: "save"},
    ClassSchedule.Outside.SHUTDOWN: {Situation.RUNNING: "shutdown"},
}
WAKE_JOBS = {Situation.SAVED: "restore", Situation.STOPPED: "start"}


@dataclass(frozen=True)
class Phase:
    """Where a schedule stands at a moment: awake (class, or its 10-minute lead) or asleep, since and until when."""

    awake: bool
    since: datetime | None  # the moment this phase began (None: none within the last week)
    until: datetime | None  # the next moment (None: no class days at all)


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _moments(schedule: ClassSchedule, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The wake-up and the start of sleep of a class on a local date, in UTC.

    A wall-clock time that does not exist that day (the hour skipped in spring) is read with the offset
    before the change, as zoneinfo does; the lead is taken in real minutes, in UTC.
    """
    start = datetime.combine(day, schedule.start, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day, schedule.end, tzinfo=zone).astimezone(UTC)
    return start - WAKE_LEAD, end


def phase(schedule: ClassSchedule, now: datetime) -> Phase:
    """The schedule's phase at `now` (aware), from the class days of the week around it."""
    zone = _zone()
    today = now.astimezone(zone).date()
    moments: list[tuple[datetime, bool]] = []
    for offset in range(-8, 9):
        day = today + timedelta(days=offset)
        if str(day.weekday()) in schedule.days:
            wake, sleep = _moments(schedule, day, zone)
            moments += [(wake, True), (sleep, False)]
    moments.sort()
    past = [m for m in moments if m[0] <= now]
    future = [m[0] for m in moments if m[0] > now]
    until = future[0] if future else None
    if not past:
        return Phase(awake=False, since=None, until=until)
    since, awake = past[-1]
    return Phase(awake=awake, since=since, until=until)


def schedule_of(lab: Lab) -> ClassSchedule | None:
    try:
        return lab.class_hours
    except ClassSchedule.DoesNotExist:
        return None


def sleeps_until(guest: Guest, now: datetime | None = None) -> datetime | None:
    """When a guest put to sleep by its lab's class hours wakes up; None when it is not asleep."""
    schedule = schedule_of(guest.lab)
    if schedule is None or situation(guest) not in WAKE_JOBS:
        return None
    where = phase(schedule, now or timezone.now())
    return None if where.awake else where.until


def wake_refusal(actor, guest: Guest, now: datetime | None = None) -> InvalidAction | None:
    """The refusal for starting or restoring a sleeping VM by someone the lab does not let wake it."""
    until = sleeps_until(guest, now)
    if until is None:
        return None
    schedule = schedule_of(guest.lab)
    if may_wake_outside_class_hours(actor, guest, bool(schedule and schedule.students_may_wake)):
        return None
    return InvalidAction(
        _("Your VM sleeps until %(when)s: outside class hours only the lab's instructors can wake it.")
        % {"when": wake_time(until)}
    )


def wake_time(moment: datetime) -> str:
    """A wake-up in the panel's time zone as students read it, e.g. "Tue 13:50"."""
    from django.utils.dateformat import format as date_format

    return date_format(moment.astimezone(_zone()), "D H:i")


def _apply(schedule: ClassSchedule, awake: bool) -> tuple[int, bool]:
    """Queue the jobs a moment asks of the lab's guests; (jobs queued, every guest handled)."""
    from labs.services.actions import scheduled_action

    jobs = WAKE_JOBS if awake else SLEEP_JOBS[ClassSchedule.Outside(schedule.outside)]
    queued, handled = 0, True
    guests = schedule.lab.guests.filter(status=Guest.Status.READY).select_related("lab", "host")
    for guest in guests:
        where = situation(guest)
        if where is None:  # a job is running on it: the next tick tries again
            handled = False
            continue
        kind = jobs.get(where)
        if kind is None:
            continue
        try:
            scheduled_action(guest, kind)
            queued += 1
        except InvalidAction as e:
            handled = False
            log.warning("class hours of %s: %s %s refused: %s", schedule.lab.slug, kind, guest.domain_name, e)
    return queued, handled


def apply_class_hours(now: datetime | None = None) -> int:
    """Put labs' VMs to sleep or wake them at the latest moment of their schedule not yet acted on."""
    now = now or timezone.now()
    queued = 0
    for schedule in ClassSchedule.objects.filter(lab__status=Lab.Status.ACTIVE).select_related("lab"):
        where = phase(schedule, now)
        if where.since is None or (schedule.applied_at is not None and schedule.applied_at >= where.since):
            continue
        n, handled = _apply(schedule, where.awake)
        queued += n
        if handled:
            ClassSchedule.objects.filter(pk=schedule.pk).update(applied_at=where.since)
        log.info("class hours of %s: %s, %d jobs queued", schedule.lab.slug, "wake" if where.awake else "sleep", n)
    return queued
