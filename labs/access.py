"""Who may see or act on what. Strangers get 404, never 403.

One helper per object kind, in the Healthchecks `_get_x_for_user()` style:
views call these and never filter objects themselves.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404

from labs.models import Guest, Host, Lab

INSTRUCTORS_GROUP = "instructors"

AnyUser = AbstractBaseUser | AnonymousUser
# What a guest's pages show besides the guest: its lab (with the template the
# memory limits read and the pool the gateway comes from), host and student
# (with the student's quota row, if any, which the memory limits read too).
GUEST_RELATED = ("lab__template", "lab__pool", "host", "student__quota")


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
    if is_instructor(user):
        return Lab.objects.filter(instructors=user)
    return Lab.objects.none()


def guests_for(user: AnyUser) -> QuerySet[Guest]:
    """Guests a user may see: their own, their labs' guests, or all (admins)."""
    if not (user.is_authenticated and user.is_active):
        return Guest.objects.none()
    if is_admin(user):
        return Guest.objects.all()
    if is_instructor(user):
        return Guest.objects.filter(lab__instructors=user) | Guest.objects.filter(student=user)
    return Guest.objects.filter(student=user)


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
