"""Campus login settings: off without XENPANEL_LDAP_URI; every bad XENPANEL_LDAP_* value stops start-up by name."""

from __future__ import annotations

import ldap
import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.core.test_settings import start
from xenpanel.ldap_settings import auth_ldap_settings

BACKENDS = "from django.conf import settings as s; print(s.AUTHENTICATION_BACKENDS)"
GOOD = {
    "uri": "ldap://ldap.example.edu",
    "starttls": False,
    "ca_file": "",
    "bind_dn": "",
    "bind_password": "",
    "user_base": "ou=people,dc=example,dc=edu",
    "user_filter": "(uid=%(user)s)",
    "group_type": "groupOfNames",
    "instructor_group": "",
    "admin_group": "",
    "timeout": 5,
}


def test_off_without_a_uri(tmp_path):
    r = start(tmp_path, BACKENDS)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['django.contrib.auth.backends.ModelBackend']"


def test_a_uri_adds_the_campus_backend_after_the_local_one(tmp_path):
    env = {"XENPANEL_LDAP_URI": "ldaps://ldap.example.edu", "XENPANEL_LDAP_USER_BASE": "ou=people,dc=example,dc=edu"}
    r = start(tmp_path, BACKENDS, **env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['django.contrib.auth.backends.ModelBackend', 'labs.campus.CampusBackend']"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"XENPANEL_LDAP_URI": "http://ldap.example.edu"}, "XENPANEL_LDAP_URI"),
        ({"XENPANEL_LDAP_USER_BASE": ""}, "XENPANEL_LDAP_USER_BASE"),
        ({"XENPANEL_LDAP_STARTTLS": "perhaps"}, "XENPANEL_LDAP_STARTTLS"),
        ({"XENPANEL_LDAP_TIMEOUT": "0"}, "XENPANEL_LDAP_TIMEOUT"),
        ({"XENPANEL_LDAP_GROUP_TYPE": "ad"}, "XENPANEL_LDAP_GROUP_TYPE"),
    ],
)
def test_bad_values_stop_start_up_naming_the_variable(tmp_path, env, named):
    base = {"XENPANEL_LDAP_URI": "ldap://ldap.example.edu", "XENPANEL_LDAP_USER_BASE": "dc=example,dc=edu"}
    r = start(tmp_path, "from django.conf import settings; settings.DEBUG", **{**base, **env})
    assert r.returncode != 0
    assert "ImproperlyConfigured" in r.stderr and named in r.stderr.splitlines()[-1], r.stderr[-500:]


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"uri": "ldap://"}, None),  # a URL with no host is the local default, which is allowed
        ({"uri": "ldap://a ftp://b"}, "XENPANEL_LDAP_URI"),
        ({"starttls": True, "uri": "ldaps://ldap.example.edu"}, "XENPANEL_LDAP_STARTTLS"),
        ({"ca_file": "/etc/hostname"}, "XENPANEL_LDAP_CA_FILE is set but nothing is encrypted"),
        ({"ca_file": "/nonexistent/ca.pem", "starttls": True}, "XENPANEL_LDAP_CA_FILE"),
        ({"bind_dn": "not a dn", "bind_password": "x"}, "XENPANEL_LDAP_BIND_DN"),
        ({"bind_dn": "cn=panel,dc=example,dc=edu"}, "XENPANEL_LDAP_BIND_DN is set without"),
        ({"bind_password": "x"}, "XENPANEL_LDAP_BIND_PASSWORD"),
        ({"user_base": "people"}, "XENPANEL_LDAP_USER_BASE"),
        ({"user_filter": "uid=%(user)s"}, "XENPANEL_LDAP_USER_FILTER"),
        ({"user_filter": "(uid=alice)"}, "XENPANEL_LDAP_USER_FILTER"),
        ({"user_filter": "(&(uid=%(user)s)"}, "XENPANEL_LDAP_USER_FILTER"),
        ({"instructor_group": "instructors"}, "XENPANEL_LDAP_INSTRUCTOR_GROUP"),
        ({"admin_group": "cn=x,,dc=y"}, "XENPANEL_LDAP_ADMIN_GROUP"),
    ],
)
def test_each_check_names_its_variable(values, named):
    if named is None:
        auth_ldap_settings(**{**GOOD, **values})
        return
    with pytest.raises(ImproperlyConfigured, match=named):
        auth_ldap_settings(**{**GOOD, **values})


def test_a_full_configuration(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    made = auth_ldap_settings(
        **{
            **GOOD,
            "starttls": True,
            "ca_file": str(ca),
            "bind_dn": "cn=panel,dc=example,dc=edu",
            "bind_password": "s3cret",
            "instructor_group": "cn=teachers,ou=groups,dc=example,dc=edu",
            "admin_group": "cn=admins,ou=groups,dc=example,dc=edu",
        }
    )
    assert made["AUTH_LDAP_START_TLS"] is True
    assert made["AUTH_LDAP_USER_FLAGS_BY_GROUP"] == {
        "is_staff": "cn=admins,ou=groups,dc=example,dc=edu",
        "is_superuser": "cn=admins,ou=groups,dc=example,dc=edu",
        "xenpanel_instructor": "cn=teachers,ou=groups,dc=example,dc=edu",
    }
    options = made["AUTH_LDAP_CONNECTION_OPTIONS"]
    assert options[ldap.OPT_X_TLS_CACERTFILE] == str(ca)
    assert options[ldap.OPT_X_TLS_REQUIRE_CERT] == ldap.OPT_X_TLS_DEMAND
    # The new TLS context is made last, from the options set before it.
    assert list(options)[-1] == ldap.OPT_X_TLS_NEWCTX
    assert made["AUTH_LDAP_GROUP_SEARCH"].base_dn == "ou=groups,dc=example,dc=edu"
