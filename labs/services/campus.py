"""Which roster usernames are campus accounts: one look-up in the campus directory (LDAP) per batch.

A new account whose username the directory knows is made without a usable
panel password (its student signs in with the campus password; name and
e-mail come from the directory then, labs.campus); any other new account
gets a one-time panel password, as without LDAP. With LDAP off
(XENPANEL_LDAP_URI empty) nothing is looked up.
"""

from __future__ import annotations

import logging

import ldap
import ldap.filter
from django.conf import settings
from django.utils.translation import gettext as _

from labs.campus import UNREACHABLE
from labs.services.errors import ServiceError

log = logging.getLogger(__name__)


def enabled() -> bool:
    return bool(settings.XENPANEL_LDAP_URI)


def _setting(name: str):
    """One of django-auth-ldap's settings, which xenpanel/ldap_settings.py made from the XENPANEL_LDAP_* variables."""
    return getattr(settings, f"AUTH_LDAP_{name}")


def _connect():
    """A connection set up as the login's (URI, timeouts, TLS and its CA), bound as the login's searches are."""
    conn = ldap.initialize(_setting("SERVER_URI"), bytes_mode=False)
    for option, value in _setting("CONNECTION_OPTIONS").items():
        conn.set_option(option, value)
    if _setting("START_TLS"):
        conn.start_tls_s()
    conn.simple_bind_s(_setting("BIND_DN"), _setting("BIND_PASSWORD"))
    return conn


def campus_usernames(usernames: list[str]) -> set[str]:
    """The usernames the campus directory knows (all searches sent at once); ServiceError when it cannot tell."""
    if not enabled() or not usernames:
        return set()
    search = _setting("USER_SEARCH")
    try:
        conn = _connect()
        try:
            pending = {
                u: conn.search_ext(
                    search.base_dn,
                    search.scope,
                    search.filterstr % {"user": ldap.filter.escape_filter_chars(u)},
                    attrlist=["1.1"],
                )
                for u in usernames
            }
            return {u for u, msgid in pending.items() if conn.result(msgid, all=1)[1]}
        finally:
            conn.unbind_s()
    except UNREACHABLE:
        raise ServiceError(
            _(
                "The campus directory is not answering, so the roster's new usernames cannot be checked against"
                " it. Nothing was created; try again in a few minutes."
            ),
            field="roster",
        ) from None
    except ldap.LDAPError as e:
        log.warning("campus directory look-up failed: %r", e)
        raise ServiceError(
            _("The campus directory refused the look-up of the roster's usernames (%(error)s). Nothing was created.")
            % {"error": type(e).__name__},
            field="roster",
        ) from None
