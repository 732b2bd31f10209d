"""Several jobs at once on one host: rq's WorkerPool of HostWorkers, as many as the Host row asks for.

`manage.py host_worker <queue>` runs it (the dom0's systemd unit, `make run`).
Each worker is a process of its own, forked by the pool, with HostWorker's
own heartbeat: a worker killed in the middle of a job leaves that job to the
sync loop's lost-work check and its one automatic retry, exactly as a lone
worker did, and the pool starts a new worker within a second. Jobs of one
guest never overlap (labs.jobs.guest takes the guest's lock); jobs of
different guests need no lock of ours (labs.dom0.locks says why).

The number comes from Host.jobs_at_a_time and is read again every
RECHECK_SECONDS, so the admin's change applies without a restart: new
workers are started, or surplus ones get a warm shutdown (they finish the
job they are running first).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.db import DatabaseError, connections
from django.db.models import Max
from redis import Redis
from rq.worker_pool import WorkerPool

from labs.jobs.worker import HostWorker, PanelJob
from labs.models import Host
from labs.services.queueing import SERIALIZER

log = logging.getLogger(__name__)
RECHECK_SECONDS = 5.0


def jobs_at_a_time(queues: Iterable[str]) -> int | None:
    """The most jobs at a time any host on these queues allows; its default when no host is on them, None when
    the database cannot be read (keep what runs)."""
    try:
        n = Host.objects.filter(queue_name__in=list(queues)).aggregate(n=Max("jobs_at_a_time"))["n"]
    except DatabaseError as e:
        log.warning("cannot read how many jobs to run at a time (%s); keeping the current number", e)
        return None
    finally:
        # The pool forks its workers: none may inherit this process's connection (a test's transaction keeps its own).
        if not connections["default"].in_atomic_block:
            connections.close_all()
    return n or Host._meta.get_field("jobs_at_a_time").get_default()


class PooledHostWorker(HostWorker):
    """A HostWorker without rq's scheduler process (rq's pool starts every worker with one).

    The panel schedules no job for later (no enqueue_at/enqueue_in, no retry
    intervals), and the scheduler a worker forks outlives it when the worker
    is killed, holding the scheduler lock beside the worker the pool starts next.
    """

    def work(self, *args: Any, **kwargs: Any) -> bool:
        kwargs["with_scheduler"] = False
        return super().work(*args, **kwargs)


class HostWorkerPool(WorkerPool):
    """rq's WorkerPool, sized by `wanted()` (None: unknown, keep the size) when it starts and every RECHECK_SECONDS."""

    def __init__(self, queues: list[str], connection: Redis, wanted: Callable[[], int | None]) -> None:
        super().__init__(
            queues,
            connection,
            num_workers=wanted() or 1,
            worker_class=PooledHostWorker,
            serializer=SERIALIZER,
            job_class=PanelJob,
        )
        self._wanted = wanted
        self._read_at = time.monotonic()
        self._stopping: set[str] = set()

    def check_workers(self, respawn: bool = True) -> None:
        now = time.monotonic()
        if respawn and now - self._read_at >= RECHECK_SECONDS:
            self._read_at = now
            wanted = self._wanted()
            if wanted is not None and wanted != self.num_workers:
                log.info("jobs at a time: %d (was %d)", wanted, self.num_workers)
                self.num_workers = wanted
        self.reap_workers()
        self._stopping &= set(self.worker_dict)
        if respawn and self.status != self.Status.STOPPED:
            self._stop_surplus()
        super().check_workers(respawn)

    def _stop_surplus(self) -> None:
        """Warm shutdown for the workers over the number: each ends its running job first."""
        running = [name for name in self.worker_dict if name not in self._stopping]
        for name in running[self.num_workers :]:
            self._stopping.add(name)
            self.stop_worker(self.worker_dict[name], signal.SIGINT)
