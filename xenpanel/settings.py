"""xenpanel settings.

Every setting comes from the environment with a safe default, in the
Healthchecks style. A bad value stops start-up with a message that names the
variable, instead of failing later in a request or a job.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.connection import parse_url as redis_parse_url

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def envint(name: str, default: int, minimum: int = 0) -> int:
    raw = os.getenv(name, str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def envfloat(name: str, default: float, minimum: float = 0) -> float:
    raw = os.getenv(name, str(default)).strip()
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if not value >= minimum:  # also rejects nan
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {raw}")
    return value


def envchoice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.getenv(name, default).strip()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


DEBUG = envbool("DEBUG", "false")
SECRET_KEY = os.getenv("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (or set DEBUG=true for a local demo)")
    SECRET_KEY = "insecure-dev-only-key-do-not-use-in-production"

ALLOWED_HOSTS = [h.strip() for h in os.getenv("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]
if not ALLOWED_HOSTS and not DEBUG:
    # Django would answer every request with 400; say why at start-up instead.
    raise ImproperlyConfigured("ALLOWED_HOSTS is empty: list the panel's host names, comma-separated")
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.getenv("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]
# Behind nginx terminating TLS (deploy/): trust its X-Forwarded-Proto, or
# Django sees http:// and refuses every form POST from https:// (CSRF origin check).
SECURE_PROXY_SSL = envbool("SECURE_PROXY_SSL", "false")
if SECURE_PROXY_SSL:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True

TIME_ZONE = os.getenv("TIME_ZONE", "UTC")
try:
    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(f"TIME_ZONE {TIME_ZONE!r} is not a known time zone") from None
USE_TZ = True
USE_I18N = True
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("pt-br", "Português (Brasil)")]
LOCALE_PATHS = [BASE_DIR / "locale"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "crispy_forms",
    "crispy_bootstrap5",
    "django_htmx",
    "django_rq",
    # The JSON API (labs/api.py); listed for its own copy of the docs page's scripts (no CDN).
    "ninja",
    "labs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "xenpanel.urls"
WSGI_APPLICATION = "xenpanel.wsgi.application"
# The console websockets (xenpanel/asgi.py), served beside gunicorn by uvicorn.
ASGI_APPLICATION = "xenpanel.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_db_url = os.getenv("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'xenpanel.sqlite3'}")
# Messages name the scheme only: the URL may carry a password.
if not _db_url.startswith(("sqlite:", "postgres:", "postgresql:")):
    raise ImproperlyConfigured(
        f"DATABASE_URL must be a sqlite:// or postgres:// URL, not {_db_url.split(':', 1)[0]!r}://..."
    )
try:
    DATABASES = {"default": dj_database_url.parse(_db_url, conn_max_age=60)}
except Exception as e:  # dj-database-url raises plain ValueErrors
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid URL: {e}") from None
if not DATABASES["default"]["NAME"]:
    raise ImproperlyConfigured("DATABASE_URL names no database (postgres://user@host:5432/<name>)")
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # SQLite serialises writers; a busy timeout lets a worker and the panel
    # write at the same time without "database is locked".
    # WAL lets the panel read while a worker writes, and synchronous=NORMAL
    # makes each of a job's small commits cheap (still durable across crashes
    # of the process; the embedded demo's data is not precious).
    # Connections persist (CONN_MAX_AGE above) as with PostgreSQL: opening one
    # (these pragmas, Django's SQL functions, the schema) costs ~2.5 ms of CPU,
    # half of what a student's idle poll costs otherwise. Between requests an
    # autocommit connection holds no lock, and with WAL readers never block
    # the workers' writes.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.getenv("REDIS_URL", "redis://127.0.0.1:6379/0")
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured("REDIS_URL must be a redis://, rediss:// or unix:// URL")
try:
    # redis-py parses lazily, at the first command; parse now so a typo stops start-up.
    redis_parse_url(REDIS_URL)
except ValueError as e:
    raise ImproperlyConfigured(f"REDIS_URL is not a valid URL: {e}") from None


class _Queues(dict):
    """RQ_QUEUES that knows every per-host queue.

    Each dom0 has its own queue, named in the Host row, so the set of queue
    names is data, not configuration. Any name not listed here uses the
    default queue's Redis connection.
    """

    def __missing__(self, key: str) -> dict:
        return self["default"]


RQ_QUEUES = _Queues(
    # JSON, not rq's default pickle: whoever can write a job to Redis must not run code by it.
    default={
        "URL": REDIS_URL,
        "DEFAULT_TIMEOUT": envint("RQ_DEFAULT_TIMEOUT", 1800, 10),
        "SERIALIZER": "rq.serializers.JSONSerializer",
    },
)
RQ = {"COMMIT_MODE": "on_db_commit"}
RQ_SHOW_ADMIN_LINK = True

# simulated: the built-in fake dom0 (demo and unit tests); xen: run xl/LVM for real.
XENPANEL_DOM0 = envchoice("XENPANEL_DOM0", "simulated", ("simulated", "xen"))
XENPANEL_SIM_DIR = os.getenv("XENPANEL_SIM_DIR", str(BASE_DIR / "var" / "simdom0"))
# Seconds a simulated step takes (clone, create...); 0 for fast tests.
XENPANEL_SIM_DELAY = envfloat("XENPANEL_SIM_DELAY", 0)
# The simulated host's memory (xl info total_memory), for demos and benchmarks of more guests than 16 GiB hold.
XENPANEL_SIM_MEMORY_MB = envint("XENPANEL_SIM_MEMORY_MB", 16384, 1024)
# The sync loop queues a health check (VG space, bridge, dom0 reserve...) on a
# host not checked for this many seconds; 0 leaves them to `check_hosts`.
XENPANEL_HEALTH_INTERVAL = envint("XENPANEL_HEALTH_INTERVAL", 300, 0)
# A lab's expiry is announced on My VMs, the guest page and the lab page this many hours before (0: never).
XENPANEL_EXPIRY_WARNING_HOURS = envint("XENPANEL_EXPIRY_WARNING_HOURS", 48, 0)

# Quota defaults; per-student and per-lab overrides live in the database.
XENPANEL_DEFAULT_MAX_GUESTS = envint("XENPANEL_DEFAULT_MAX_GUESTS", 2, 0)
XENPANEL_DEFAULT_MAX_MEMORY_MB = envint("XENPANEL_DEFAULT_MAX_MEMORY_MB", 2048, 0)
XENPANEL_DEFAULT_MAX_SAVE_POINTS = envint("XENPANEL_DEFAULT_MAX_SAVE_POINTS", 3, 0)
XENPANEL_DEFAULT_LAB_MAX_GUEST_MEMORY_MB = envint("XENPANEL_DEFAULT_LAB_MAX_GUEST_MEMORY_MB", 1024, 16)
# How students reach the console: "xl" (xl console on dom0) or an ssh command template.
XENPANEL_CONSOLE_SSH = os.getenv("XENPANEL_CONSOLE_SSH", "")
# The browser console: a console nobody typed in for this many seconds is closed (the recipe's TMOUT).
XENPANEL_CONSOLE_IDLE = envint("XENPANEL_CONSOLE_IDLE", 1200, 10)
# Where the page opens its console websocket: "/ws/" on the panel's own origin (nginx routes it to the
# ASGI process), ":8001/ws/" on the page's host name at another port (`make run`), or a ws:// or wss:// URL.
XENPANEL_CONSOLE_WS_URL = os.getenv("XENPANEL_CONSOLE_WS_URL", "/ws/").strip()
if not re.fullmatch(r"(wss?://[^/\s]+)?/\S*/|:\d{1,5}/\S*/", XENPANEL_CONSOLE_WS_URL):
    raise ImproperlyConfigured(
        "XENPANEL_CONSOLE_WS_URL must be a path ending in / (/ws/), :<port>/ws/ or a ws:// or wss:// URL, "
        f"not {XENPANEL_CONSOLE_WS_URL!r}"
    )
# The JSON API: requests a minute per API token (0: no limit).
XENPANEL_API_RATE = envint("XENPANEL_API_RATE", 300, 0)
# Template builds (debootstrap) on a dom0.
XENPANEL_TEMPLATE_SUITE = os.getenv("XENPANEL_TEMPLATE_SUITE", "bookworm")
XENPANEL_TEMPLATE_MIRROR = os.getenv("XENPANEL_TEMPLATE_MIRROR", "http://deb.debian.org/debian")
if not XENPANEL_TEMPLATE_MIRROR.startswith(("http://", "https://")):
    raise ImproperlyConfigured("XENPANEL_TEMPLATE_MIRROR must be an http:// or https:// URL")

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# Django's standard four: they apply where a person picks a password (the
# change-password page, the admin, createsuperuser), not to the random
# initial passwords the batch creates.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Campus login (LDAP, xenpanel/ldap_settings.py): off while XENPANEL_LDAP_URI is empty. Local accounts
# (the admin, the demo, guests from outside) always sign in with their panel password.
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
XENPANEL_LDAP_URI = os.getenv("XENPANEL_LDAP_URI", "").strip()
if XENPANEL_LDAP_URI:
    from xenpanel.ldap_settings import auth_ldap_settings

    globals().update(
        auth_ldap_settings(
            uri=XENPANEL_LDAP_URI,
            starttls=envbool("XENPANEL_LDAP_STARTTLS", "false"),
            ca_file=os.getenv("XENPANEL_LDAP_CA_FILE", "").strip(),
            bind_dn=os.getenv("XENPANEL_LDAP_BIND_DN", "").strip(),
            bind_password=os.getenv("XENPANEL_LDAP_BIND_PASSWORD", ""),
            user_base=os.getenv("XENPANEL_LDAP_USER_BASE", "").strip(),
            user_filter=os.getenv("XENPANEL_LDAP_USER_FILTER", "(uid=%(user)s)").strip(),
            group_type=envchoice(
                "XENPANEL_LDAP_GROUP_TYPE", "groupOfNames", ("groupOfNames", "groupOfUniqueNames", "posixGroup")
            ),
            instructor_group=os.getenv("XENPANEL_LDAP_INSTRUCTOR_GROUP", "").strip(),
            admin_group=os.getenv("XENPANEL_LDAP_ADMIN_GROUP", "").strip(),
            timeout=envint("XENPANEL_LDAP_TIMEOUT", 5, 1),
        )
    )
    AUTHENTICATION_BACKENDS.append("labs.campus.CampusBackend")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LOG_LEVEL = envchoice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}
