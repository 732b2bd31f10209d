"""Per-student quotas: how many guests and how much memory a student may hold, over all labs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Greatest
from django.utils.translation import gettext as _

from labs.models import Guest, StudentQuota, Task
from labs.services.errors import QuotaExceeded


@dataclass(frozen=True)
class Quota:
    max_guests: int
    max_memory_mb: int


@dataclass(frozen=True)
class Usage:
    guests: int = 0
    memory_mb: int = 0


def default_quota() -> Quota:
    return Quota(settings.XENPANEL_DEFAULT_MAX_GUESTS, settings.XENPANEL_DEFAULT_MAX_MEMORY_MB)


def quota_for(user) -> Quota:
    """The student's StudentQuota row (edited by an admin) or the settings' defaults.

    A user loaded with select_related("quota") (labs.access loads a guest's
    student that way) already knows its row, or that it has none: no query.
    """
    rel = StudentQuota._meta.get_field("user").remote_field
    if rel.is_cached(user):
        row = rel.get_cached_value(user)
    else:
        row = StudentQuota.objects.filter(user=user).first()
    if isinstance(row, StudentQuota):
        return Quota(row.max_guests, row.max_memory_mb)
    return default_quota()


def quotas_for(users: Iterable) -> dict[int, Quota]:
    users = list(users)
    rows = {q.user_id: q for q in StudentQuota.objects.filter(user__in=users)}
    default = default_quota()
    return {u.pk: Quota(rows[u.pk].max_guests, rows[u.pk].max_memory_mb) if u.pk in rows else default for u in users}


# What each limit counts, in one place for the functions over many students
# or hosts and for the one-guest aggregate in limits: every guest row, whatever
# its state. One student or host is the guest page's case, on every load: `=`
# costs Django less to build than `IN (...)`, and the SQL means the same.
def held_by(students: Iterable, exclude_guest: Guest | None = None) -> Q:
    """The students' guests over all labs (tearing-down guests still hold their memory), but `exclude_guest`."""
    students = list(students)
    q = Q(student=students[0]) if len(students) == 1 else Q(student__in=students)
    return q if exclude_guest is None else q & ~Q(pk=exclude_guest.pk)


def promised_mb():
    """The memory a guest row holds, for the quotas and the hosts alike: its size, or the size a queued or
    running mem_set will give it, whichever is larger.

    Without the second, a resize not yet done was not counted, and two of them
    (at once, or the second while the first job waited) went over the quota
    or the host. An expression over Guest rows, to sum in the query that
    reads them: a correlated subquery (at most one such task per guest, as a
    mem_set marks its guest busy), no query more.
    """
    requested = (
        Task.objects.filter(guest=OuterRef("pk"), kind="mem_set", status__in=(Task.Status.QUEUED, Task.Status.RUNNING))
        .order_by()
        .values_list(Cast(KT("args__memory_mb"), IntegerField()))[:1]
    )
    return Greatest("memory_mb", Coalesce(Subquery(requested), "memory_mb"), output_field=IntegerField())


def usage_for(users: Iterable, exclude_guest: Guest | None = None) -> dict[int, Usage]:
    """Guests and memory each student holds, over all labs (tearing-down guests still hold theirs).

    Memory counts what queued and running resizes promise (promised_mb).
    """
    rows = (
        Guest.objects.filter(held_by(users, exclude_guest))
        .values("student_id")
        .annotate(n=Count("id"), mem=Sum(promised_mb()))
    )
    return {r["student_id"]: Usage(r["n"], r["mem"] or 0) for r in rows}


def check_student_quota(user, quota: Quota, usage: Usage, add_guests: int, add_memory_mb: int) -> None:
    """Raise QuotaExceeded naming the limit and the student when the request does not fit."""
    if usage.guests + add_guests > quota.max_guests:
        raise QuotaExceeded(
            _("%(user)s already has %(n)d guest(s); the limit is %(max)d (maximum guests).")
            % {"user": user.username, "n": usage.guests, "max": quota.max_guests},
            field="roster",
        )
    if usage.memory_mb + add_memory_mb > quota.max_memory_mb:
        raise QuotaExceeded(
            memory_quota_refusal(user.username, usage.memory_mb + add_memory_mb, quota.max_memory_mb),
            field="memory_mb",
        )


def memory_quota_refusal(username: str, total_mb: int, max_mb: int) -> str:
    """The words of a refusal over a student's memory quota (a batch, a resize)."""
    return _("%(user)s would use %(total)d MiB of memory; the limit is %(max)d MiB (maximum total memory).") % {
        "user": username,
        "total": total_mb,
        "max": max_mb,
    }
