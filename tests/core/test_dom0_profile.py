"""A dom0's settings profile (xenpanel.settings_dom0): what a worker needs, and none of the panel's secrets."""

from __future__ import annotations

from pathlib import Path

from tests.core.test_settings import start

SHOW = (
    "import django, os; django.setup(); from django.conf import settings as s; "
    "print(len(s.SECRET_KEY) > 40, 'SECRET_KEY' in os.environ, sorted(s.INSTALLED_APPS), s.MIDDLEWARE)"
)


def test_a_dom0_starts_without_the_panel_secret_and_loads_no_web_apps(tmp_path: Path):
    out = start(tmp_path, SHOW, DJANGO_SETTINGS_MODULE="xenpanel.settings_dom0", SECRET_KEY=None)
    assert out.returncode == 0, out.stderr
    # A key of its own (nothing it signs is accepted anywhere), not left for child processes.
    assert out.stdout.split()[:2] == ["True", "False"]
    assert "django.contrib.sessions" not in out.stdout and "django.contrib.admin" not in out.stdout
    assert "'labs'" in out.stdout and "'django_rq'" in out.stdout


def test_a_dom0_given_the_panel_secret_refuses_to_start(tmp_path: Path):
    out = start(tmp_path, SHOW, DJANGO_SETTINGS_MODULE="xenpanel.settings_dom0", SECRET_KEY="the-panel-secret")
    assert out.returncode != 0
    assert "a dom0 must not hold the panel's web secret" in out.stderr


def test_two_dom0_processes_have_different_keys(tmp_path: Path):
    code = "import django; django.setup(); from django.conf import settings as s; print(s.SECRET_KEY)"
    keys = {
        start(tmp_path, code, DJANGO_SETTINGS_MODULE="xenpanel.settings_dom0", SECRET_KEY=None).stdout for _ in "ab"
    }
    assert len(keys) == 2


def test_a_dom0_given_the_directory_password_refuses_to_start(tmp_path: Path):
    env = {"XENPANEL_LDAP_URI": "ldaps://ldap.example.edu", "XENPANEL_LDAP_BIND_PASSWORD": "directory-secret"}
    out = start(tmp_path, SHOW, DJANGO_SETTINGS_MODULE="xenpanel.settings_dom0", SECRET_KEY=None, **env)
    assert out.returncode != 0
    assert "XENPANEL_LDAP_BIND_PASSWORD is set in this dom0's environment" in out.stderr
