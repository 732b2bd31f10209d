"""Memory limits of one guest: where the student's quota, the lab, the template and the host meet."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Sum
from django.utils.translation import gettext as _

from labs.models import Guest, Lab, LabTemplate
from labs.services.capacity import host_free_mb, placed_on
from labs.services.errors import QuotaExceeded
from labs.services.quotas import held_by, promised_mb, quota_for

# A Debian PV guest does not get through boot with less than this.
MIN_GUEST_MEMORY_MB = 32


def guest_memory_sums(guest: Guest) -> tuple[int, int]:
    """(MiB the student's other guests hold, MiB allocated on the guest's host), in one query.

    The same rows as usage_for([student], exclude_guest=guest) and
    allocated_mb([host]) (the same filters), for the one guest a page shows:
    one aggregate over the rows either sum reads. Each row counts what a
    queued or running resize promises it (promised_mb, a subquery in the
    same statement).
    """
    mine, here = held_by([guest.student_id]), placed_on([guest.host_id])
    others = held_by([guest.student_id], exclude_guest=guest)
    # The WHERE reads all of the student's rows: its own row is on the host
    # anyway, and the plain test is cheaper than repeating the exclusion.
    row = (
        Guest.objects.filter(mine | here)
        .annotate(promised=promised_mb())
        .aggregate(others=Sum("promised", filter=others), allocated=Sum("promised", filter=here))
    )
    return row["others"] or 0, row["allocated"] or 0


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
