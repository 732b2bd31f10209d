"""The RQ worker class every dom0 runs: `manage.py rqworker --worker-class labs.jobs.HostWorker <queue>`."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import DatabaseError, close_old_connections, connection
from rq.job import Job
from rq.worker import SimpleWorker

from labs.jobs.progress import PROGRESS
from labs.services.queueing import JOBS, SERIALIZER

log = logging.getLogger(__name__)
# How often, at most, HostWorker refreshes its own key in Redis between jobs.
WORKER_HEARTBEAT_SECONDS = 1.0
# How often a running job's heartbeat is pushed forward, and how long past it the job counts as alive.
JOB_BEAT_SECONDS = 5
JOB_BEAT_MARGIN_SECONDS = 10
# How long a job waits for PostgreSQL before it runs anyway (and fails, to be retried by the sync loop).
DATABASE_WAIT_SECONDS = 300


class RefusedJob(Exception):
    """A job this worker does not run: not one of ours, or not called as ours are."""


class PanelJob(Job):
    """A job that may name only the panel's own job functions, called with whole numbers (row ids).

    Whoever can write to Redis can put any job on a queue; with pickle that
    ran code while the job loaded. Jobs are JSON now (SERIALIZER), and this
    check stops one that names another function, such as `os.system`: it
    fails without running, with a log line.
    """

    ALLOWED = frozenset(JOBS.values())

    @property
    def func(self) -> Any:
        name = self.func_name  # a payload that is not our JSON fails here (DeserializationError)
        if name not in self.ALLOWED or self.instance is not None:
            log.error("refused job %s: %r is not one of the panel's jobs", self.id, name)
            raise RefusedJob(f"{name!r} is not one of the panel's jobs")
        if self.kwargs or not all(type(a) is int for a in self.args):
            log.error("refused job %s: %s called with %r %r", self.id, name, self.args, self.kwargs)
            raise RefusedJob(f"{name} takes one row id")
        return super().func


def wait_for_database(limit: float = DATABASE_WAIT_SECONDS) -> None:
    """Hold a dequeued job until PostgreSQL answers.

    Jobs taken while the server restarted failed at their first query, each
    then found lost and retried: in the restart drill, all four of a batch.
    The hold comes before rq starts the job's execution: the job is still
    "queued" in Redis, so the sync loop does not take it for lost however
    long the hold lasts, and there is no execution to beat for yet.
    """
    delay, deadline = 0.5, time.monotonic() + limit
    while True:
        try:
            connection.ensure_connection()
            if connection.is_usable():
                return
        except DatabaseError as e:
            error: object = e
        else:
            error = "the connection is not usable"
        connection.close()
        if time.monotonic() >= deadline:
            return
        log.warning("the database is not answering (%s); the job waits %.1f s", error, delay)
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


class HostWorker(SimpleWorker):
    """The RQ worker for a dom0's queue: `manage.py rqworker --worker-class labs.jobs.HostWorker <queue>`.

    It runs each job in its own process instead of forking a work-horse per
    job (rq's default): on a small dom0 the fork, copy-on-write faults and
    new database connection cost several times the job's own bookkeeping.
    A plain SimpleWorker, though, registers a running job for its whole
    timeout (30 min), so a killed worker's job would look alive that long;
    this one keeps a short heartbeat (every 5 s, alive for 15 s) from a side thread, so
    the sync loop notices lost work just as fast as with forking workers.
    The thread lives as long as the worker (starting one per job cost more
    than a small job's own bookkeeping on a loaded machine) and beats for
    whichever job is running. Database connections are checked before and
    after each job, as Django does around a request.
    """

    job_class = PanelJob

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # JSON whatever the command line says (rqworker defaults to pickle): data never becomes code.
        kwargs["serializer"] = SERIALIZER
        kwargs["job_class"] = PanelJob
        kwargs.setdefault("job_monitoring_interval", JOB_BEAT_SECONDS)
        super().__init__(*args, **kwargs)
        # The running job, read by the heartbeat thread; the lock makes a beat
        # in flight finish before its job counts as over, so no beat re-registers
        # a job that has already left the started registry.
        self._beat_job = None
        self._beat_lock = threading.Lock()
        self._beat_stop = threading.Event()
        self._beater: threading.Thread | None = None
        self._worker_beat_at = float("-inf")

    def run_maintenance_tasks(self) -> None:
        """rq's, without its sweep of the job-group registry: the panel uses no groups, and a dom0's
        Redis user reaches only its own queue's keys (labs.services.credentials)."""
        if (
            self.last_cleaned_at
            and self.scheduler
            and not (self.scheduler._process and self.scheduler._process.is_alive())
        ):
            self.scheduler.acquire_locks(auto_start=True)
        self.clean_registries()

    def get_heartbeat_ttl(self, job) -> int:
        # A killed worker's job drops out of the started registry this long after its last beat,
        # and the sync loop's next tick fails it and queues the retry: well within 30 s.
        return int(self.job_monitoring_interval) + JOB_BEAT_MARGIN_SECONDS

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        """Keep the worker's own key alive: at most once a second, in one round trip.

        rq refreshes it around every job (before and after the dequeue, after
        the job; an HSET and an EXPIRE each time) although the key lives
        worker_ttl + 60 s (8 minutes); for a batch of short jobs that was six
        of a job's twenty-odd Redis round trips. Calls with a timeout or a
        pipeline (the job heartbeats) go through unchanged, and a job
        heartbeat, which shortens the key's life, makes the next plain one
        due at once.
        """
        if timeout is not None or pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        at = time.monotonic()
        if at - self._worker_beat_at < WORKER_HEARTBEAT_SECONDS:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(None, pipe)
            pipe.execute()
        self._worker_beat_at = at

    def set_state(self, state: str, pipeline=None) -> None:
        """rq writes "idle" twice between jobs (after one, before the next dequeue): one round trip is enough."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def maintain_heartbeats(self, job) -> None:
        try:
            super().maintain_heartbeats(job)
        finally:
            # That cut the worker key's life to job_monitoring_interval + 60 s: the next plain refresh must not wait.
            self._worker_beat_at = float("-inf")

    def cleanup_execution(self, job, pipeline) -> None:
        """rq queues the execution's deletion here and runs it after this returns: a beat still in flight
        would then write its HSET after the delete and leave a hash with only last_heartbeat, which
        breaks rq's Job.delete() (KeyError 'created_at', seen in CI from check_hosts). So a beat in
        flight finishes first, and none starts for this job afterwards."""
        with self._beat_lock:
            self._beat_job = None
            super().cleanup_execution(job, pipeline)

    def _beat(self) -> None:
        while not self._beat_stop.wait(self.job_monitoring_interval):
            self._beat_once()

    def _beat_once(self) -> None:
        with self._beat_lock:
            job = self._beat_job
            # rq's execution of the job begins after execute_job() is entered and ends before it returns;
            # outside it there is no execution to beat for (seen on the testbed: AttributeError every beat).
            if job is None or self.execution is None:
                return
            try:
                self.maintain_heartbeats(job)
            except Exception:  # the next beat retries; a missed one only shortens the margin
                log.warning("heartbeat for job %s failed", job.id, exc_info=True)

    def execute_job(self, job, queue) -> None:
        close_old_connections()
        with self._beat_lock:
            self._beat_job = job
        if self._beater is None:
            self._beater = threading.Thread(target=self._beat, name=f"heartbeat-{self.name}", daemon=True)
            self._beater.start()
        if connection.vendor == "postgresql":
            wait_for_database()
            PROGRESS.start()
        try:
            super().execute_job(job, queue)
        finally:
            with self._beat_lock:
                self._beat_job = None
            close_old_connections()

    def teardown(self) -> None:
        PROGRESS.stop()
        self._beat_stop.set()
        if self._beater is not None:
            self._beater.join()
        super().teardown()
