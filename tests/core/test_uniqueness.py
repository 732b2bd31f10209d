"""The database itself refuses two guests with one IP in a pool, one MAC, or one domain name on a host.

Rows are written with create()/update(), which skip model validation, so
only the database constraints stand in the way. The last test runs this
file again on the other backend (SQLite <-> PostgreSQL), so one suite run
checks both.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import IntegrityError, connection, transaction

from labs.models import Guest, Host, IpPool, Lab

ROOT = Path(__file__).resolve().parents[2]


def guest(lab: Lab, student, host: Host, name: str, ip: str, mac: str, pool: IpPool | None = None) -> Guest:
    return Guest.objects.create(
        lab=lab,
        student=student,
        host=host,
        pool=pool or lab.pool,
        domain_name=name,
        hostname=name,
        ip=ip,
        mac=mac,
        root_lv=f"vm-{name}.raiz",
        memory_mb=256,
    )


@pytest.fixture
def other_pool(db) -> IpPool:
    return IpPool.objects.create(
        name="net2", network="10.10.0.0/24", gateway="10.10.0.1", first_ip="10.10.0.2", last_ip="10.10.0.254"
    )


@pytest.fixture
def other_host(db) -> Host:
    return Host.objects.create(name="dom0-b", queue_name="dom0-b", volume_group="vg0")


def test_same_ip_in_one_pool_is_refused(lab, alice, bob, host):
    guest(lab, alice, host, "a1", "10.10.0.10", "00:16:3e:00:00:01")
    with pytest.raises(IntegrityError), transaction.atomic():
        guest(lab, bob, host, "b1", "10.10.0.10", "00:16:3e:00:00:02")
    assert Guest.objects.count() == 1


def test_ip_moved_onto_a_taken_one_is_refused(lab, alice, bob, host):
    guest(lab, alice, host, "a1", "10.10.0.10", "00:16:3e:00:00:01")
    b = guest(lab, bob, host, "b1", "10.10.0.11", "00:16:3e:00:00:02")
    with pytest.raises(IntegrityError), transaction.atomic():
        Guest.objects.filter(pk=b.pk).update(ip="10.10.0.10")
    b.refresh_from_db()
    assert b.ip == "10.10.0.11"


def test_same_ip_in_another_pool_is_allowed(lab, alice, bob, host, other_pool):
    # Two isolated lab networks may reuse the same private range.
    guest(lab, alice, host, "a1", "10.10.0.10", "00:16:3e:00:00:01")
    guest(lab, bob, host, "b1", "10.10.0.10", "00:16:3e:00:00:02", pool=other_pool)
    assert Guest.objects.filter(ip="10.10.0.10").count() == 2


def test_same_mac_is_refused_even_across_pools_and_hosts(lab, alice, bob, host, other_host, other_pool):
    guest(lab, alice, host, "a1", "10.10.0.10", "00:16:3e:00:00:01")
    with pytest.raises(IntegrityError), transaction.atomic():
        guest(lab, bob, other_host, "b1", "10.10.0.11", "00:16:3e:00:00:01", pool=other_pool)
    assert Guest.objects.count() == 1


def test_same_domain_name_on_one_host_is_refused(lab, alice, bob, host):
    guest(lab, alice, host, "web", "10.10.0.10", "00:16:3e:00:00:01")
    with pytest.raises(IntegrityError), transaction.atomic():
        guest(lab, bob, host, "web", "10.10.0.11", "00:16:3e:00:00:02")
    assert Guest.objects.count() == 1


def test_same_domain_name_on_another_host_is_allowed(lab, alice, bob, host, other_host):
    guest(lab, alice, host, "web", "10.10.0.10", "00:16:3e:00:00:01")
    guest(lab, bob, other_host, "web", "10.10.0.11", "00:16:3e:00:00:02")
    assert Guest.objects.filter(domain_name="web").count() == 2


def test_live_lab_slug_is_unique_but_torn_down_ones_free_it(lab, template, pool):
    with pytest.raises(IntegrityError), transaction.atomic():
        Lab.objects.create(name="Again", slug=lab.slug, template=template, pool=pool, memory_mb=256)
    Lab.objects.filter(pk=lab.pk).update(status=Lab.Status.TORN_DOWN)
    Lab.objects.create(name="Again", slug=lab.slug, template=template, pool=pool, memory_mb=256)
    assert Lab.objects.filter(slug=lab.slug).count() == 2


def test_host_name_and_queue_are_unique(host):
    with pytest.raises(IntegrityError), transaction.atomic():
        Host.objects.create(name=host.name, queue_name="other-queue", volume_group="vg0")
    with pytest.raises(IntegrityError), transaction.atomic():
        Host.objects.create(name="other-host", queue_name=host.queue_name, volume_group="vg0")


def _postgres_answers(url: str) -> bool:
    host_port = url.split("@", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 5432)), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.django_db
def test_constraints_hold_on_the_other_backend(tmp_path):
    """Run the tests above on SQLite when this run uses PostgreSQL, and on PostgreSQL when it uses SQLite."""
    if os.environ.get("XENPANEL_UNIQUENESS_NESTED"):
        pytest.skip("already the nested run")
    if connection.vendor == "postgresql":
        other = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    else:
        # Its own database name, so a parallel PostgreSQL run elsewhere cannot collide with this one.
        other = os.environ.get("XENPANEL_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/xenpanel_core")
        if not _postgres_answers(other):
            pytest.skip(f"no PostgreSQL at {other.split('@')[-1]}; CI runs the whole suite on PostgreSQL")
    env = dict(os.environ, DATABASE_URL=other, XENPANEL_UNIQUENESS_NESTED="1")
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--create-db", __file__],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "8 passed" in r.stdout, r.stdout[-2000:]
