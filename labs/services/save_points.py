"""Save points: a student keeps a copy of their VM's disk ("before exercise 3") and returns to it later.

How one is made depends on the host: where the guests' roots are thin volumes (a thin pool and a
template cloned by thin snapshot) it is a thin snapshot of the root, O(1) whatever the disk's size;
elsewhere it is a full copy, which takes the root's size from the volume group (capacity counts it
while it is being made; the host's report counts it afterwards). The jobs are in labs.jobs.save_points.

A student holds at most their quota (StudentQuota.max_save_points, set in the admin, else
XENPANEL_DEFAULT_MAX_SAVE_POINTS) of the save points they take; the ones an instructor takes for the
whole lab do not count. Save points outlive a reset to the template; the VM's deletion removes them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils.translation import gettext as _

from labs.access import may_delete_save_point, may_manage_lab
from labs.dom0 import names
from labs.dom0.errors import InvalidName
from labs.models import Guest, Host, Lab, LabTemplate, SavePoint, StudentQuota, Task
from labs.services import actions, capacity, thin_pool
from labs.services.errors import InvalidAction, QueueUnavailable, QuotaExceeded, ServiceError
from labs.services.refusals import refused

LABEL_MAX = 64
T = TypeVar("T")


def quota_for(user) -> int:
    """How many save points the student may hold: their StudentQuota row's, else the setting's."""
    row = StudentQuota.objects.filter(user=user).values_list("max_save_points", flat=True).first()
    return settings.XENPANEL_DEFAULT_MAX_SAVE_POINTS if row is None else row


def shown_quota(guest: Guest) -> int:
    """quota_for, from the quota row the guest pages load with the guest's student (access.GUEST_RELATED).

    Only for showing: a check reads the row afresh (quota_for), under the student's lock.
    """
    try:
        return guest.student.quota.max_save_points
    except StudentQuota.DoesNotExist:
        return settings.XENPANEL_DEFAULT_MAX_SAVE_POINTS


def held_by(user) -> int:
    """The save points that count in the student's quota."""
    return SavePoint.objects.filter(guest__student=user, lab_wide=False).count()


def of_guest(guest: Guest) -> tuple[list[SavePoint], int]:
    """The guest's save points, newest first, and how many its student holds in all: one query for the page.

    Each point's `guest` is `guest` (as loaded), so asking may_delete_save_point of it costs no query.
    """
    rows = list(
        SavePoint.objects.filter(Q(guest=guest) | Q(guest__student_id=guest.student_id, lab_wide=False)).order_by(
            "-created_at"
        )
    )
    mine = [p for p in rows if p.guest_id == guest.pk]
    for point in mine:
        point.guest = guest
    # Those taken for the whole lab count in no student's quota.
    return mine, sum(not p.lab_wide for p in rows)


def method_for(guest: Guest) -> str:
    """Thin snapshot where the guest's root is a thin volume, else a full copy."""
    thin = bool(guest.host.thin_pool) and guest.lab.template.clone_method == LabTemplate.CloneMethod.THIN
    return SavePoint.Method.THIN if thin else SavePoint.Method.COPY


def clean_label(label: str) -> str:
    label = " ".join(str(label or "").split())
    if not label:
        raise InvalidAction(_("Give the save point a label, for example “before exercise 3”."), field="label")
    if len(label) > LABEL_MAX:
        raise InvalidAction(_("A save point's label has at most %(n)d characters.") % {"n": LABEL_MAX}, field="label")
    # Whitespace controls were folded into spaces above; the rest (NUL, escapes) have no place in a label,
    # and PostgreSQL refuses NUL outright.
    if any(unicodedata.category(c) == "Cc" for c in label):
        raise InvalidAction(_("A save point's label cannot hold control characters."), field="label")
    return label


def _check_room(guest: Guest, method: str, size_mb: int) -> None:
    """Refuse a save point the host has no room for: a full thin pool, or a VG without the copy's size."""
    host = guest.host
    if method == SavePoint.Method.THIN:
        fill = thin_pool.thin_pool_fill(host)
        if fill is not None and fill.full:
            raise QuotaExceeded(
                _("No save point now: the host's thin pool is nearly full (%(fill)s). Ask an administrator.")
                % {"fill": fill.describe()}
            )
        return
    free = capacity.disk_free_mb(host)
    if free is not None and free < size_mb:
        raise QuotaExceeded(
            _(
                "No save point now: a save point of this VM is a full copy of its %(size)d MiB disk, and host "
                "%(host)s has %(free)d MiB free. Delete a save point, or ask an administrator."
            )
            % {"size": size_mb, "host": host.name, "free": max(free, 0)}
        )


def _check_quota(guest: Guest) -> None:
    limit, held = quota_for(guest.student), held_by(guest.student)
    if held >= limit:
        raise QuotaExceeded(
            _(
                "%(user)s already has %(n)d save point(s); the limit is %(max)d. Delete one first "
                "(or ask an administrator for a larger quota)."
            )
            % {"user": guest.student.username, "n": held, "max": limit}
        )


def _volume_stem(guest: Guest) -> str:
    return guest.root_lv.removesuffix(".raiz")


def take(actor, guest: Guest, label: str, *, lab_wide: bool = False) -> Task:
    """Queue a save point of the guest's disk; refused over the student's quota or the host's room."""
    label = clean_label(label)
    made: list[int] = []

    def prepare(g: Guest) -> dict:
        if not lab_wide:
            _check_quota(g)
        method = method_for(g)
        size_mb = g.lab.template.root_size_mb
        _check_room(g, method, size_mb)
        point = SavePoint.objects.create(
            guest=g,
            label=label,
            volume="",
            method=method,
            size_mb=size_mb,
            lab_wide=lab_wide,
            taken_by=actor if getattr(actor, "pk", None) else None,
        )
        try:
            point.volume = names.volume_name(f"{_volume_stem(g)}.sp{point.pk}")
        except InvalidName as e:  # a root LV name too long for a suffix
            raise InvalidAction(str(e)) from None
        point.save(update_fields=["volume"])
        made.append(point.pk)
        return {"save_point": point.pk, "label": label}

    try:
        with transaction.atomic():
            # The student first, as batches and resizes lock them: two save points asked at once wait
            # for each other, and the second counts the first.
            list(get_user_model().objects.select_for_update().filter(pk=guest.student_id).values_list("pk"))
            return actions.guest_action(actor, guest, "savepoint", prepare=prepare)
    except QueueUnavailable:
        SavePoint.objects.filter(pk__in=made).delete()
        raise
    except ServiceError as e:
        # guest_action recorded the refusal (quota, room, state, rights) inside this transaction, whose
        # rollback took the row with it: record it again now, outside.
        refused(actor, "savepoint", e.message, guest=guest)
        e.audited = True
        raise


def return_to(actor, point: SavePoint) -> Task:
    """Queue the return of the save point's guest to it: shut down, root swapped for a fresh clone, start."""

    def prepare(g: Guest) -> dict:
        p = SavePoint.objects.filter(pk=point.pk, guest=g, status=SavePoint.Status.READY).first()
        if p is None:
            raise InvalidAction(_("This save point is not ready: it is being taken or deleted."))
        return {"save_point": p.pk, "label": p.label}

    return actions.guest_action(actor, point.guest, "savepoint_return", prepare=prepare)


def delete(actor, point: SavePoint) -> Task:
    """Queue the removal of a save point's volume (its row goes when the volume has)."""
    if not may_delete_save_point(actor, point):
        raise InvalidAction(_("Only the lab's instructors delete a save point taken for the whole lab."))

    def prepare(g: Guest) -> dict:
        ready = SavePoint.objects.filter(pk=point.pk, guest=g, status=SavePoint.Status.READY)
        if not ready.update(status=SavePoint.Status.DELETING):
            raise InvalidAction(_("This save point is not ready: it is being taken or deleted."))
        return {"save_point": point.pk, "label": point.label}

    try:
        return actions.guest_action(actor, point.guest, "savepoint_delete", prepare=prepare)
    except QueueUnavailable:
        SavePoint.objects.filter(pk=point.pk, status=SavePoint.Status.DELETING).update(status=SavePoint.Status.READY)
        raise


@dataclass(frozen=True)
class Refusal:
    """One VM a lab-wide request left, and why (the message alone may not name it: a host's room)."""

    guest: Guest
    message: str


@dataclass
class LabOutcome:
    """What a lab-wide request did: one task per VM it reached, and why the others were left."""

    tasks: list[Task] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def _lab_guests(actor, lab: Lab):
    if not may_manage_lab(actor, lab):
        raise InvalidAction(_("You may not manage this lab."))
    if lab.status != Lab.Status.ACTIVE:
        raise InvalidAction(_("The lab %(lab)s is being deleted.") % {"lab": lab.name})
    return lab.guests.filter(status=Guest.Status.READY).select_related("lab__template", "host", "student")


def _each(items: Iterable[T], ask: Callable[[T], Task], guest_of: Callable[[T], Guest]) -> LabOutcome:
    """Ask for each item in turn: a refusal is noted with its VM and the rest go on; Redis down stops all."""
    outcome = LabOutcome()
    for item in items:
        try:
            outcome.tasks.append(ask(item))
        except QueueUnavailable:
            raise
        except ServiceError as e:
            outcome.refused.append(Refusal(guest_of(item), e.message))
    return outcome


def take_for_lab(actor, lab: Lab, label: str) -> LabOutcome:
    """A save point of every ready VM of the lab, with one label; it counts in no student's quota."""
    label = clean_label(label)
    return _each(_lab_guests(actor, lab), lambda guest: take(actor, guest, label, lab_wide=True), lambda g: g)


def host_usage(host: Host) -> dict[str, int]:
    """The host's save points (`n`) and the MiB of the volume group their full copies take (`copies_mb`)."""
    copy = Q(method=SavePoint.Method.COPY)
    row = SavePoint.objects.filter(guest__host=host).aggregate(n=Count("id"), copies_mb=Sum("size_mb", filter=copy))
    return {"n": row["n"], "copies_mb": row["copies_mb"] or 0}


def lab_labels(lab: Lab) -> list[str]:
    """The labels of the lab's save points taken for the whole lab, newest first."""
    rows = SavePoint.objects.filter(guest__lab=lab, lab_wide=True, status=SavePoint.Status.READY)
    return list(dict.fromkeys(rows.order_by("-created_at").values_list("label", flat=True)))


def lab_points(lab: Lab, label: str) -> list[SavePoint]:
    """Each VM's newest whole-lab save point with this label."""
    newest: dict[int, SavePoint] = {}
    rows = SavePoint.objects.filter(guest__lab=lab, lab_wide=True, label=label, status=SavePoint.Status.READY)
    for point in rows.select_related("guest__student").order_by("created_at"):
        newest[point.guest_id] = point
    return sorted(newest.values(), key=lambda p: p.guest.student.username)


def lab_points_named(lab: Lab, label: str) -> list[SavePoint]:
    """lab_points for a label a form or a script sent: cleaned, and refused in words when the lab has none."""
    label = clean_label(label)
    points = lab_points(lab, label)
    if not points:
        raise InvalidAction(_("The lab has no save point “%(label)s”.") % {"label": label}, field="label")
    return points


def return_lab(actor, lab: Lab, label: str) -> LabOutcome:
    """Return every VM of the lab that has it to the whole-lab save point `label`."""
    guests = {g.pk: g for g in _lab_guests(actor, lab)}
    points = [p for p in lab_points(lab, label) if p.guest_id in guests]
    for point in points:
        point.guest = guests[point.guest_id]
    return _each(points, lambda point: return_to(actor, point), lambda point: point.guest)
