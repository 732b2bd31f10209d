"""Signing in with the campus directory, against a real slapd the tests start (tests/ui/slapd.py, campus.ldif).

Good and bad passwords, the instructor and admin groups (given and taken
away), a local account the directory cannot take over, StartTLS with a CA
made here (and a CA that does not match), slapd stopped (the login page says
so, local accounts still sign in), and rosters naming campus usernames.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import ldap
import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from labs.access import is_admin, is_instructor
from labs.models import AuditEvent, Lab
from labs.services import api_tokens
from tests.conftest import PASSWORD
from tests.ui import slapd
from tests.ui.batch_helpers import create_via_form
from tests.ui.conftest import messages_of
from xenpanel.ldap_settings import auth_ldap_settings

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not slapd.available(), reason="slapd is not installed (scripts/setup.sh --dev)"),
]

DOWN = "The campus directory is not answering"
WRONG = "Please enter a correct username and password."


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    server = slapd.make_slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_directory(tmp_path_factory):
    server = slapd.make_slapd(tmp_path_factory.mktemp("slapd-tls"), tls=True)
    server.start()
    yield server
    server.stop()


def use_directory(settings, server, **overrides) -> None:
    """The settings xenpanel.settings makes from the XENPANEL_LDAP_* variables, for `server`."""
    values = {
        "uri": server.uri,
        "starttls": False,
        "ca_file": "",
        "bind_dn": slapd.BIND_DN,
        "bind_password": slapd.BIND_PASSWORD,
        "user_base": f"ou=people,{slapd.SUFFIX}",
        "user_filter": "(uid=%(user)s)",
        "group_type": "groupOfNames",
        "instructor_group": slapd.INSTRUCTORS,
        "admin_group": slapd.ADMINS,
        "timeout": 3,
        **overrides,
    }
    for name, value in auth_ldap_settings(**values).items():
        setattr(settings, name, value)
    settings.XENPANEL_LDAP_URI = values["uri"]
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend", "labs.campus.CampusBackend"]


@pytest.fixture
def campus(settings, directory):
    use_directory(settings, directory)
    return directory


def login(client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_a_good_campus_password_signs_in_and_fills_the_account_from_the_directory(client, campus):
    assert (
        "Campus accounts: sign in with your campus username and password."
        in client.get(reverse("login")).content.decode()
    )
    r = login(client, "maria", "maria-campus-pass")
    assert r.status_code == 302 and r["Location"] == reverse("home")
    maria = User.objects.get(username="maria")
    assert (maria.first_name, maria.last_name, maria.email) == ("Maria", "Souza", "maria@campus.example.edu")
    assert not maria.has_usable_password()
    assert not is_instructor(maria) and not is_admin(maria)
    assert client.get(reverse("my_vms")).status_code == 200


def test_a_bad_password_is_refused_as_any_wrong_password(client, campus):
    r = login(client, "maria", "not-her-password")
    body = r.content.decode()
    assert r.status_code == 200 and WRONG in body and DOWN not in body
    assert not User.objects.filter(username="maria").exists()
    assert WRONG in login(client, "nobody", "whatever").content.decode()


def test_the_instructor_group_makes_an_instructor_and_leaving_it_unmakes_one(client, campus):
    assert login(client, "prof", "prof-campus-pass").status_code == 302
    prof = User.objects.get(username="prof")
    assert is_instructor(prof) and not is_admin(prof)
    assert client.get(reverse("lab_create")).status_code == 200
    member = f"uid=prof,ou=people,{slapd.SUFFIX}"
    root = ldap.initialize(campus.uri)
    root.simple_bind_s(f"cn=root,{slapd.SUFFIX}", "root-pass")
    root.modify_s(slapd.INSTRUCTORS, [(ldap.MOD_DELETE, "member", [member.encode()])])
    try:
        client.logout()
        assert login(client, "prof", "prof-campus-pass").status_code == 302
        assert not is_instructor(User.objects.get(username="prof"))
        assert client.get(reverse("lab_create")).status_code == 404
    finally:
        root.modify_s(slapd.INSTRUCTORS, [(ldap.MOD_ADD, "member", [member.encode()])])


def test_the_admin_group_makes_an_admin(client, campus):
    assert login(client, "chefe", "chefe-campus-pass").status_code == 302
    chefe = User.objects.get(username="chefe")
    assert chefe.is_staff and chefe.is_superuser and is_admin(chefe)


def test_the_directory_cannot_take_over_a_local_account(client, campus, alice):
    # campus.ldif has a uid=alice with another password: the panel's alice keeps hers, and only hers.
    assert WRONG in login(client, "alice", "alice-campus-pass").content.decode()
    assert login(client, "alice", PASSWORD).status_code == 302
    alice.refresh_from_db()
    assert (alice.first_name, alice.last_name) == ("Alice", "")


def test_starttls_with_the_ca_the_test_made(client, settings, tls_directory):
    use_directory(settings, tls_directory, starttls=True, ca_file=str(tls_directory.ca_file))
    assert login(client, "joao", "joao-campus-pass").status_code == 302
    assert User.objects.get(username="joao").email == "joao@campus.example.edu"


def test_starttls_refuses_a_server_the_ca_did_not_sign(client, settings, tls_directory, tmp_path):
    other_ca = slapd.make_ca_and_cert(tmp_path)[0]
    use_directory(settings, tls_directory, starttls=True, ca_file=str(other_ca))
    body = login(client, "joao", "joao-campus-pass").content.decode()
    assert DOWN in body
    assert not User.objects.filter(username="joao").exists()


def test_slapd_stopped_the_login_page_says_so_and_local_accounts_still_sign_in(client, settings, tmp_path, alice):
    server = slapd.make_slapd(tmp_path / "down")
    server.start()
    use_directory(settings, server)
    assert login(client, "maria", "maria-campus-pass").status_code == 302
    client.logout()
    server.stop()
    r = login(client, "maria", "maria-campus-pass")
    body = r.content.decode()
    assert r.status_code == 200 and DOWN in body and WRONG not in body
    assert "Local panel accounts still sign in." in body
    r = client.post(reverse("login"), {"username": "maria", "password": "x"}, HTTP_ACCEPT_LANGUAGE="pt-BR")
    assert "O diretório do campus não está respondendo" in r.content.decode()
    assert login(client, "alice", PASSWORD).status_code == 302
    # A local account's wrong password is just that: the directory is not asked.
    client.logout()
    body = login(client, "alice", "wrong").content.decode()
    assert WRONG in body and DOWN not in body


ROSTER = "maria\njoao, João L.,\nguest1, Guest One, guest1@elsewhere.example.org\n"


@pytest.fixture
def form_data(template, pool, host):
    return {"name": "Redes", "slug": "redes", "template": template.pk, "pool": pool.pk, "memory_mb": "256"}


def test_a_roster_of_campus_usernames_shows_no_password_for_them(client, campus, ivy, form_data):
    client.force_login(ivy)
    r = create_via_form(client, {**form_data, "roster_text": ROSTER}, follow=True)
    lab = Lab.objects.get(slug="redes")
    body = r.content.decode()
    assert "guest1" in body and "maria" not in body.split("<table", 1)[1]
    assert any("2 new accounts are campus accounts" in m for m in messages_of(r))
    maria, joao, guest1 = (User.objects.get(username=u) for u in ("maria", "joao", "guest1"))
    assert not maria.has_usable_password() and not joao.has_usable_password() and guest1.has_usable_password()
    assert joao.get_full_name() == "João L."
    assert AuditEvent.objects.filter(lab=lab, action="create_account", message="campus account").count() == 2
    # At her first sign-in the directory fills in her name and e-mail; the panel has no password of hers to reset.
    client.logout()
    assert login(client, "maria", "maria-campus-pass").status_code == 302
    maria.refresh_from_db()
    assert (maria.get_full_name(), maria.email) == ("Maria Souza", "maria@campus.example.edu")
    client.force_login(ivy)
    page = client.get(reverse("student_password_confirm", args=[lab.pk, maria.pk])).content.decode()
    assert "signs in with the campus password" in page
    r = client.post(reverse("student_password_reset", args=[lab.pk, maria.pk]), {"confirm": "on"})
    maria.refresh_from_db()
    assert not maria.has_usable_password()


def test_a_roster_by_api_lists_the_campus_accounts(client, campus, ivy, template, pool, host):
    token = api_tokens.create_token(ivy, "batch", 1)[1]
    body = {"template": template.pk, "pool": pool.pk, "memory_mb": 256, "roster": ROSTER, "slug": "api"}
    r = client.post(
        "/api/v1/labs", json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert r.status_code == 202, r.content
    assert r.json()["campus_accounts"] == ["maria", "joao"]
    assert [a["username"] for a in r.json()["new_accounts"]] == ["guest1"]


def test_a_roster_while_the_directory_is_down_creates_nothing(client, settings, tmp_path, ivy, form_data):
    server = slapd.make_slapd(tmp_path / "gone")
    use_directory(settings, server)  # never started
    client.force_login(ivy)
    r = client.post(reverse("lab_create"), {**form_data, "roster_text": ROSTER})
    assert r.status_code == 200
    assert "The campus directory is not answering" in r.content.decode()
    assert not Lab.objects.exists() and not User.objects.filter(username__in=["maria", "guest1"]).exists()


def test_without_a_uri_nothing_asks_the_directory(client, settings, ivy, form_data):
    assert settings.XENPANEL_LDAP_URI == "" and settings.AUTHENTICATION_BACKENDS == [
        "django.contrib.auth.backends.ModelBackend"
    ]
    assert "Campus accounts" not in client.get(reverse("login")).content.decode()
    client.force_login(ivy)
    r = create_via_form(client, {**form_data, "roster_text": ROSTER})
    assert r.status_code == 302
    assert User.objects.get(username="maria").has_usable_password()


def test_a_directory_that_never_answers_is_given_up_after_the_timeout(client, settings, alice):
    # A port that takes connections (the kernel's backlog) and never answers: a hung slapd.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        port = hung.getsockname()[1]
        server = slapd.Slapd(Path("/nonexistent"), port)
        use_directory(settings, server, timeout=1)
        started = time.monotonic()
        body = login(client, "maria", "maria-campus-pass").content.decode()
        assert DOWN in body
        assert time.monotonic() - started < 10
        assert login(client, "alice", PASSWORD).status_code == 302
