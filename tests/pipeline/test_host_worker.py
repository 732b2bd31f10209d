"""labs.jobs.HostWorker: jobs in-process, but with rq's short, refreshed heartbeat."""

from __future__ import annotations

import threading
import time

import django_rq
import pytest
from rq.registry import StartedJobRegistry
from rq.worker.base import BaseWorker

from labs.jobs import HostWorker
from labs.jobs import worker as jobs
from labs.models import Guest, Task
from labs.services import create_lab_batch

from .helpers import roster

pytestmark = pytest.mark.django_db(transaction=True)


def test_heartbeat_is_short_and_refreshed_while_a_long_job_runs(ivy, alice, host, template, pool, sim, settings):
    settings.XENPANEL_SIM_DELAY = 1.0  # the provisioning takes about 2 s
    create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=256, slug="net")
    task = Task.objects.get()
    conn = django_rq.get_connection(host.queue_name)
    registry = StartedJobRegistry(host.queue_name, connection=conn)
    scores: list[float] = []

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(scores) < 2:
            entries = conn.zrange(registry.key, 0, -1, withscores=True)
            if entries and (not scores or entries[0][1] > scores[-1]):
                scores.append(entries[0][1])
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    worker = HostWorker([django_rq.get_queue(host.queue_name)], connection=conn, job_monitoring_interval=0.5)
    started = time.time()
    worker.work(burst=True)
    watcher.join()

    task.refresh_from_db()
    assert task.status == "succeeded", task.log
    assert Guest.objects.get().status == "ready"
    # Registered for about a minute (not the 30-minute job timeout), and pushed forward during the job.
    assert len(scores) == 2, scores
    assert scores[0] - started < 70
    assert scores[1] > scores[0]


def test_worker_key_is_refreshed_once_a_second_at_most_and_at_once_after_a_job_heartbeat(host, monkeypatch):
    monkeypatch.setattr(jobs, "WORKER_HEARTBEAT_SECONDS", 60.0)  # no refresh falls due during the test
    conn = django_rq.get_connection(host.queue_name)
    worker = HostWorker([django_rq.get_queue(host.queue_name)], connection=conn)
    worker.register_birth()
    try:
        worker.heartbeat()
        first = conn.hget(worker.key, "last_heartbeat")
        assert conn.ttl(worker.key) > 400  # worker_ttl + 60 s
        worker.heartbeat()
        worker.heartbeat()
        assert conn.hget(worker.key, "last_heartbeat") == first

        # A job heartbeat leaves the key only job_monitoring_interval + 60 s
        # (rq's own, stood in for here: it needs a running job).
        monkeypatch.setattr(BaseWorker, "maintain_heartbeats", lambda self, job: conn.expire(self.key, 90))
        worker.maintain_heartbeats(None)
        assert conn.ttl(worker.key) <= 90
        worker.heartbeat()
        assert conn.ttl(worker.key) > 400
        assert conn.hget(worker.key, "last_heartbeat") != first
    finally:
        worker.register_death()


def test_a_state_the_worker_already_has_is_not_written_again(host, monkeypatch):
    conn = django_rq.get_connection(host.queue_name)
    worker = HostWorker([django_rq.get_queue(host.queue_name)], connection=conn)
    writes = []
    hset = conn.hset
    monkeypatch.setattr(conn, "hset", lambda key, *args, **kw: writes.append(args) or hset(key, *args, **kw))
    try:
        worker.set_state("idle")
        worker.set_state("idle")  # rq does this between jobs
        assert writes == [("state", "idle")]
        worker.set_state("busy")
        worker.set_state("idle")
        assert writes == [("state", "idle"), ("state", "busy"), ("state", "idle")]
        assert conn.hget(worker.key, "state") == b"idle"
    finally:
        conn.delete(worker.key)


def test_no_job_heartbeat_outside_rqs_execution_of_the_job(host, caplog):
    """The beat thread is told of a job as execute_job() is entered, before rq prepares the job's
    execution (and still after rq cleaned it up): a beat then has nothing to refresh. Before, it called
    rq's maintain_heartbeats() anyway, and every such beat logged an AttributeError (seen on the testbed)."""
    conn = django_rq.get_connection(host.queue_name)
    worker = HostWorker([django_rq.get_queue(host.queue_name)], connection=conn)
    job = django_rq.get_queue(host.queue_name).enqueue("labs.jobs.sync_host", "nowhere")
    try:
        worker._beat_job = job
        assert worker.execution is None
        worker._beat_once()
        assert "heartbeat for job" not in caplog.text
        assert conn.zscore(job.started_job_registry.key, job.id) is None  # nothing was written for it
    finally:
        job.delete()
        conn.delete(worker.key)


def test_a_beat_in_flight_as_the_job_ends_leaves_no_half_execution_behind(host, sim, monkeypatch):
    """rq queues the execution's deletion as the job ends; a beat that was already under way wrote its
    HSET after that delete and left a hash with only last_heartbeat. The next health check's
    Job.delete() then failed with KeyError 'created_at' (seen in CI: check_hosts in the dom0 guide).
    Here the beat is held in flight exactly there: the job's end waits for it."""
    from rq.executions import Execution

    from labs.services.upkeep import enqueue_health_check

    conn = django_rq.get_connection(host.queue_name)
    job = enqueue_health_check(host)
    assert job is not None
    hold, in_beat, cleaned = threading.Event(), threading.Event(), threading.Event()
    heartbeat = Execution.heartbeat

    def held_heartbeat(self, *args, **kwargs):
        if hold.is_set():
            in_beat.set()
            cleaned.wait(2)  # with the fix, the job's end waits for this beat instead
        return heartbeat(self, *args, **kwargs)

    monkeypatch.setattr(Execution, "heartbeat", held_heartbeat)
    worker = HostWorker([django_rq.get_queue(host.queue_name)], connection=conn, job_monitoring_interval=0.1)
    success = worker.handle_job_success

    def ending(*args, **kwargs):
        hold.set()
        assert in_beat.wait(5), "no beat came while the job ended"
        success(*args, **kwargs)
        cleaned.set()

    monkeypatch.setattr(worker, "handle_job_success", ending)
    worker.work(burst=True)
    time.sleep(0.3)  # a late beat, if one were still coming

    assert job.get_status(refresh=True) == "finished"
    assert conn.keys(f"rq:execution:{job.id}:*") == []
    assert conn.zcard(f"rq:executions:{job.id}") == 0
    # And the next check is queued.
    assert enqueue_health_check(host) is not None


def test_a_half_written_execution_record_does_not_stop_the_next_health_check(host, sim):
    """Whatever left it (an older worker, or a dom0 writing its own queue's keys), one broken record
    must not keep the host's health check from ever being queued again."""
    from labs.services.upkeep import enqueue_health_check

    conn = django_rq.get_connection(host.queue_name)
    job = enqueue_health_check(host)
    assert job is not None
    HostWorker([django_rq.get_queue(host.queue_name)], connection=conn).work(burst=True)
    assert job.get_status(refresh=True) == "finished"
    conn.hset(f"rq:execution:{job.id}:feedface", "last_heartbeat", time.time())
    conn.zadd(f"rq:executions:{job.id}", {"feedface": time.time() + 60})

    again = enqueue_health_check(host)

    assert again is not None and again.id == job.id
    assert again.get_status(refresh=True) == "queued"
    assert conn.keys(f"rq:execution:{job.id}:*") == []
    again.delete()


def test_a_job_held_until_the_database_answers_is_not_taken_for_lost(ivy, host, template, pool, sim, monkeypatch):
    """wait_for_database() holds a dequeued job before rq starts its execution, so no heartbeat is
    written for it then. The sync loop must still see it as waiting, however long the hold: judged
    ten minutes on, the job is neither failed nor retried, and it then runs once."""
    from django.db import connection

    from labs.services import upkeep

    if connection.vendor != "postgresql":
        pytest.skip("the worker holds jobs for PostgreSQL only")
    create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=256, slug="net")
    task = Task.objects.get()
    seen: list[list[int]] = []
    monkeypatch.setattr(
        jobs, "wait_for_database", lambda: seen.append([t.pk for t in upkeep.detect_lost_work(time.time() + 600)])
    )
    HostWorker([django_rq.get_queue(host.queue_name)], connection=django_rq.get_connection(host.queue_name)).work(
        burst=True
    )

    assert seen == [[]]
    task.refresh_from_db()
    assert task.status == "succeeded", task.log
    assert Task.objects.count() == 1  # no retry was queued
