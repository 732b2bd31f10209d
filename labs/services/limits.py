"""Quotas and capacity: how much memory a guest, a student and a host may take."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.template.defaultfilters import floatformat
from django.utils.translation import gettext as _

from labs.models import Guest, Host, Lab, LabTemplate, StudentQuota
from labs.services.errors import QuotaExceeded

# A Debian PV guest does not get through boot with less than this.
MIN_GUEST_MEMORY_MB = 32
# A full thin pool makes every guest on it fail writes (I/O errors or a
# hang). The guests already there keep writing after they are cloned, so new
# thin clones stop well before 100 %: at 90 % of the pool's data or metadata
# the operator still has room to extend the pool before anyone notices.
THIN_POOL_FULL_PERCENT = 90.0


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


@dataclass(frozen=True)
class PoolFill:
    """A host's thin pool as its last health check read it (percent used)."""

    pool: str  # "<vg>/<pool>"
    data_percent: float
    metadata_percent: float | None

    @property
    def full(self) -> bool:
        return thin_pool_full(self.data_percent, self.metadata_percent)

    def describe(self) -> str:
        """The fill in words, in the current language: the host pages, the health report, placement's refusal.

        e.g. "Thin pool vg0/pool: 42 % data, 7 % metadata used".
        """
        data = floatformat(self.data_percent, -1)
        if self.metadata_percent is None:
            return _("Thin pool %(pool)s: %(data)s %% data used (metadata not reported)") % {
                "pool": self.pool,
                "data": data,
            }
        return _("Thin pool %(pool)s: %(data)s %% data, %(metadata)s %% metadata used") % {
            "pool": self.pool,
            "data": data,
            "metadata": floatformat(self.metadata_percent, -1),
        }


def thin_pool_full(data_percent: float, metadata_percent: float | None) -> bool:
    """At or above THIN_POOL_FULL_PERCENT in data or metadata: no new thin clones there."""
    return max(data_percent, metadata_percent or 0.0) >= THIN_POOL_FULL_PERCENT


def thin_pool_fill(host: Host) -> PoolFill | None:
    """The fill of the host's thin pool at its last health check; None when it has no pool or it was not read."""
    check = (host.health_report or {}).get("thin_pool") if host.thin_pool else None
    if not isinstance(check, dict) or check.get("data_percent") is None:
        return None
    metadata = check.get("metadata_percent")
    return PoolFill(
        f"{host.volume_group}/{host.thin_pool}",
        float(check["data_percent"]),
        None if metadata is None else float(metadata),
    )


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
    if row is not None:
        return Quota(row.max_guests, row.max_memory_mb)
    return default_quota()


def quotas_for(users: Iterable) -> dict[int, Quota]:
    users = list(users)
    rows = {q.user_id: q for q in StudentQuota.objects.filter(user__in=users)}
    default = default_quota()
    return {u.pk: Quota(rows[u.pk].max_guests, rows[u.pk].max_memory_mb) if u.pk in rows else default for u in users}


# What each limit counts, in one place for the functions over many students
# or hosts and for the one-guest aggregate below: every guest row, whatever
# its state. One student or host is the guest page's case, on every load: `=`
# costs Django less to build than `IN (...)`, and the SQL means the same.
def _held_by(students: Iterable, exclude_guest: Guest | None = None) -> Q:
    """The students' guests over all labs (tearing-down guests still hold their memory), but `exclude_guest`."""
    students = list(students)
    q = Q(student=students[0]) if len(students) == 1 else Q(student__in=students)
    return q if exclude_guest is None else q & ~Q(pk=exclude_guest.pk)


def _placed_on(hosts: Iterable) -> Q:
    """The guests promised memory on the hosts: a stopped guest may start any time."""
    hosts = list(hosts)
    return Q(host=hosts[0]) if len(hosts) == 1 else Q(host__in=hosts)


def usage_for(users: Iterable, exclude_guest: Guest | None = None) -> dict[int, Usage]:
    """Guests and memory each student holds now, over all labs (tearing-down guests still hold theirs)."""
    rows = (
        Guest.objects.filter(_held_by(users, exclude_guest))
        .values("student_id")
        .annotate(n=Count("id"), mem=Sum("memory_mb"))
    )
    return {r["student_id"]: Usage(r["n"], r["mem"] or 0) for r in rows}


def guest_memory_sums(guest: Guest) -> tuple[int, int]:
    """(MiB the student's other guests hold, MiB allocated on the guest's host), in one query.

    The same rows as usage_for([student], exclude_guest=guest) and
    allocated_mb([host]) (the same filters), for the one guest a page shows:
    one aggregate over the rows either sum reads.
    """
    mine, here = _held_by([guest.student_id]), _placed_on([guest.host_id])
    others = _held_by([guest.student_id], exclude_guest=guest)
    # The WHERE reads all of the student's rows: its own row is on the host
    # anyway, and the plain test is cheaper than repeating the exclusion.
    row = Guest.objects.filter(mine | here).aggregate(
        others=Sum("memory_mb", filter=others),
        allocated=Sum("memory_mb", filter=here),
    )
    return row["others"] or 0, row["allocated"] or 0


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
            _("%(user)s would use %(total)d MiB of memory; the limit is %(max)d MiB (maximum total memory).")
            % {"user": user.username, "total": usage.memory_mb + add_memory_mb, "max": quota.max_memory_mb},
            field="memory_mb",
        )


def check_guest_memory(memory_mb: int, template: LabTemplate, lab_max_mb: int) -> None:
    """Raise QuotaExceeded, naming the limit, unless one guest may have `memory_mb`."""
    if memory_mb < MIN_GUEST_MEMORY_MB:
        raise QuotaExceeded(
            _("%(mem)d MiB is too little: a guest needs at least %(min)d MiB.")
            % {"mem": memory_mb, "min": MIN_GUEST_MEMORY_MB},
            field="memory_mb",
        )
    if memory_mb > template.max_memory_mb:
        raise QuotaExceeded(
            _("%(mem)d MiB exceeds the template's maximum memory (%(max)d MiB).")
            % {"mem": memory_mb, "max": template.max_memory_mb},
            field="memory_mb",
        )
    if memory_mb > lab_max_mb:
        raise QuotaExceeded(
            _("%(mem)d MiB exceeds the lab's maximum memory per guest (%(max)d MiB).")
            % {"mem": memory_mb, "max": lab_max_mb},
            field="memory_mb",
        )


def template_lab_max_mb(template: LabTemplate, lab: Lab | None = None) -> int:
    lab_max = lab.max_guest_memory_mb if lab is not None else settings.XENPANEL_DEFAULT_LAB_MAX_GUEST_MEMORY_MB
    return min(template.max_memory_mb, lab_max)


def allocated_mb(hosts: Iterable[Host]) -> dict[int, int]:
    """Memory promised to guests on each host, whatever their state: a stopped guest may start any time."""
    rows = Guest.objects.filter(_placed_on(hosts)).values("host_id").annotate(mem=Sum("memory_mb"))
    return {r["host_id"]: r["mem"] or 0 for r in rows}


def host_free_mb(host: Host, allocated: int) -> int | None:
    """Memory still free for new guests; None when the host has never reported its memory."""
    usable = host.usable_memory_mb
    return None if usable is None else usable - allocated


def memory_limits(obj: Guest | Lab | LabTemplate) -> tuple[int, int]:
    """(min, max) MiB for a guest's mem-set, or for a new batch on a lab or template."""
    if isinstance(obj, LabTemplate):
        return MIN_GUEST_MEMORY_MB, template_lab_max_mb(obj)
    if isinstance(obj, Lab):
        return MIN_GUEST_MEMORY_MB, template_lab_max_mb(obj.template, obj)
    guest = obj
    # With the guest loaded as labs.access loads it (lab, template, host, the
    # student and their quota), the one query here is the memory aggregate.
    upper = template_lab_max_mb(guest.lab.template, guest.lab)
    quota = quota_for(guest.student)
    others_mb, allocated = guest_memory_sums(guest)
    upper = min(upper, quota.max_memory_mb - others_mb)
    free = host_free_mb(guest.host, allocated)
    if free is not None:
        # The guest's own memory is already counted as allocated.
        upper = min(upper, free + guest.memory_mb)
    return MIN_GUEST_MEMORY_MB, max(upper, MIN_GUEST_MEMORY_MB)
