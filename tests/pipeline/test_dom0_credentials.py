"""Per-dom0 credentials on the real PostgreSQL and Redis 7: a dom0 reaches its own rows, queue and jobs only.

The whole pipeline then runs with those credentials: a worker process with
the dom0 settings profile, dom0-a's database role and Redis user provisions,
reboots, resizes and deletes dom0-a's guests.
"""

from __future__ import annotations

import io

import psycopg
import pytest
import redis
from django.core.management import call_command
from django.db import connection

from labs.models import AuditEvent, Guest, SavePoint, Task, UsageCursor, UsageSample, UsageTotal
from labs.services import credentials, guest_action, lab_action, save_points
from labs.services.batch import create_lab_batch
from labs.services.upkeep import enqueue_health_check, enqueue_sync, tick

from .helpers import finish_worker, roster, start_worker

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="database roles and row security are PostgreSQL's"),
]


@pytest.fixture
def two_labs(ivy, alice, bob, template, pool, host, second_host, sim_dir):
    a = create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=256, hosts=[host], slug="laba")
    b = create_lab_batch(ivy, template, pool, roster("bob"), memory_mb=256, hosts=[second_host], slug="labb")
    return a.lab, b.lab


@pytest.fixture
def creds_a(host, second_host):
    made = credentials.provision(host)
    yield made
    credentials.revoke(host)


def _db(creds) -> psycopg.Connection:
    return psycopg.connect(creds.database_url.replace("postgres://", "postgresql://"), autocommit=True)


def test_a_dom0_role_sees_its_own_rows_and_no_secrets(two_labs, creds_a, host, second_host, admin_user):
    mine = Guest.objects.get(host=host)
    theirs = Guest.objects.get(host=second_host)
    with _db(creds_a) as db:
        assert [r[0] for r in db.execute("SELECT domain_name FROM labs_guest")] == [mine.domain_name]
        assert db.execute("SELECT count(*) FROM labs_task WHERE host_id = %s", [second_host.pk]).fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM labs_host").fetchone() == (1,)
        # Writing another host's rows changes nothing: they are not there for this role.
        cur = db.execute("UPDATE labs_guest SET status = 'failed' WHERE id = %s", [theirs.pk])
        assert cur.rowcount == 0
        assert db.execute("DELETE FROM labs_guest WHERE id = %s", [theirs.pk]).rowcount == 0
        for secret in ("SELECT password FROM auth_user", "SELECT session_data FROM django_session"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute(secret)
        # Columns it never writes stay read-only, even on its own rows.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("UPDATE labs_guest SET ip = '10.0.0.99' WHERE id = %s", [mine.pk])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("UPDATE labs_lab SET status = 'torn_down'")
    assert Guest.objects.get(pk=theirs.pk).status == "pending"


def test_a_dom0_role_reads_and_writes_its_own_guests_usage_only(two_labs, creds_a, host, second_host):
    mine = Guest.objects.get(host=host)
    theirs = Guest.objects.get(host=second_host)
    point = dict(tier=0, slot=1, bucket=1, cpu=5.0, cpu_max=9.0, mem_mb=256.0, mem_max_mb=256)
    UsageSample.objects.create(guest=mine, **point)
    UsageSample.objects.create(guest=theirs, **point)
    UsageCursor.objects.create(host=second_host, state={"minute": 1})
    with _db(creds_a) as db:
        assert [r[0] for r in db.execute("SELECT guest_id FROM labs_usagesample")] == [mine.pk]
        assert db.execute("SELECT count(*) FROM labs_usagecursor").fetchone() == (0,)
        assert db.execute("UPDATE labs_usagesample SET cpu = 99 WHERE guest_id = %s", [theirs.pk]).rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # row-level security: not its guest
            db.execute(
                "INSERT INTO labs_usagesample (guest_id, tier, slot, bucket, n, cpu, cpu_max, mem_mb, mem_max_mb)"
                " VALUES (%s, 0, 2, 2, 1, 1, 1, 1, 1)",
                [theirs.pk],
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # a column it never writes
            db.execute("UPDATE labs_usagesample SET guest_id = %s WHERE guest_id = %s", [theirs.pk, mine.pk])
    assert UsageSample.objects.get(guest=theirs).cpu == 5.0


def test_a_dom0_redis_user_reaches_its_own_queue_and_jobs_only(two_labs, creds_a, host, second_host):
    theirs = Task.objects.get(host=second_host)
    r = redis.Redis.from_url(creds_a.redis_url)
    assert r.llen(f"rq:queue:{host.queue_name}") == 1
    for denied in (
        lambda: r.lpush(f"rq:queue:{second_host.queue_name}", "x"),
        lambda: r.hgetall(f"rq:job:{theirs.rq_job_id}"),
        lambda: r.flushdb(),
        lambda: r.config_get("*"),
        lambda: r.keys("*"),
        lambda: r.execute_command("ACL", "LIST"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            denied()


def test_the_pipeline_runs_on_the_dom0_credentials(two_labs, creds_a, host, sim, sim_dir, alice, ivy, settings):
    lab_a, _ = two_labs
    env = {"DATABASE_URL": creds_a.database_url, "REDIS_URL": creds_a.redis_url}

    def run() -> str:
        return finish_worker(start_worker(sim_dir, host.queue_name, env=env))

    run()
    guest = Guest.objects.get(host=host)
    assert (guest.status, guest.observed_state) == ("ready", "b"), guest.last_error
    # The sync loop's jobs for the host: state sync and a health check.
    enqueue_sync(host)
    enqueue_health_check(host)
    run()
    host.refresh_from_db()
    assert host.last_seen is not None and host.health_ok, host.health_report
    # Usage samples: two more syncs, the second ending a minute (xentop, the rings, the totals).
    enqueue_sync(host)
    run()
    cursor = UsageCursor.objects.get(host=host)
    cursor.state["minute"] -= 1
    cursor.save()
    enqueue_sync(host)
    run()
    assert UsageSample.objects.filter(guest=guest).count() == 3 and UsageTotal.objects.filter(guest=guest).exists()
    # A reboot from inside that xl could not finish: the dom0's sync may only report it (on a column it
    # may write); the panel's loop, on its own credentials, starts the VM.
    sim.guest_reboot(guest.domain_name, restart_fails=True)
    enqueue_sync(host)
    run()
    assert Guest.objects.get(pk=guest.pk).last_error.startswith("The VM rebooted itself")
    tick()
    run()
    start = Task.objects.get(guest=guest, kind="start", actor=None)
    assert start.status == "succeeded", (start.error, start.log)
    for action, kwargs in (("reboot", {}), ("mem_set", {"memory_mb": 384}), ("shutdown", {})):
        task = guest_action(alice, guest, action, **kwargs)
        run()
        task.refresh_from_db()
        assert task.status == "succeeded", (action, task.error, task.log)
    assert Guest.objects.get(pk=guest.pk).memory_mb == 384
    # Save points on the dom0's role: two taken, a return to one, the other deleted; the teardown removes the rest.
    for label in ("deleted", "kept"):
        task = save_points.take(alice, Guest.objects.get(pk=guest.pk), label)
        run()
        task.refresh_from_db()
        assert task.status == "succeeded", (label, task.error, task.log)
    deleted, kept = SavePoint.objects.filter(guest=guest).order_by("label")
    for ask in (lambda: save_points.return_to(alice, kept), lambda: save_points.delete(alice, deleted)):
        task = ask()
        run()
        task.refresh_from_db()
        assert task.status == "succeeded", (task.kind, task.error, task.log)
    assert list(SavePoint.objects.filter(guest=guest).values_list("label", "status")) == [("kept", "ready")]
    # Audit rows that name the guest without a task (a console session, a refused action): the teardown
    # clears their guest, which the row policy must allow.
    AuditEvent.objects.create(
        actor=alice, action="console_open", guest=guest, target=guest.domain_name, result="succeeded"
    )
    [teardown] = lab_action(ivy, lab_a, "teardown")
    out = run()
    teardown.refresh_from_db()
    assert teardown.status == "succeeded", (teardown.error, teardown.log[-2000:], out[-3000:])
    assert not Guest.objects.filter(host=host).exists()
    # The guest's samples went with it; its total stays for the lab's usage report.
    assert not UsageSample.objects.filter(guest_id=guest.pk).exists()
    assert not SavePoint.objects.exists()
    assert UsageTotal.objects.get(lab=lab_a).guest_id is None
    tick()
    lab_a.refresh_from_db()
    assert lab_a.status == "torn_down"


def test_the_command_prints_the_dom0_environment_file(host, settings):
    out, err = io.StringIO(), io.StringIO()
    call_command("dom0_credentials", host.name, "--database-host", "panel.example.edu", stdout=out, stderr=err)
    # This machine's Redis runs without a configuration file: the user lives in memory only, and the command says so.
    if not credentials.persist_redis_users(redis.Redis.from_url(settings.REDIS_URL)):
        assert "it is lost when Redis restarts" in err.getvalue()
    try:
        text = out.getvalue()
        assert "DJANGO_SETTINGS_MODULE=xenpanel.settings_dom0" in text
        assert "SECRET_KEY" not in text.replace("no SECRET_KEY", "")
        db_url = next(line for line in text.splitlines() if line.startswith("DATABASE_URL="))
        assert f"{credentials.role_name(host)}:" in db_url and "@panel.example.edu:" in db_url
        assert connection.settings_dict["NAME"] in db_url
    finally:
        credentials.revoke(host)
