"""labs.jobs.progress.ProgressWriter: job progress written from a side thread, in order, flushed before the outcome."""

from __future__ import annotations

import django_rq
import pytest
from django.db import IntegrityError, connection, transaction

from labs.jobs import HostWorker
from labs.jobs import progress as jobs
from labs.jobs.progress import ProgressWriter
from labs.models import Task
from labs.services import create_lab_batch

from .helpers import roster

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def writer():
    w = ProgressWriter()
    w.start()
    yield w
    w.stop()


@pytest.fixture
def task(ivy, alice, host, template, pool, sim) -> Task:
    create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=256, slug="net")
    return Task.objects.get()


def test_later_values_win_and_flush_waits_until_they_are_in_the_row(writer, task):
    assert writer.running
    assert writer.submit(task.pk, {"step": "volumes", "steps_done": 0, "log": "a"})
    assert writer.submit(task.pk, {"step": "clone", "steps_done": 1, "log": "a\nb"})
    assert writer.submit(task.pk, {"dom0_seconds": 1.5})
    writer.flush()
    task.refresh_from_db()
    assert (task.step, task.steps_done, task.log, task.dom0_seconds) == ("clone", 1, "a\nb", 1.5)


def test_a_failed_write_is_raised_once_by_flush_and_the_writer_goes_on(writer, task):
    # steps_done is a PositiveSmallIntegerField: the database's CHECK refuses -1.
    assert writer.submit(task.pk, {"steps_done": -1})
    with pytest.raises(IntegrityError):
        writer.flush()
    writer.flush()  # reported once
    assert writer.running
    assert writer.submit(task.pk, {"step": "config"})
    writer.flush()
    task.refresh_from_db()
    assert task.step == "config"


def test_stop_writes_what_is_left_and_later_submissions_are_refused(task):
    w = ProgressWriter()
    assert not w.running and not w.submit(task.pk, {"step": "x"})
    w.start()
    assert w.submit(task.pk, {"step": "create", "steps_done": 5})
    w.stop()
    assert not w.running
    assert not w.submit(task.pk, {"step": "late"})
    task.refresh_from_db()
    assert (task.step, task.steps_done) == ("create", 5)


def test_jobs_write_themselves_without_a_writer_or_inside_a_transaction(task, monkeypatch):
    w = ProgressWriter()
    monkeypatch.setattr(jobs, "PROGRESS", w)
    task.step = "volumes"
    jobs._write_progress(task, ["step"])  # no writer running: written here, at once
    assert Task.objects.get(pk=task.pk).step == "volumes"
    w.start()
    try:
        with transaction.atomic():
            # Another connection could not see rows of this open transaction: written here too.
            task.step = "clone"
            jobs._write_progress(task, ["step"])
            assert Task.objects.get(pk=task.pk).step == "clone"
            assert not w._pending
        task.step = "customize"
        jobs._write_progress(task, ["step"])  # through the writer
        w.flush()
        assert Task.objects.get(pk=task.pk).step == "customize"
    finally:
        w.stop()


def test_host_worker_runs_the_writer_on_postgresql_only_and_stops_it(task, host, monkeypatch):
    queued = []
    submit = jobs.PROGRESS.submit

    def counting_submit(task_id, values):
        ok = submit(task_id, values)
        queued.append(ok)
        return ok

    monkeypatch.setattr(jobs.PROGRESS, "submit", counting_submit)
    worker = HostWorker([django_rq.get_queue(host.queue_name)], connection=django_rq.get_connection(host.queue_name))
    worker.work(burst=True)
    # Every progress save went through the writer on PostgreSQL; on SQLite the writer never ran.
    assert len(queued) >= 5
    assert set(queued) == ({True} if connection.vendor == "postgresql" else {False})
    task.refresh_from_db()
    assert task.status == "succeeded", task.log
    assert (task.step, task.steps_done, task.steps_total) == ("create", 5, 5)
    assert "step customize" in task.log and task.log.endswith("done")
    # The worker's end stopped the writer (and closed its connection).
    assert not jobs.PROGRESS.running
    if connection.vendor == "postgresql":
        # The job's own session still commits synchronously: claim and outcome are durable.
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="synchronous_commit is a PostgreSQL setting")
def test_the_writer_session_commits_without_waiting_for_the_flush(db):
    try:
        jobs._commit_async()
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "off"
    finally:
        connection.close()  # never hand this session to anything else


def test_the_outcome_is_recorded_even_when_a_progress_write_failed(task, monkeypatch, caplog):
    w = ProgressWriter()
    monkeypatch.setattr(jobs, "PROGRESS", w)
    w.start()
    try:
        assert w.submit(task.pk, {"steps_done": -1})  # refused by the database's CHECK
        task.status, task.step, task.steps_done, task.log = "running", "create", 5, "all steps"
        jobs.finish(task, True)
    finally:
        w.stop()
    task.refresh_from_db()
    assert (task.status, task.step, task.steps_done, task.log) == ("succeeded", "create", 5, "all steps")
    assert f"progress of task {task.pk} was not saved" in caplog.text
