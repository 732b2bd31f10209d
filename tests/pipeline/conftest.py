"""Pipeline fixtures: the real Redis (REDIS_URL, flushed per test), real RQ workers, the simulated dom0.

Workers run either in this process (rq's SimpleWorker, burst mode) or as
`manage.py rqworker --burst` subprocesses against the same test database.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import django_rq
import pytest
from django.db import connections

from labs.dom0.simulated import SimulatedHost
from labs.jobs.connect import host_config
from labs.models import Guest, Host

ROOT = Path(__file__).resolve().parents[2]

# Worker subprocesses must see the test database. PostgreSQL test databases
# are ordinary databases; SQLite's default test database lives in memory,
# so put it in a file (on tmpfs when there is one) before pytest-django
# creates it. This runs at collection, before any database is set up.
_db = connections["default"].settings_dict
if _db["ENGINE"].endswith("sqlite3"):
    _dir = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    _db.setdefault("TEST", {})["NAME"] = os.path.join(_dir, f"xenpanel-test-{os.getpid()}.sqlite3")


@pytest.fixture(autouse=True)
def redis_flushed():
    conn = django_rq.get_connection("default")
    conn.flushdb()
    yield conn
    conn.flushdb()


@pytest.fixture
def sim_dir(tmp_path, settings) -> Path:
    path = tmp_path / "sim"
    settings.XENPANEL_DOM0 = "simulated"
    settings.XENPANEL_SIM_DIR = str(path)
    settings.XENPANEL_SIM_DELAY = 0.0
    return path


@pytest.fixture
def sim(host, sim_dir) -> SimulatedHost:
    """The simulated dom0 behind the `host` row, for arming faults and reading its state."""
    return SimulatedHost(host_config(host))


@pytest.fixture
def second_host(db) -> Host:
    return Host.objects.create(
        name="dom0-b", queue_name="dom0-b", volume_group="vg0", total_memory_mb=8192, free_memory_mb=7000
    )


@pytest.fixture
def running_guest(ivy, alice, bob, host, template, pool, sim) -> Guest:
    """alice's guest in ivy's lab "net" (with bob's beside it), provisioned and running."""
    from labs.services import create_lab_batch

    from .helpers import roster, work

    create_lab_batch(ivy, template, pool, roster("alice", "bob"), memory_mb=256, slug="net")
    work(host.queue_name)
    guest = Guest.objects.select_related("lab", "host", "student").get(domain_name="net-alice")
    assert guest.status == "ready" and guest.observed_state in ("r", "b"), guest.last_error
    return guest
