"""Role helpers: owners see their objects; strangers get 404, not 403."""

from __future__ import annotations

import pytest
from django.http import Http404
from django.test import RequestFactory

from labs.access import (
    get_guest_for_user,
    get_host_for_user,
    get_lab_for_user,
    guests_for,
    is_admin,
    is_instructor,
    labs_for,
)
from tests.conftest import make_guest


def _req(user):
    r = RequestFactory().get("/")
    r.user = user
    return r


def test_student_gets_own_guest(alice, alice_guest):
    assert get_guest_for_user(_req(alice), alice_guest.pk) == alice_guest


def test_other_student_gets_404(bob, alice_guest):
    with pytest.raises(Http404):
        get_guest_for_user(_req(bob), alice_guest.pk)


def test_lab_instructor_gets_guest_and_lab(ivy, alice_guest, lab):
    assert get_guest_for_user(_req(ivy), alice_guest.pk) == alice_guest
    assert get_lab_for_user(_req(ivy), lab.pk) == lab


def test_other_instructor_gets_404(charlie, alice_guest, lab):
    with pytest.raises(Http404):
        get_guest_for_user(_req(charlie), alice_guest.pk)
    with pytest.raises(Http404):
        get_lab_for_user(_req(charlie), lab.pk)


def test_student_cannot_see_lab_or_host(alice, lab, host):
    with pytest.raises(Http404):
        get_lab_for_user(_req(alice), lab.pk)
    with pytest.raises(Http404):
        get_host_for_user(_req(alice), host.pk)


def test_admin_sees_everything(admin_user, alice_guest, lab, host):
    assert get_guest_for_user(_req(admin_user), alice_guest.pk) == alice_guest
    assert get_lab_for_user(_req(admin_user), lab.pk) == lab
    assert get_host_for_user(_req(admin_user), host.pk, write=True) == host


def test_instructor_reads_but_cannot_change_host(charlie, host):
    assert get_host_for_user(_req(charlie), host.pk) == host
    with pytest.raises(Http404):
        get_host_for_user(_req(charlie), host.pk, write=True)


def test_anonymous_gets_404(alice_guest):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(Http404):
        get_guest_for_user(_req(AnonymousUser()), alice_guest.pk)


def test_lists_show_each_role_its_own(alice, bob, ivy, charlie, admin_user, lab, alice_guest, bob_guest):
    assert list(guests_for(alice)) == [alice_guest]
    assert set(guests_for(ivy)) == {alice_guest, bob_guest}
    assert list(guests_for(charlie)) == []
    assert set(guests_for(admin_user)) == {alice_guest, bob_guest}
    assert list(labs_for(ivy)) == [lab]
    assert list(labs_for(charlie)) == []
    assert list(labs_for(alice)) == []
    assert list(labs_for(admin_user)) == [lab]


def test_a_co_instructor_gets_the_lab_and_its_guests(charlie, lab, alice_guest):
    lab.instructors.add(charlie)
    assert get_lab_for_user(_req(charlie), lab.pk) == lab
    assert get_guest_for_user(_req(charlie), alice_guest.pk) == alice_guest


def test_instructor_who_is_also_a_student_sees_each_guest_once(ivy, lab, host, alice_guest):
    own = make_guest(lab, ivy, host, 9)
    assert sorted(g.pk for g in guests_for(ivy)) == sorted([alice_guest.pk, own.pk])
    assert get_guest_for_user(_req(ivy), own.pk) == own


def test_deactivated_accounts_get_nothing(alice, ivy, admin_user, alice_guest, lab, host):
    for user in (alice, ivy, admin_user):
        user.is_active = False
        user.save()
    with pytest.raises(Http404):
        get_guest_for_user(_req(alice), alice_guest.pk)
    with pytest.raises(Http404):
        get_lab_for_user(_req(ivy), lab.pk)
    with pytest.raises(Http404):
        get_host_for_user(_req(admin_user), host.pk, write=True)
    assert not is_instructor(ivy) and not is_admin(admin_user)


def test_roles_come_from_staff_flag_and_instructors_group(alice, ivy, admin_user, instructors_group):
    assert (is_admin(alice), is_instructor(alice)) == (False, False)
    assert (is_admin(ivy), is_instructor(ivy)) == (False, True)
    assert (is_admin(admin_user), is_instructor(admin_user)) == (True, True)
    alice.groups.add(instructors_group)
    assert is_instructor(alice)


def test_missing_objects_are_404_for_everyone(admin_user):
    for getter in (get_guest_for_user, get_lab_for_user, get_host_for_user):
        with pytest.raises(Http404):
            getter(_req(admin_user), 999999)
