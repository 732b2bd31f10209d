"""Settings come from the environment; a bad value stops start-up with a message naming the variable.

Each case starts a fresh interpreter, because settings are read once per process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Variables settings.py reads; each case starts from none of them set.
READ_BY_SETTINGS = set(
    re.findall(r'(?:getenv|env[a-z]*)\(\s*"([A-Z][A-Z0-9_]+)"', (ROOT / "xenpanel" / "settings.py").read_text())
)

PRINT = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], s.REDIS_URL, "
    "s.TIME_ZONE, s.XENPANEL_DOM0, ','.join(s.ALLOWED_HOSTS), s.XENPANEL_SIM_DELAY)"
)


# Reading one setting loads them all; enough to see a rejection, and faster than django.setup().
LOAD_ONLY = "from django.conf import settings; settings.DEBUG"


def start(tmp_path: Path, code: str = PRINT, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in READ_BY_SETTINGS}
    clean.update({"DJANGO_SETTINGS_MODULE": "xenpanel.settings", "SECRET_KEY": "k"})
    clean["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    clean.update(env)
    clean = {k: v for k, v in clean.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_every_variable_is_known_to_this_test():
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "XENPANEL_DOM0", "TIME_ZONE"} <= READ_BY_SETTINGS


def test_defaults_start(tmp_path):
    r = start(tmp_path, DATABASE_URL=None)
    assert r.returncode == 0, r.stderr
    debug, engine, name, redis_url, tz, dom0, hosts, delay = r.stdout.split()
    assert debug == "False"
    assert engine == "django.db.backends.sqlite3"
    assert name == str(ROOT / "var" / "xenpanel.sqlite3")
    assert redis_url == "redis://127.0.0.1:6379/0"
    assert (tz, dom0, hosts, delay) == ("UTC", "simulated", "127.0.0.1,localhost", "0.0")


def test_values_from_environment(tmp_path):
    r = start(
        tmp_path,
        DEBUG="yes",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/xenpanel",
        REDIS_URL="redis://127.0.0.1:6390/4",
        TIME_ZONE="America/Sao_Paulo",
        XENPANEL_DOM0="xen",
        ALLOWED_HOSTS="panel.example.edu, 10.0.0.5",
        XENPANEL_SIM_DELAY="0.25",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [
        "True",
        "django.db.backends.postgresql",
        "xenpanel",
        "redis://127.0.0.1:6390/4",
        "America/Sao_Paulo",
        "xen",
        "panel.example.edu,10.0.0.5",
        "0.25",
    ]


def test_debug_needs_no_secret_key(tmp_path):
    r = start(tmp_path, DEBUG="true", SECRET_KEY=None)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SECRET_KEY": None}, "SECRET_KEY must be set when DEBUG is off"),
        ({"SECRET_KEY": ""}, "SECRET_KEY must be set when DEBUG is off"),
        ({"DEBUG": "maybe"}, "DEBUG must be true or false, not 'maybe'"),
        ({"ALLOWED_HOSTS": " , "}, "ALLOWED_HOSTS is empty"),
        ({"SECURE_PROXY_SSL": "sometimes"}, "SECURE_PROXY_SSL must be true or false"),
        ({"TIME_ZONE": "Mars/Olympus_Mons"}, "TIME_ZONE 'Mars/Olympus_Mons' is not a known time zone"),
        ({"TIME_ZONE": "../../etc/passwd"}, "is not a known time zone"),
        ({"DATABASE_URL": "mysql://root:hunter2@db/x"}, "DATABASE_URL must be a sqlite:// or postgres:// URL"),
        ({"DATABASE_URL": "postgres://u@h:notaport/db"}, "DATABASE_URL is not a valid URL"),
        ({"DATABASE_URL": "postgres://postgres@127.0.0.1:5432"}, "DATABASE_URL names no database"),
        ({"REDIS_URL": "http://127.0.0.1:6379/0"}, "REDIS_URL must be a redis://"),
        ({"REDIS_URL": "redis://127.0.0.1:six/0"}, "REDIS_URL is not a valid URL"),
        ({"XENPANEL_DOM0": "vmware"}, "XENPANEL_DOM0 must be one of simulated, xen, not 'vmware'"),
        ({"XENPANEL_SIM_DELAY": "soon"}, "XENPANEL_SIM_DELAY must be a number, not 'soon'"),
        ({"XENPANEL_SIM_DELAY": "-1"}, "XENPANEL_SIM_DELAY must be at least 0"),
        ({"XENPANEL_DEFAULT_MAX_GUESTS": "two"}, "XENPANEL_DEFAULT_MAX_GUESTS must be a whole number, not 'two'"),
        ({"XENPANEL_DEFAULT_LAB_MAX_GUEST_MEMORY_MB": "8"}, "must be at least 16, not 8"),
        ({"RQ_DEFAULT_TIMEOUT": "1"}, "RQ_DEFAULT_TIMEOUT must be at least 10"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
        ({"XENPANEL_TEMPLATE_MIRROR": "ftp://mirror/debian"}, "XENPANEL_TEMPLATE_MIRROR must be an http://"),
    ],
)
def test_bad_value_stops_startup(tmp_path, env, message):
    r = start(tmp_path, LOAD_ONLY, **env)
    assert r.returncode != 0
    last_line = r.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert message in last_line


def test_database_password_is_not_echoed(tmp_path):
    r = start(tmp_path, LOAD_ONLY, DATABASE_URL="mysql://root:hunter2@db/x")
    assert r.returncode != 0
    assert "hunter2" not in r.stderr
