"""Who may see or act on what: every such rule of the panel lives here. Strangers get 404, never 403.

One helper per object kind, in the Healthchecks `_get_x_for_user()` style:
views call these and never filter objects themselves; the service layer
asks `may_act_on_guest` and `may_manage_lab` before it queues anything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404

from labs.models import ApiToken, AuditEvent, Guest, Host, Lab, LabTemplate, SavePoint, SshKey, Task

INSTRUCTORS_GROUP = "instructors"

AnyUser = User | AnonymousUser
# What a guest's pages show besides the guest: its lab (with the template the
# memory limits read and the pool the gateway comes from), host and student
# (with the student's quota row, if any, which the memory limits read too), and the lab's class hours.
GUEST_RELATED = ("lab__template", "lab__pool", "lab__class_hours", "host", "student__quota")


class Role(enum.IntEnum):
    """How much a user may do to a guest or lab; a higher role may do what a lower one may."""

    STUDENT = 1  # the VM's owner
    INSTRUCTOR = 2  # one of the lab's instructors
    ADMIN = 3  # staff


def is_admin(user: AnyUser) -> bool:
    return bool(user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser))


def is_instructor(user: AnyUser) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    return is_admin(user) or user.groups.filter(name=INSTRUCTORS_GROUP).exists()


def labs_for(user: AnyUser) -> QuerySet[Lab]:
    """Labs a user may manage: their own (instructors) or all (admins)."""
    if is_admin(user):
        return Lab.objects.all()
    if is_instructor(user) and isinstance(user, User):
        return Lab.objects.filter(instructors=user)
    return Lab.objects.none()


def guests_for(user: AnyUser) -> QuerySet[Guest]:
    """Guests a user may see: their own, their labs' guests, or all (admins)."""
    if not (user.is_authenticated and user.is_active):
        return Guest.objects.none()
    if is_admin(user):
        return Guest.objects.all()
    if is_instructor(user):
        return Guest.objects.filter(lab__instructors__pk=user.pk) | Guest.objects.filter(student__pk=user.pk)
    return Guest.objects.filter(student__pk=user.pk)


def get_guest_for_user(request: HttpRequest, pk: int, related: tuple[str, ...] = GUEST_RELATED) -> Guest:
    """The guest if the user may see and act on it; else 404.

    Students act on their own guests; instructors on their labs' guests;
    admins on all; inactive accounts get nothing. There is no read-only
    role. `related` is what comes in the same query (a poll that usually
    answers 204 needs less).
    """
    user = request.user
    if not (user.is_authenticated and user.is_active):
        raise Http404
    guests = Guest.objects.select_related(*related)
    # The owner is the common case (every student's page, and its poll every
    # few seconds): a student sees their own guest whatever their roles, so one
    # indexed query settles it without the role lookup guests_for() needs.
    try:
        return guests.get(pk=pk, student=user)
    except Guest.DoesNotExist:
        return get_object_or_404(guests_for(user).distinct().select_related(*related), pk=pk)


def get_lab_for_user(request: HttpRequest, pk: int) -> Lab:
    """The lab if the user is one of its instructors or an admin; else 404."""
    return get_object_or_404(labs_for(request.user).distinct(), pk=pk)


def get_host_for_user(request: HttpRequest, pk: int, write: bool = False) -> Host:
    """Instructors may look at hosts; only admins change them."""
    user = request.user
    allowed = is_admin(user) if write else is_instructor(user)
    if not allowed:
        raise Http404
    return get_object_or_404(Host, pk=pk)


def get_ssh_key_for_user(request: HttpRequest, pk: int) -> SshKey:
    """One of the user's own SSH keys; anyone else's, even for an admin, is a 404 (the admin shows them)."""
    user = request.user
    if not (user.is_authenticated and user.is_active):
        raise Http404
    return get_object_or_404(SshKey, pk=pk, user=user)


def get_api_token_for_user(request: HttpRequest, pk: int) -> ApiToken:
    """One of the user's own API tokens; anyone else's, even for an admin, is a 404."""
    user = request.user
    if not (user.is_authenticated and user.is_active):
        raise Http404
    return get_object_or_404(ApiToken, pk=pk, user=user)


def tasks_for(user: AnyUser) -> QuerySet[Task]:
    """Tasks a user may see: those of the guests they may see and of the labs they manage (admins: all)."""
    if not (user.is_authenticated and user.is_active):
        return Task.objects.none()
    if is_admin(user):
        return Task.objects.all()
    visible = Q(guest__student__pk=user.pk)
    if is_instructor(user):
        visible |= Q(lab__instructors__pk=user.pk)
    return Task.objects.filter(visible)


def get_task_for_user(request: HttpRequest, pk: int) -> Task:
    """The task if the user may see its guest or manage its lab; else 404, as for a stranger."""
    return get_object_or_404(tasks_for(request.user).distinct(), pk=pk)


def audit_for_lab(user: AnyUser, lab: Lab) -> QuerySet[AuditEvent]:
    """The lab's audit trail, refusals included: its own rows and its VMs', for its instructors and admins only."""
    if not teaches(user, lab.pk):
        return AuditEvent.objects.none()
    return AuditEvent.objects.filter(Q(lab=lab) | Q(guest__lab=lab))


def may_build_templates(user: AnyUser) -> bool:
    """Template builds run debootstrap and LVM on a dom0: admins only."""
    return is_admin(user)


def get_template_for_user(request: HttpRequest, pk: int) -> LabTemplate:
    """A template's page and its builds are the admins'; anyone else gets 404."""
    if not may_build_templates(request.user):
        raise Http404
    return get_object_or_404(LabTemplate, pk=pk)


def template_builds_for(user: AnyUser) -> QuerySet[Task]:
    """The template builds (the tree and the golden LV) the user may follow: all for admins, none otherwise."""
    from labs.services.templates import KINDS  # the services import this module

    return Task.objects.filter(kind__in=KINDS) if may_build_templates(user) else Task.objects.none()


def get_template_build_for_user(request: HttpRequest, pk: int) -> Task:
    return get_object_or_404(template_builds_for(request.user).select_related("host", "actor"), pk=pk)


def _roles(user: AnyUser) -> dict[str, bool]:
    return {"instructor": is_instructor(user), "admin": is_admin(user)}


def roles_for(request: HttpRequest) -> dict[str, bool]:
    """What the user may reach (instructor pages, admin), worked out once per request."""
    roles: dict[str, bool] | None = getattr(request, "_xenpanel_roles", None)
    if roles is None:
        roles = _roles(request.user)
        setattr(request, "_xenpanel_roles", roles)  # noqa: B010 (HttpRequest declares no such attribute)
    return roles


def require_instructor(request: HttpRequest) -> None:
    """Instructor pages: 404 for everyone else."""
    if not roles_for(request)["instructor"]:
        raise Http404


def teaches(user: AnyUser, lab_id: int, roles: dict[str, bool] | None = None) -> bool:
    """One of the lab's instructors, or an admin. `roles`: the request's, when a view already has them."""
    if not (roles or _roles(user))["instructor"]:
        return False
    return labs_for(user).filter(pk=lab_id).exists()


def guest_role(user: AnyUser, guest: Guest, roles: dict[str, bool] | None = None) -> Role | None:
    """The highest role the user holds on the guest; None for a stranger."""
    if not (user.is_authenticated and user.is_active):
        return None
    roles = roles or _roles(user)
    if roles["admin"]:
        return Role.ADMIN
    if teaches(user, guest.lab_id, roles):
        return Role.INSTRUCTOR
    if guest.student_id == user.pk:
        return Role.STUDENT
    return None


def may_act_on_guest(user: AnyUser, guest: Guest, needed: Role = Role.STUDENT) -> bool:
    """Whether the user holds at least the `needed` role on the guest."""
    # The owner is the common case (every student's action) and costs no query.
    if needed <= Role.STUDENT and user.is_authenticated and user.is_active and guest.student_id == user.pk:
        return True
    role = guest_role(user, guest)
    return role is not None and role >= needed


def may_manage_lab(user: AnyUser, lab: Lab) -> bool:
    return teaches(user, lab.pk)


def may_delete_save_point(user: AnyUser, point: SavePoint, known_teacher: bool = False) -> bool:
    """Whoever may act on the guest deletes its save points, but one taken for the whole lab is for
    the lab's instructors (and admins) to delete: the class may return to it together.

    `known_teacher`: the point's lab came from get_lab_for_user(), so the user teaches it (no query again).
    """
    return known_teacher or may_act_on_guest(user, point.guest, Role.INSTRUCTOR if point.lab_wide else Role.STUDENT)


def get_save_point_for_user(request: HttpRequest, guest_pk: int, pk: int, deleting: bool = False) -> SavePoint:
    """One save point of a guest the user may see (get_guest_for_user); else 404, as for a stranger.

    `deleting`: also 404 unless the user may delete it (may_delete_save_point), as the page and the API do.
    """
    guest = get_guest_for_user(request, guest_pk)
    point = get_object_or_404(SavePoint, pk=pk, guest=guest)
    point.guest = guest
    if deleting and not may_delete_save_point(request.user, point):
        raise Http404
    return point


def may_change_lab_expiry(user: AnyUser, lab: Lab, known_teacher: bool = False) -> bool:
    """The lab's instructors and admins change or extend its expiry, while the lab is still active.

    `known_teacher`: the lab came from get_lab_for_user(), so the user teaches it (no query again).
    """
    return lab.status == Lab.Status.ACTIVE and (known_teacher or teaches(user, lab.pk))


@dataclass(frozen=True)
class ConsoleRights:
    writable: bool  # types into the console
    can_take_over: bool  # watches, and may switch to typing


def console_rights(user: AnyUser, guest: Guest, roles: dict[str, bool] | None = None) -> ConsoleRights | None:
    """Who may use a guest's console, and how: the owner types; the lab's instructors and admins watch and
    may take over; anyone else gets nothing (None)."""
    role = guest_role(user, guest, roles)
    if role is None:
        return None
    owner = guest.student_id == user.pk
    return ConsoleRights(writable=owner, can_take_over=not owner and role >= Role.INSTRUCTOR)


# Staff, superuser and instructor accounts, enabled or not: a roster does not
# enrol them and an instructor does not reset their passwords. The group is
# read directly, not through is_instructor(), so a disabled instructor
# account counts too.
PRIVILEGED_ACCOUNTS = Q(is_staff=True) | Q(is_superuser=True) | Q(groups__name=INSTRUCTORS_GROUP)


def is_privileged_account(user: User) -> bool:
    """An instructor or administrator account (see PRIVILEGED_ACCOUNTS)."""
    return user.is_staff or user.is_superuser or user.groups.filter(name=INSTRUCTORS_GROUP).exists()


def teaches_every_lab_of(actor: AnyUser, student: User) -> bool:
    """Whether `actor` is an admin or teaches every lab holding a VM of `student` (torn-down labs hold none):
    only then may a new password for the student be handed to `actor`."""
    if is_admin(actor):
        return True
    if not isinstance(actor, User):
        return False
    others = Lab.objects.filter(guests__student=student).exclude(status=Lab.Status.TORN_DOWN)
    return not others.exclude(instructors__pk=actor.pk).exists()


# ------------------------------------------------------------------ class hours
def may_edit_class_hours(user: AnyUser, lab: Lab) -> bool:
    """A lab's class hours are its instructors' (and admins') to set."""
    return may_manage_lab(user, lab)


def may_wake_outside_class_hours(user: AnyUser, guest: Guest, students_may_wake: bool) -> bool:
    """Who may start or restore a VM while its lab's class hours say it sleeps: the lab's instructors and
    admins always; its student only when the lab lets students wake their VMs."""
    role = guest_role(user, guest)
    if role is None:
        return False
    return role >= Role.INSTRUCTOR or students_may_wake
