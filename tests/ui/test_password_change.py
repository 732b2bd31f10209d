"""Changing one's own panel password: Django's view, the house template, the validators."""

from __future__ import annotations

from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD
from tests.ui.conftest import messages_of

NEW_PASSWORD = "violet tractor 42 umbrella"


def _change(client, old: str = PASSWORD, new1: str = NEW_PASSWORD, new2: str | None = None):
    data = {"old_password": old, "new_password1": new1, "new_password2": new1 if new2 is None else new2}
    return client.post(reverse("password_change"), data)


def _can_log_in(username: str, password: str) -> bool:
    return Client().login(username=username, password=password)


def test_anonymous_is_sent_to_login(client, db):
    r = client.get(reverse("password_change"))
    assert r.status_code == 302
    assert r["Location"] == f"{reverse('login')}?next={reverse('password_change')}"


def test_form_has_labels_explanation_and_cancel(client, alice):
    client.force_login(alice)
    body = client.get(reverse("password_change")).content.decode()
    for field in ("old_password", "new_password1", "new_password2"):
        assert f'for="id_{field}"' in body and f'id="id_{field}"' in body, field
    assert "does not change any password inside your VMs" in body
    assert f'<a class="btn btn-link" href="{reverse("home")}">Cancel</a>' in body
    # The validators' rules are listed under the new password.
    assert "at least 8 characters" in body


def test_student_changes_password(client, alice):
    assert client.login(username="alice", password=PASSWORD)
    r = _change(client)
    assert r.status_code == 302 and r["Location"] == reverse("home")
    assert messages_of(r) == ["Your password was changed."]
    # This session survives the change (update_session_auth_hash)...
    assert client.get(reverse("my_vms")).status_code == 200
    assert client.session[SESSION_KEY] == str(alice.pk)
    # ...and only the new password logs in from now on.
    assert _can_log_in("alice", NEW_PASSWORD)
    assert not _can_log_in("alice", PASSWORD)


def test_success_message_shown_on_the_page(client, alice):
    client.force_login(alice)
    data = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    body = client.post(reverse("password_change"), data, follow=True).content.decode()
    assert "Your password was changed." in body


def test_other_sessions_are_signed_out(client, alice):
    other = Client()
    other.force_login(alice)
    client.force_login(alice)
    _change(client)
    assert other.get(reverse("my_vms")).status_code == 302


def test_old_password_is_required(client, alice):
    client.force_login(alice)
    r = _change(client, old="")
    assert r.status_code == 200
    assert r.context["form"].errors["old_password"] == ["This field is required."]
    assert _can_log_in("alice", PASSWORD)


def test_wrong_old_password_changes_nothing(client, alice):
    client.force_login(alice)
    r = _change(client, old="not my password")
    assert r.status_code == 200
    assert "Your old password was entered incorrectly. Please enter it again." in r.content.decode()
    assert messages_of(r) == []
    assert _can_log_in("alice", PASSWORD) and not _can_log_in("alice", NEW_PASSWORD)


def test_mismatched_new_passwords_change_nothing(client, alice):
    client.force_login(alice)
    r = _change(client, new2=NEW_PASSWORD + "x")
    assert r.status_code == 200
    assert "The two password fields didn’t match." in r.content.decode()
    assert _can_log_in("alice", PASSWORD) and not _can_log_in("alice", NEW_PASSWORD)


def test_weak_passwords_are_refused(client, alice):
    client.force_login(alice)
    for weak, error in (
        ("password", "This password is too common."),
        ("x7#q", "This password is too short. It must contain at least 8 characters."),
        ("48151623420815", "This password is entirely numeric."),
        ("alice@example.edu", "The password is too similar to the email address."),
    ):
        r = _change(client, new1=weak)
        assert r.status_code == 200, weak
        assert error in r.context["form"].errors["new_password2"], weak
        assert _can_log_in("alice", PASSWORD) and not _can_log_in("alice", weak)


def test_form_in_portuguese(client, alice):
    client.force_login(alice)
    body = client.get(reverse("password_change"), HTTP_ACCEPT_LANGUAGE="pt-BR").content.decode()
    for text in ("Altere a sua senha", "Senha antiga", "Nova senha", "Alterar senha", "Cancelar"):
        assert text in body, text
    assert "Change your password" not in body and "Old password" not in body


def test_success_message_in_portuguese(client, alice):
    client.force_login(alice)
    client.post(reverse("set_language"), {"language": "pt-br"})
    data = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    body = client.post(reverse("password_change"), data, follow=True).content.decode()
    assert "Sua senha foi alterada." in body


def test_post_without_csrf_token_is_refused(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    r = _change(client)
    assert r.status_code == 403
    assert _can_log_in("alice", PASSWORD) and not _can_log_in("alice", NEW_PASSWORD)


def test_nav_link_on_guest_page(client, alice, alice_guest):
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert f'href="{reverse("password_change")}">Change password</a>' in body


def test_no_nav_link_for_anonymous(client, db):
    assert reverse("password_change") not in client.get(reverse("login")).content.decode()


def test_admin_password_page_still_works(client, admin_user):
    # The admin renders registration/password_change_form.html too; the form
    # has no action, so it posts back to the admin's own URL.
    client.force_login(admin_user)
    r = client.get(reverse("admin:password_change"))
    assert r.status_code == 200
    assert '<form method="post"><input type="hidden" name="csrfmiddlewaretoken"' in r.content.decode()
