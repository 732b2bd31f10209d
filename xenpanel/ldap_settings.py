"""The campus directory (LDAP) login: django-auth-ldap's settings, built and checked from xenpanel's variables.

`xenpanel.settings` reads the XENPANEL_LDAP_* variables and calls
`auth_ldap_settings` only when XENPANEL_LDAP_URI is set, so python-ldap is
not even imported otherwise. Every check names the variable at fault.
"""

from __future__ import annotations

import os
from typing import Any

import ldap
import ldapurl
from django.core.exceptions import ImproperlyConfigured
from django_auth_ldap.config import GroupOfNamesType, GroupOfUniqueNamesType, LDAPSearch, PosixGroupType

GROUP_TYPES = {
    "groupOfNames": GroupOfNamesType,
    "groupOfUniqueNames": GroupOfUniqueNamesType,
    "posixGroup": PosixGroupType,
}
# The directory's attributes for the account's name and e-mail, filled in at each sign-in.
USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}


def _dn(name: str, value: str, required: bool = False) -> str:
    if not value:
        if required:
            raise ImproperlyConfigured(
                f"{name} must be set when XENPANEL_LDAP_URI is (e.g. ou=people,dc=example,dc=edu)"
            )
        return value
    if not ldap.dn.is_dn(value) or not ldap.dn.str2dn(value):
        raise ImproperlyConfigured(f"{name} is not a distinguished name: {value!r}")
    return value


def _uris(uri: str) -> list[str]:
    uris = uri.split()
    for u in uris:
        if not u.startswith(("ldap://", "ldaps://")) or not ldapurl.isLDAPUrl(u):
            raise ImproperlyConfigured(f"XENPANEL_LDAP_URI must be ldap:// or ldaps:// URLs, not {u!r}")
    return uris


def _check_filter(user_filter: str) -> None:
    depth = 0
    for c in user_filter:
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth < 0:
            break
    if depth != 0 or not (user_filter.startswith("(") and user_filter.endswith(")")) or "%(user)s" not in user_filter:
        raise ImproperlyConfigured(
            f"XENPANEL_LDAP_USER_FILTER must be an LDAP filter in parentheses holding %(user)s, such as"
            f" (uid=%(user)s), not {user_filter!r}"
        )


def _tls_options(uris: list[str], starttls: bool, ca_file: str) -> dict:
    ldaps = any(u.startswith("ldaps://") for u in uris)
    if starttls and ldaps:
        raise ImproperlyConfigured("XENPANEL_LDAP_STARTTLS: the URI is ldaps:// already (TLS from the start); use one")
    if not ca_file:
        return {}
    if not (starttls or ldaps):
        raise ImproperlyConfigured(
            "XENPANEL_LDAP_CA_FILE is set but nothing is encrypted: use ldaps:// or XENPANEL_LDAP_STARTTLS=true"
        )
    if not os.path.isfile(ca_file) or not os.access(ca_file, os.R_OK):
        raise ImproperlyConfigured(f"XENPANEL_LDAP_CA_FILE {ca_file!r} is not a readable file")
    # NEWCTX last: it makes the connection's TLS context from the options set before it.
    return {
        ldap.OPT_X_TLS_CACERTFILE: ca_file,
        ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND,
        ldap.OPT_X_TLS_NEWCTX: 0,
    }


def _common_parent(dns: list[str]) -> str:
    """The deepest entry above every DN of `dns`, for django-auth-ldap's group search (membership is compared)."""
    parts = [ldap.dn.str2dn(dn.lower())[1:] for dn in dns]
    common = parts[0]
    for p in parts[1:]:
        n = 0
        while n < min(len(common), len(p)) and common[-1 - n] == p[-1 - n]:
            n += 1
        common = common[len(common) - n :]
    return ldap.dn.dn2str(common)


def auth_ldap_settings(
    uri: str,
    starttls: bool,
    ca_file: str,
    bind_dn: str,
    bind_password: str,
    user_base: str,
    user_filter: str,
    group_type: str,
    instructor_group: str,
    admin_group: str,
    timeout: int,
) -> dict[str, Any]:
    """The AUTH_LDAP_* settings; ImproperlyConfigured, naming the variable, for a bad value."""
    uris = _uris(uri)
    _dn("XENPANEL_LDAP_BIND_DN", bind_dn)
    if bind_password and not bind_dn:
        raise ImproperlyConfigured("XENPANEL_LDAP_BIND_PASSWORD is set without XENPANEL_LDAP_BIND_DN")
    if bind_dn and not bind_password:
        # A simple bind with a DN and no password is an unauthenticated bind: it proves nothing.
        raise ImproperlyConfigured("XENPANEL_LDAP_BIND_DN is set without XENPANEL_LDAP_BIND_PASSWORD")
    _dn("XENPANEL_LDAP_USER_BASE", user_base, required=True)
    _check_filter(user_filter)
    flags: dict[str, str] = {}
    if _dn("XENPANEL_LDAP_ADMIN_GROUP", admin_group):
        flags.update(is_staff=admin_group, is_superuser=admin_group)
    if _dn("XENPANEL_LDAP_INSTRUCTOR_GROUP", instructor_group):
        flags["xenpanel_instructor"] = instructor_group  # labs.campus puts the account in the instructors group
    options = {
        ldap.OPT_NETWORK_TIMEOUT: timeout,
        ldap.OPT_TIMEOUT: timeout,
        ldap.OPT_REFERRALS: 0,
        **_tls_options(uris, starttls, ca_file),
    }
    return {
        "AUTH_LDAP_SERVER_URI": " ".join(uris),
        "AUTH_LDAP_START_TLS": starttls,
        "AUTH_LDAP_BIND_DN": bind_dn,
        "AUTH_LDAP_BIND_PASSWORD": bind_password,
        "AUTH_LDAP_USER_SEARCH": LDAPSearch(user_base, ldap.SCOPE_SUBTREE, user_filter),
        "AUTH_LDAP_USER_ATTR_MAP": USER_ATTR_MAP,
        "AUTH_LDAP_GROUP_TYPE": GROUP_TYPES[group_type](),
        "AUTH_LDAP_GROUP_SEARCH": LDAPSearch(
            _common_parent([g for g in (instructor_group, admin_group) if g] or [f"x=x,{user_base}"]),
            ldap.SCOPE_SUBTREE,
            "(objectClass=*)",
        ),
        "AUTH_LDAP_USER_FLAGS_BY_GROUP": flags,
        "AUTH_LDAP_CONNECTION_OPTIONS": options,
    }
