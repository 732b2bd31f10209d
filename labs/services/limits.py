"""Memory limits of one guest: where the student's quota, the lab, the template and the host meet."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, QuerySet, Sum
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from labs.models import Guest, Lab, LabTemplate
from labs.services.capacity import host_free_mb, placed_on
from labs.services.errors import QuotaExceeded
from labs.services.quotas import Usage, held_by, memory_quota_refusal, promised_mb, quota_for, usage_for

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
        raise QuotaExceeded(_limit_refusal(memory_mb, Binds.TEMPLATE, template.max_memory_mb, lab_max_mb), "memory_mb")
    if memory_mb > lab_max_mb:
        raise QuotaExceeded(_limit_refusal(memory_mb, Binds.LAB, template.max_memory_mb, lab_max_mb), "memory_mb")


def _limit_refusal(memory_mb: int, binds: Binds, template_mb: int, lab_mb: int) -> str:
    if binds == Binds.TEMPLATE:
        return _("%(mem)d MiB exceeds the template's maximum memory (%(max)d MiB).") % {
            "mem": memory_mb,
            "max": template_mb,
        }
    return _("%(mem)d MiB exceeds the lab's maximum memory per guest (%(max)d MiB).") % {
        "mem": memory_mb,
        "max": lab_mb,
    }


def template_lab_max_mb(template: LabTemplate, lab: Lab | None = None) -> int:
    lab_max = lab.max_guest_memory_mb if lab is not None else settings.XENPANEL_DEFAULT_LAB_MAX_GUEST_MEMORY_MB
    return min(template.max_memory_mb, lab_max)


class Binds(enum.StrEnum):
    """Which limit sets a guest's most memory now (the smallest; on a tie, the first in this order)."""

    TEMPLATE = "template"  # the template's maximum memory
    LAB = "lab"  # the lab's maximum memory per guest
    QUOTA = "quota"  # the student's quota, less what their other VMs hold
    HOST = "host"  # the host's free memory, plus what the guest already holds


@dataclass(frozen=True)
class MemoryLimit:
    """The most memory one guest may have now, which limit sets it, and the numbers behind it.

    `high` may be below MIN_GUEST_MEMORY_MB (then no size fits) or below
    `current_mb` (the guest is over its limit: a lab's limit was lowered
    under it, or its student's quota was).
    """

    high: int
    binds: Binds
    current_mb: int
    quota_mb: int
    others_mb: int  # what the student's other guests hold, over all labs
    lab_mb: int
    template_mb: int
    template: str
    host_room_mb: int | None  # the host's free memory plus the guest's own; None: not reported
    host: str
    student: str
    low: int = MIN_GUEST_MEMORY_MB

    @property
    def fits(self) -> bool:
        """Some size between `low` and `high` is allowed."""
        return self.high >= self.low

    @property
    def over(self) -> bool:
        return self.current_mb > self.high

    def bounds(self) -> tuple[int, int]:
        """(min, max) for the memory form: never an upper bound under the lower one."""
        return self.low, max(self.high, self.low)

    def suggested_mb(self) -> int:
        """What the memory form shows first: the guest's size, unless the form would refuse it."""
        low, high = self.bounds()
        return min(max(self.current_mb, low), high)

    def reason(self, viewer_is_student: bool) -> str:
        """Why `high` is what it is, as a clause: "your quota is 1024 MiB and your other VMs use 640 MiB"."""
        if self.binds == Binds.QUOTA:
            if viewer_is_student:
                text = _("your quota is %(quota)d MiB and your other VMs use %(others)d MiB")
            else:
                text = _("%(student)s's quota is %(quota)d MiB and their other VMs use %(others)d MiB")
        elif self.binds == Binds.LAB:
            text = _("the lab allows at most %(lab)d MiB per VM")
        elif self.binds == Binds.TEMPLATE:
            text = _("the template %(template)s allows at most %(tmax)d MiB")
        else:
            text = _("host %(host)s has %(free)d MiB free besides this VM's %(mem)d MiB")
        return text % {
            "quota": self.quota_mb,
            "others": self.others_mb,
            "student": self.student,
            "lab": self.lab_mb,
            "template": self.template,
            "tmax": self.template_mb,
            "host": self.host,
            "free": max((self.host_room_mb or 0) - self.current_mb, 0),
            "mem": self.current_mb,
        }

    def explain(self, viewer_is_student: bool) -> str:
        """The limit in one sentence, for the memory form and the guest page."""
        if not self.fits:
            head = _("No memory size fits this VM now (a VM needs at least %(min)d MiB)") % {"min": self.low}
        elif viewer_is_student:
            head = _("You can give this VM at most %(max)d MiB") % {"max": self.high}
        else:
            head = _("This VM can have at most %(max)d MiB") % {"max": self.high}
        return _("%(head)s: %(reason)s.") % {"head": head, "reason": self.reason(viewer_is_student)}

    def over_words(self) -> str:
        """What being over the limit means, for the guest page ("" when it is not over)."""
        if not self.over:
            return ""
        return _(
            "This VM has %(mem)d MiB, more than the %(max)d MiB it may have now. It keeps them while it runs;"
            " a change of its memory must go down to the limit."
        ) % {"mem": self.current_mb, "max": max(self.high, 0)}

    def refuse(self, memory_mb: int) -> None:
        """Raise QuotaExceeded, naming the limit and its numbers, unless the guest may have `memory_mb`."""
        if memory_mb < self.low:
            raise QuotaExceeded(
                _("%(mem)d MiB is too little: a guest needs at least %(min)d MiB.")
                % {"mem": memory_mb, "min": self.low},
                field="memory_mb",
            )
        if memory_mb <= self.high:
            return
        if self.binds == Binds.QUOTA:
            raise QuotaExceeded(
                memory_quota_refusal(self.student, self.others_mb + memory_mb, self.quota_mb), field="memory_mb"
            )
        if self.binds == Binds.HOST:
            raise QuotaExceeded(
                _("Host %(host)s has only %(free)d MiB free for guests.")
                % {"host": self.host, "free": max((self.host_room_mb or 0) - self.current_mb, 0)},
                field="memory_mb",
            )
        raise QuotaExceeded(_limit_refusal(memory_mb, self.binds, self.template_mb, self.lab_mb), field="memory_mb")


def guest_memory_limit(guest: Guest) -> MemoryLimit:
    """The one place that decides how much memory a guest may have now, and why.

    With the guest loaded as labs.access loads it (lab, template, host, the
    student and their quota), the one query here is the memory aggregate.
    """
    lab, template = guest.lab, guest.lab.template
    quota = quota_for(guest.student)
    others_mb, allocated = guest_memory_sums(guest)
    free = host_free_mb(guest.host, allocated)
    # The guest's own memory is already counted as allocated.
    room = None if free is None else free + guest.memory_mb
    # On a tie the fixed ceilings are named first: the template's, then the lab's.
    candidates = [
        (template.max_memory_mb, Binds.TEMPLATE),
        (lab.max_guest_memory_mb, Binds.LAB),
        (quota.max_memory_mb - others_mb, Binds.QUOTA),
    ]
    if room is not None:
        candidates.append((room, Binds.HOST))
    high, binds = min(candidates, key=lambda c: c[0])
    return MemoryLimit(
        high=high,
        binds=binds,
        current_mb=guest.memory_mb,
        quota_mb=quota.max_memory_mb,
        others_mb=others_mb,
        lab_mb=lab.max_guest_memory_mb,
        template_mb=template.max_memory_mb,
        template=template.name,
        host_room_mb=room,
        host=guest.host.name,
        student=guest.student.username,
    )


def over_fixed_limit(guest: Guest) -> bool:
    """Whether the guest holds more than its lab and template allow: the part of guest_memory_limit that
    needs no query, for lists of guests (My VMs)."""
    return guest.memory_mb > template_lab_max_mb(guest.lab.template, guest.lab)


def memory_limits(obj: Guest | Lab | LabTemplate) -> tuple[int, int]:
    """(min, max) MiB for a guest's mem-set, or for a new batch on a lab or template."""
    if isinstance(obj, LabTemplate):
        return MIN_GUEST_MEMORY_MB, template_lab_max_mb(obj)
    if isinstance(obj, Lab):
        return MIN_GUEST_MEMORY_MB, template_lab_max_mb(obj.template, obj)
    return guest_memory_limit(obj).bounds()


def _over(guests: QuerySet[Guest], max_mb: int) -> tuple[int, str, int] | None:
    """(how many of `guests` hold more than `max_mb`, the largest one's name, its MiB), or None: none does.

    A guest holds what promised_mb says: a queued or running resize counts
    its new size, which the lowered limit would leave over it as well.
    """
    over = guests.annotate(promised=promised_mb()).filter(promised__gt=max_mb)
    largest = over.order_by("-promised", "domain_name").values_list("domain_name", "promised").first()
    if largest is None:
        return None
    return over.count(), largest[0], largest[1]


def template_limit_refusal(template: LabTemplate, max_mb: int) -> str | None:
    """Why `template` may not get `max_mb` as its maximum memory (None: it may).

    A maximum under what its labs' VMs hold would leave them over it; one
    under a live lab's memory per VM would refuse that lab's next VMs.
    """
    if template.pk is None:
        return None
    over = _over(Guest.objects.filter(lab__template_id=template.pk), max_mb)
    if over is not None:
        count, vm, mem = over
        return ngettext(
            "%(count)d VM of this template has more memory than %(max)d MiB (%(vm)s has %(mem)d MiB):"
            " lower its memory first, or choose at least %(mem)d MiB.",
            "%(count)d VMs of this template have more memory than %(max)d MiB (the largest, %(vm)s, has"
            " %(mem)d MiB): lower their memory first, or choose at least %(mem)d MiB.",
            count,
        ) % {"count": count, "max": max_mb, "vm": vm, "mem": mem}
    lab = (
        Lab.objects.filter(template_id=template.pk, memory_mb__gt=max_mb)
        .exclude(status=Lab.Status.TORN_DOWN)
        .order_by("-memory_mb", "slug")
        .first()
    )
    if lab is not None:
        return _(
            "%(max)d MiB is less than the memory per VM of lab %(lab)s (%(mem)d MiB), which its new VMs get."
            " Choose at least %(mem)d MiB."
        ) % {"max": max_mb, "lab": lab.name, "mem": lab.memory_mb}
    return None


def lab_limit_refusal(lab: Lab, max_mb: int) -> str | None:
    """Why `lab` may not get `max_mb` as its maximum memory per guest (None: it may).

    A limit under what the lab's VMs hold (or a queued resize promises them)
    would leave them over it, and the memory form with no size it accepts;
    one under the lab's memory per VM would refuse its next provisioning.
    """
    over = _over(Guest.objects.filter(lab_id=lab.pk), max_mb) if lab.pk is not None else None
    if over is not None:
        count, vm, mem = over
        return ngettext(
            "%(count)d VM of this lab has more memory than %(max)d MiB (%(vm)s has %(mem)d MiB):"
            " lower its memory first, or choose at least %(mem)d MiB.",
            "%(count)d VMs of this lab have more memory than %(max)d MiB (the largest, %(vm)s, has"
            " %(mem)d MiB): lower their memory first, or choose at least %(mem)d MiB.",
            count,
        ) % {"count": count, "max": max_mb, "vm": vm, "mem": mem}
    if lab.memory_mb and lab.memory_mb > max_mb:
        return _(
            "%(max)d MiB is less than the lab's memory per VM (%(mem)d MiB), which its new VMs get."
            " Choose at least %(mem)d MiB."
        ) % {"max": max_mb, "mem": lab.memory_mb}
    return None


def quota_limit_refusal(user, max_mb: int) -> str | None:
    """Why `user`'s quota may not get `max_mb` as its maximum total memory (None: it may).

    Under what their VMs hold over all labs (as usage_for counts it) every one
    of their VMs would be over its limit, and no resize up would be allowed.
    """
    if user is None or user.pk is None:
        return None
    guests = Guest.objects.filter(held_by([user.pk])).annotate(promised=promised_mb())
    held = guests.aggregate(count=Count("pk"), total=Sum("promised"))
    total = held["total"] or 0
    if total <= max_mb:
        return None
    vm, mem = guests.order_by("-promised", "domain_name").values_list("domain_name", "promised")[0]
    count = held["count"]
    return ngettext(
        "%(user)s's %(count)d VM holds %(total)d MiB, more than %(max)d MiB (%(vm)s has %(mem)d MiB):"
        " make it smaller or delete it first, or choose at least %(total)d MiB.",
        "%(user)s's %(count)d VMs hold %(total)d MiB in all, more than %(max)d MiB (the largest, %(vm)s, has"
        " %(mem)d MiB): make them smaller or delete some first, or choose at least %(total)d MiB.",
        count,
    ) % {"user": user.username, "count": count, "total": total, "max": max_mb, "vm": vm, "mem": mem}


def quota_guests_refusal(user, max_guests: int) -> str | None:
    """Why `user`'s quota may not get `max_guests` as its number of VMs (None: it may).

    A number under the VMs they hold (counted as a batch's quota check counts
    them, usage_for) would leave the student over their quota at once, with
    nothing to say which VMs should go.
    """
    if user is None or user.pk is None:
        return None
    count = usage_for([user]).get(user.pk, Usage()).guests
    if count <= max_guests:
        return None
    return ngettext(
        "%(user)s holds %(count)d VM: lower it to %(count)d at the least, or delete it first.",
        "%(user)s holds %(count)d VMs: lower it to %(count)d at the least, or delete VMs first.",
        count,
    ) % {"user": user.username, "count": count}
