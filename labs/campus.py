"""Signing in with the campus directory (LDAP): django-auth-ldap's backend with the panel's rules.

- A local account (one with a usable panel password: the admin, the demo,
  guests from outside) never signs in through the directory, even when the
  directory has someone of that name: the directory cannot take it over.
- Campus accounts (no usable panel password: made at their first sign-in,
  or by a roster naming a campus username) get their name and e-mail from
  the directory at each sign-in, and their roles from its groups: the admin
  group makes them staff, the instructor group puts them in the
  instructors group (labs.access), both taken away when they leave it.
- When the directory does not answer, the request is marked, and the login
  form says so instead of "wrong password" (labs.forms.LoginForm).

Active only when XENPANEL_LDAP_URI is set (xenpanel/settings.py).
"""

from __future__ import annotations

import ldap
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.dispatch import receiver
from django.http import HttpRequest
from django_auth_ldap.backend import LDAPBackend, ldap_error

from labs.access import INSTRUCTORS_GROUP

# Errors that mean the directory did not answer (down, unreachable, too slow, or no TLS with it).
UNREACHABLE = (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR)
DIRECTORY_DOWN = "xenpanel_directory_down"


def directory_was_down(request: HttpRequest | None) -> bool:
    return bool(getattr(request, DIRECTORY_DOWN, False))


@receiver(ldap_error)
def _note_directory_down(sender, context, user, request, exception, **kwargs) -> None:
    if request is not None and isinstance(exception, UNREACHABLE):
        setattr(request, DIRECTORY_DOWN, True)


def is_local_account(username: str) -> bool:
    """An account that signs in with its panel password only."""
    user = get_user_model().objects.filter(username__iexact=username).only("password").first()
    return user is not None and user.has_usable_password()


class CampusBackend(LDAPBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if not username or is_local_account(username):
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def authenticate_ldap_user(self, ldap_user, password):
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is not None and getattr(settings, "AUTH_LDAP_USER_FLAGS_BY_GROUP", {}).get("xenpanel_instructor"):
            group = Group.objects.get_or_create(name=INSTRUCTORS_GROUP)[0]
            if getattr(user, "xenpanel_instructor", False):
                user.groups.add(group)
            else:
                user.groups.remove(group)
        return user
