"""An instructor gives a student of their lab a new panel password, shown once."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from labs import services
from labs.models import AuditEvent, Lab
from tests.conftest import PASSWORD, make_guest
from tests.ui.conftest import messages_of


def _confirm_url(lab, user) -> str:
    return reverse("student_password_confirm", args=[lab.pk, user.pk])


def _reset_url(lab, user) -> str:
    return reverse("student_password_reset", args=[lab.pk, user.pk])


def _can_log_in(username: str, password: str) -> bool:
    return Client().login(username=username, password=password)


def _hash(user: User) -> str:
    return User.objects.get(pk=user.pk).password


def test_confirmation_page_says_what_happens(client, ivy, lab, alice, alice_guest):
    client.force_login(ivy)
    r = client.get(_confirm_url(lab, alice))
    assert r.status_code == 200
    body = r.content.decode()
    assert "Reset the panel password of alice?" in body
    assert "Their current password stops working and every browser signed in to their account is signed out." in body
    assert "Alice has the VM net101-alice in this lab." in body
    assert f'action="{_reset_url(lab, alice)}"' in body and "csrfmiddlewaretoken" in body
    assert 'type="checkbox" name="confirm"' in body
    assert "I understand that the student&#x27;s current password will stop working." in body
    assert f'<a class="btn btn-link" href="{reverse("lab_detail", args=[lab.pk])}">Cancel</a>' in body
    assert "disabled" not in body.split('action="')[1]


def test_links_on_lab_page_and_guest_page(client, ivy, lab, alice, alice_guest):
    client.force_login(ivy)
    assert f'href="{_confirm_url(lab, alice)}"' in client.get(reverse("lab_detail", args=[lab.pk])).content.decode()
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert f'href="{_confirm_url(lab, alice)}">Reset panel password…</a>' in body


def test_no_link_for_the_student_on_their_own_page(client, alice, lab, alice_guest):
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert "Reset panel password" not in body and _confirm_url(lab, alice) not in body


def _new_url(lab, user) -> str:
    return reverse("student_password_new", args=[lab.pk, user.pk])


def test_reset_shows_the_new_password_once(client, ivy, lab, alice, alice_guest):
    client.force_login(ivy)
    r = client.post(_reset_url(lab, alice), {"confirm": "on"})
    # Post, redirect, get: a reload of the page that shows it must not reset it again.
    assert r.status_code == 302 and r["Location"] == _new_url(lab, alice)
    hash_after_reset = _hash(alice)
    r = client.get(_new_url(lab, alice))
    assert r.status_code == 200
    password = r.context["password"]
    assert len(password) == 14
    body = r.content.decode()
    assert "New panel password for alice" in body
    assert f'<code class="user-select-all" id="new-password">{password}</code>' in body
    assert "Hand it to the student privately" in body
    assert "The panel password of alice was reset." in body
    assert "no-store" in r["Cache-Control"]
    # The new password, and only it, logs in.
    assert _can_log_in("alice", password)
    assert not _can_log_in("alice", PASSWORD)
    # Not kept in plain text: not in the URL, a cookie or the audit, and gone from the session once shown.
    assert password not in r.wsgi_request.get_full_path()
    assert all(password not in morsel.value for morsel in r.cookies.values())
    assert password not in str(dict(client.session))
    assert password not in _hash(alice)
    event = AuditEvent.objects.get(action="reset_password")
    assert (event.actor, event.lab, event.target, event.result) == (ivy, lab, "alice", AuditEvent.Result.SUCCEEDED)
    assert password not in event.message
    # A reload shows it no more and resets nothing; nor does the confirmation page show it.
    r = client.get(_new_url(lab, alice), follow=True)
    assert password not in r.content.decode()
    assert "There is no new password to show: it is shown only once." in messages_of(r)
    assert _hash(alice) == hash_after_reset and AuditEvent.objects.filter(action="reset_password").count() == 1
    assert password not in client.get(_confirm_url(lab, alice)).content.decode()


def test_a_password_waiting_to_be_shown_is_shown_for_its_own_student_only(client, ivy, lab, alice, alice_guest, bob):
    make_guest(lab, bob, alice_guest.host, 2)
    client.force_login(ivy)
    client.post(_reset_url(lab, alice), {"confirm": "on"})
    r = client.get(_new_url(lab, bob))
    assert r.status_code == 302 and r["Location"] == reverse("lab_detail", args=[lab.pk])
    assert "password" not in (r.context or {})
    assert client.get(_new_url(lab, alice)).status_code == 200


def test_students_other_sessions_are_signed_out(client, ivy, lab, alice, alice_guest):
    student = Client()
    assert student.login(username="alice", password=PASSWORD)
    assert student.get(reverse("my_vms")).status_code == 200
    client.force_login(ivy)
    client.post(_reset_url(lab, alice), {"confirm": "on"})
    r = student.get(reverse("my_vms"))
    assert r.status_code == 302 and r["Location"].startswith(reverse("login"))
    # The instructor stays signed in.
    assert client.get(reverse("lab_detail", args=[lab.pk])).status_code == 200


def test_admin_may_reset(client, admin_user, lab, alice, alice_guest):
    client.force_login(admin_user)
    r = client.post(_reset_url(lab, alice), {"confirm": "on"}, follow=True)
    assert r.status_code == 200 and _can_log_in("alice", r.context["password"])
    assert AuditEvent.objects.get(action="reset_password").actor == admin_user


def test_confirmation_is_required(client, ivy, lab, alice, alice_guest):
    before = _hash(alice)
    client.force_login(ivy)
    r = client.post(_reset_url(lab, alice))
    assert r.status_code == 302 and r["Location"] == _confirm_url(lab, alice)
    assert messages_of(r) == ["Nothing was done: tick the confirmation box first."]
    assert _hash(alice) == before and not AuditEvent.objects.exists()


def test_get_on_the_action_is_refused(client, ivy, lab, alice, alice_guest):
    before = _hash(alice)
    client.force_login(ivy)
    assert client.get(_reset_url(lab, alice), {"confirm": "on"}).status_code == 405
    assert _hash(alice) == before


def test_post_without_csrf_token_is_refused(ivy, lab, alice, alice_guest):
    before = _hash(alice)
    client = Client(enforce_csrf_checks=True)
    client.force_login(ivy)
    assert client.post(_reset_url(lab, alice), {"confirm": "on"}).status_code == 403
    assert _hash(alice) == before and not AuditEvent.objects.exists()


@pytest.mark.parametrize("who", ["charlie", "bob", "alice"])
def test_strangers_get_404(client, request, who, lab, alice, alice_guest, bob_guest):
    # Another instructor, another student of the lab, and the student herself.
    before = _hash(alice)
    client.force_login(request.getfixturevalue(who))
    assert client.get(_confirm_url(lab, alice)).status_code == 404
    assert client.post(_reset_url(lab, alice), {"confirm": "on"}).status_code == 404
    assert _hash(alice) == before and not AuditEvent.objects.exists()


def test_student_without_a_vm_in_the_lab_is_404(client, ivy, lab, alice, bob, alice_guest, template, pool, host):
    other = Lab.objects.create(name="Other", slug="other", template=template, pool=pool, memory_mb=256)
    other.instructors.add(ivy)
    make_guest(other, bob, host, 5)
    before = _hash(bob)
    client.force_login(ivy)
    # bob has a VM in ivy's other lab, not in this one.
    assert client.get(_confirm_url(lab, bob)).status_code == 404
    assert client.post(_reset_url(lab, bob), {"confirm": "on"}).status_code == 404
    assert client.get(_confirm_url(lab, User(pk=99999))).status_code == 404
    assert _hash(bob) == before


@pytest.fixture
def instructor_in_lab(lab, charlie, host):
    make_guest(lab, charlie, host, 3)
    return charlie


@pytest.fixture
def admin_in_lab(lab, admin_user, host):
    make_guest(lab, admin_user, host, 4)
    return admin_user


def _assert_refused(client, lab, target, message):
    before = _hash(target)
    r = client.post(_reset_url(lab, target), {"confirm": "on"})
    assert r.status_code == 302 and r["Location"] == reverse("lab_detail", args=[lab.pk])
    assert messages_of(r) == [message]
    assert _hash(target) == before and _can_log_in(target.username, PASSWORD)
    event = AuditEvent.objects.get(action="reset_password")
    assert (event.lab, event.target, event.result, event.message) == (
        lab,
        target.username,
        AuditEvent.Result.REFUSED,
        message,
    )


def test_another_instructors_account_is_refused(client, ivy, lab, instructor_in_lab):
    client.force_login(ivy)
    body = client.get(_confirm_url(lab, instructor_in_lab)).content.decode()
    refusal = (
        "charlie is an instructor or administrator account: its password can be reset only by an administrator,"
        " in the admin."
    )
    assert refusal in body
    assert 'class="btn btn-danger" disabled' in body
    _assert_refused(client, lab, instructor_in_lab, refusal)


def test_an_admin_account_is_refused(client, ivy, lab, admin_in_lab):
    client.force_login(ivy)
    _assert_refused(
        client,
        lab,
        admin_in_lab,
        "root is an instructor or administrator account: its password can be reset only by an administrator,"
        " in the admin.",
    )


def test_even_an_admin_cannot_reset_an_instructor_here(client, admin_user, lab, instructor_in_lab):
    # Admins change such accounts in the admin, where it is plain what they do.
    client.force_login(admin_user)
    _assert_refused(
        client,
        lab,
        instructor_in_lab,
        "charlie is an instructor or administrator account: its password can be reset only by an administrator,"
        " in the admin.",
    )


def test_own_account_in_own_lab_is_refused(client, ivy, lab, host):
    make_guest(lab, ivy, host, 6)
    client.force_login(ivy)
    _assert_refused(
        client,
        lab,
        ivy,
        "ivy is an instructor or administrator account: its password can be reset only by an administrator,"
        " in the admin.",
    )


def test_disabled_instructor_account_is_refused(ivy, lab, instructor_in_lab):
    User.objects.filter(pk=instructor_in_lab.pk).update(is_active=False)
    instructor_in_lab.refresh_from_db()
    with pytest.raises(services.InvalidAction, match="charlie is an instructor or administrator account"):
        services.reset_student_password(ivy, lab, instructor_in_lab)


def test_service_checks_the_actor_and_the_lab(ivy, charlie, bob, lab, alice, alice_guest):
    before = _hash(alice)
    with pytest.raises(services.InvalidAction, match="You may not manage this lab."):
        services.reset_student_password(charlie, lab, alice)
    with pytest.raises(services.InvalidAction, match="bob has no VM in the lab Networks 101."):
        services.reset_student_password(ivy, lab, bob)
    assert _hash(alice) == before and not AuditEvent.objects.exists()


def test_pages_in_portuguese(client, ivy, lab, alice, alice_guest):
    client.force_login(ivy)
    client.post(reverse("set_language"), {"language": "pt-br"})
    body = client.get(_confirm_url(lab, alice)).content.decode()
    assert "Redefinir a senha do painel de alice?" in body
    body = client.post(_reset_url(lab, alice), {"confirm": "on"}, follow=True).content.decode()
    assert "Nova senha do painel de alice" in body
    assert "A senha do painel de alice foi redefinida." in body


def test_refusal_in_portuguese(client, ivy, lab, instructor_in_lab):
    client.force_login(ivy)
    client.post(reverse("set_language"), {"language": "pt-br"})
    r = client.post(_reset_url(lab, instructor_in_lab), {"confirm": "on"}, follow=True)
    assert "charlie é uma conta de professor ou de administrador" in r.content.decode()
