"""Role helpers: owners see their objects; strangers get 404, not 403."""

from __future__ import annotations

import pytest
from django.http import Http404
from django.test import RequestFactory

from labs.access import get_guest_for_user, get_host_for_user, get_lab_for_user


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
