"""The guest page's word on class hours: "Your VM sleeps until Tue 13:50", and whether the reader may wake it."""

from __future__ import annotations

from datetime import date, timedelta

from django import template
from django.db.models import Count, Q
from django.utils.dateformat import format as date_format

from labs.access import may_wake_outside_class_hours
from labs.models import Guest, Lab
from labs.services import class_hours
from labs.services.actions import STOPPED

MONDAY = date(2024, 1, 1)  # any Monday: a weekday's short name, in the user's language

register = template.Library()


@register.simple_tag(takes_context=True)
def sleep_note(context: template.Context, guest: Guest) -> dict | None:
    """None unless the lab's class hours have the VM asleep; else when it wakes, and whether the reader may."""
    until = class_hours.sleeps_until(guest)
    if until is None:
        return None
    schedule = class_hours.schedule_of(guest.lab)
    user = context["request"].user
    allowed = may_wake_outside_class_hours(user, guest, bool(schedule and schedule.students_may_wake))
    return {"until": class_hours.wake_time(until), "may_wake": allowed}


@register.simple_tag
def lab_class_hours(lab: Lab) -> dict:
    """The lab page's class hours in words ("Tue, Thu 14:00–16:00", "" without them) and how many of its VMs
    are stopped (the instructor's "start the lab's stopped VMs"), in one query."""
    row = (
        Lab.objects.filter(pk=lab.pk)
        .select_related("class_hours")
        .annotate(stopped=Count("guests", filter=prefixed(STOPPED, "guests")))
        .get()
    )
    schedule = class_hours.schedule_of(row)
    words = ""
    if schedule is not None:
        days = ", ".join(date_format(MONDAY + timedelta(days=int(d)), "D") for d in schedule.days)
        words = f"{days} {schedule.start:%H:%M}–{schedule.end:%H:%M}"
    return {"words": words, "stopped": row.stopped}


def prefixed(q: Q, prefix: str) -> Q:
    """`q` (on guests) as seen from their lab: every lookup behind `prefix__`."""
    children = [prefixed(c, prefix) if isinstance(c, Q) else (f"{prefix}__{c[0]}", c[1]) for c in q.children]  # type: ignore[index]
    out = Q(*children)
    out.connector, out.negated = q.connector, q.negated
    return out
