"""Settings for what runs on a dom0 (the RQ worker, the console agent): only what they use, no panel secret.

    DJANGO_SETTINGS_MODULE=xenpanel.settings_dom0 manage.py rqworker ...

A dom0 is trusted less than the panel server: its students' guests share its
bridge, and whoever owns it must not own the panel. So this profile refuses
to start with the panel's SECRET_KEY in its environment (with that key a
dom0 could forge an admin's session) and runs with a throwaway key of its
own: nothing a dom0 signs is accepted anywhere. It loads no admin,
sessions, messages or static files, and serves no URL. Its DATABASE_URL and
REDIS_URL are the dom0's own restricted credentials (`manage.py
dom0_credentials <host>` on the panel server prints them).
"""

from __future__ import annotations

import os
import secrets

from django.core.exceptions import ImproperlyConfigured

if os.environ.get("SECRET_KEY"):
    raise ImproperlyConfigured(
        "SECRET_KEY is set in this dom0's environment: a dom0 must not hold the panel's web secret (with it,"
        " a dom0 could forge any user's session). Remove it from the environment file; this profile needs none."
    )
if os.environ.get("XENPANEL_LDAP_BIND_PASSWORD"):
    raise ImproperlyConfigured(
        "XENPANEL_LDAP_BIND_PASSWORD is set in this dom0's environment: the campus directory's password is the"
        " panel server's alone (a dom0 never signs anyone in). Remove the XENPANEL_LDAP_* lines from it."
    )
os.environ["SECRET_KEY"] = secrets.token_urlsafe(50)
try:
    from xenpanel.settings import *  # noqa: F403  (the panel's settings, then narrowed below)
    from xenpanel.settings import REDIS_URL  # noqa: F401  (named for readers and mypy)
finally:
    # Not left in the environment, where a child process (xl, debootstrap) would inherit it.
    del os.environ["SECRET_KEY"]

XENPANEL_PROFILE = "dom0"
INSTALLED_APPS = [
    "django.contrib.auth",  # Guest.student and Task.actor point at users; no password is ever read
    "django.contrib.contenttypes",
    "django_rq",
    "labs",
]
MIDDLEWARE = []
ROOT_URLCONF = "xenpanel.urls_dom0"
TEMPLATES = []
AUTH_PASSWORD_VALIDATORS = []
