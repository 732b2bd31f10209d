"""A job's bookkeeping: the Task row's claim, its steps as they happen, and its outcome.

Every job (guest actions, template builds) claims its Task with `claim`,
records its steps through a `Recorder` and ends with `finish`, so the
browser follows any job the same way and a crash shows where it stopped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import close_old_connections, connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from labs.dom0.base import Dom0Host
from labs.dom0.errors import Dom0Error
from labs.models import AuditEvent, Guest, Task

log = logging.getLogger(__name__)


class StepFailed(Exception):
    """A Dom0Error wrapped with the step it happened in."""

    def __init__(self, step: str, error: Dom0Error) -> None:
        super().__init__(f"{step}: {error}")
        self.step = step
        self.error = error


class Recorder:
    """Writes a Task's progress to the database while its job runs."""

    def __init__(self, task: Task, host: Dom0Host, volume_group: str) -> None:
        self.task = task
        self.host = host
        self.host_vg = volume_group
        self._lines: list[str] = [task.log] if task.log else []

    def log(self, text: str) -> None:
        stamp = timezone.localtime().strftime("%H:%M:%S.%f")[:-3]
        for line in text.splitlines() or [""]:
            self._lines.append(f"{stamp} {line}")
        self.task.log = "\n".join(self._lines)

    def save(self, *fields: str) -> None:
        """Write the progress so far: the log, dom0 seconds and `fields` of the Task."""
        _write_progress(self.task, ["log", "dom0_seconds", *fields])

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """One recorded step: its name is saved when it starts, so a crash shows where it stopped."""
        self.task.step = name
        self.log(f"step {name}")
        self.save("step", "steps_done")
        try:
            yield
        except Dom0Error as e:
            raise StepFailed(name, e) from e
        self.task.steps_done += 1

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A dom0 operation, timed into Task.dom0_seconds."""
        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            self.task.dom0_seconds += time.monotonic() - started


def _write_progress(task: Task, fields: list[str]) -> None:
    """Write the task's progress fields: through the worker's ProgressWriter when it runs, else here."""
    values = {f: getattr(task, f) for f in fields}
    # Inside an outer transaction (a test's) another connection would not see the row.
    if connection.in_atomic_block or not PROGRESS.submit(task.pk, values):
        Task.objects.filter(pk=task.pk).update(**values)


class ProgressWriter:
    """Writes jobs' progress rows from a side thread with its own database connection.

    A job saves its progress at every step, so the browser follows it and a
    crash shows where it stopped. Each save was a round trip to the server
    and a commit waiting for the WAL flush, in the job's path: 3-10 ms each
    on a busy machine, or after a long dom0 step when the server had gone
    idle; most of a provisioning job's bookkeeping. With the writer running
    the job hands the values over and goes on with the host while this
    thread writes them, in order (later values of a task replace earlier
    ones not yet written). Its session commits without waiting for the flush
    (synchronous_commit=off): such commits are atomic, visible at once and
    kept if the worker dies; only a crash of the database server itself may
    lose the last fraction of a second of them. The outcome of a job is
    committed synchronously, in the job's own connection, and `finish`
    first waits for the writer (`flush`), so a late progress write never
    lands after the outcome and the outcome's flush covers them all. A write that
    fails is raised by `flush`; `finish` logs it and saves every progress
    field with the outcome anyway.

    HostWorker starts it on PostgreSQL (SQLite lives in the worker's own
    process: a write there costs no round trip) and stops it when the worker
    ends; elsewhere (rq's forking worker, a job called directly) and inside
    an outer transaction, which another connection could not see, jobs write
    their progress themselves.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: dict[int, dict[str, Any]] = {}
        self._writing = False
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = False

    def _alive(self) -> bool:
        # A forked process has the parent's object but not its thread.
        return self._thread is not None and self._pid == os.getpid() and self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._alive() and not self._stopping

    def start(self) -> None:
        with self._cond:
            self._stopping = False
            if self._alive():
                return  # still running, or still writing what it had when stopped: keep that one thread
            self._pending, self._writing, self._error = {}, False, None
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="progress-writer", daemon=True)
            self._thread.start()

    def submit(self, task_id: int, values: dict[str, Any]) -> bool:
        """Queue the values for the task's row; False (nothing queued) when the writer is not running."""
        with self._cond:
            if not self.running:
                return False
            self._pending.setdefault(task_id, {}).update(values)
            self._cond.notify_all()
            return True

    def flush(self) -> None:
        """Wait until every submitted value is written; raise what the writer failed with, if anything."""
        with self._cond:
            while (self._pending or self._writing) and self._alive():
                self._cond.wait(1.0)
            error, self._error = self._error, None
        if error is not None:
            raise error

    def stop(self) -> None:
        """Write what is left, then end the thread and close its connection."""
        with self._cond:
            if not self._alive():
                return
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:  # _alive() said so; this tells mypy
            thread.join()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._stopping:
                        self._cond.wait()
                    if not self._pending:
                        return
                    batch, self._pending, self._writing = self._pending, {}, True
                error = None
                try:
                    close_old_connections()
                    _commit_async()
                    for task_id, values in batch.items():
                        Task.objects.filter(pk=task_id).update(**values)
                except Exception as e:  # reported to the job by flush()
                    error = e
                with self._cond:
                    self._writing = False
                    self._error = self._error or error
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
            connection.close()


PROGRESS = ProgressWriter()
# This process's PostgreSQL sessions already switched to asynchronous commits.
_ASYNC_SESSIONS: weakref.WeakSet = weakref.WeakSet()


def _commit_async() -> None:
    """Let this thread's PostgreSQL session commit without waiting for the WAL flush (once per connection)."""
    if connection.vendor != "postgresql":
        return
    connection.ensure_connection()
    if connection.connection not in _ASYNC_SESSIONS:
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")
        _ASYNC_SESSIONS.add(connection.connection)


def claim(task: Task, then: Callable[[], None] | None = None) -> bool:
    """Mark the task running in one commit, with `then` run in the same transaction; False: nothing to do.

    A task found running already is a redelivery after its worker died: the
    job runs again (jobs are idempotent). One already finished, or marked
    lost, is never redone.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # No wait for the WAL flush (3-5 ms): were this commit lost with a
            # crash of the database server, the task would read queued instead
            # of running, which lost-work detection treats alike, and the
            # job's connection would be gone with it. The outcome waits.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        now = timezone.now()
        claimed = Task.objects.filter(pk=task.pk, status=Task.Status.QUEUED).update(
            status=Task.Status.RUNNING, started_at=now
        )
        if not claimed and task.status != Task.Status.RUNNING:
            return False
        if claimed:
            task.started_at = now
        task.status = Task.Status.RUNNING
        if then is not None:
            then()
    return True


def finish(task: Task, ok: bool, message: str = "", guest: Guest | None = None, **guest_fields: Any) -> None:
    """Record the outcome on the Task, its AuditEvent and the Guest in one transaction (one commit)."""
    # Progress still on its way first: it must not land after the outcome (and the job is not over before).
    try:
        PROGRESS.flush()
    except Exception:
        # A progress row the writer could not save; the outcome below rewrites all of its fields.
        log.warning("progress of task %s was not saved", task.pk, exc_info=True)
    task.status = Task.Status.SUCCEEDED if ok else Task.Status.FAILED
    task.error = "" if ok else message
    task.finished_at = timezone.now()
    with transaction.atomic():
        task.save(update_fields=["status", "error", "finished_at", "log", "dom0_seconds", "step", "steps_done"])
        # A success with nothing to add keeps what the request said ("to 512 MiB", a save point's label, why
        # the panel started a VM): the audit trail is read after the fact.
        said = {"message": message[:2000]} if message or not ok else {}
        AuditEvent.objects.filter(task=task).update(
            result=AuditEvent.Result.SUCCEEDED if ok else AuditEvent.Result.FAILED, **said
        )
        if guest is not None:
            # Only clear busy_with if it is still ours: a lab teardown may
            # have queued the next action meanwhile.
            Guest.objects.filter(pk=guest.pk).update(
                busy_with=Case(When(busy_with=task.kind, then=Value("")), default=F("busy_with")), **guest_fields
            )
