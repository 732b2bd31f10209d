"""Hand work to RQ: the one path by which guest, template and host jobs are queued.

Services name jobs by the keys of JOBS and never import job code, so the
web process and the admin load none of it. Task rows go all or nothing:
rows are written in a transaction and the jobs sent only after it commits
(a worker must never pick up a job whose Task row it cannot see yet). If
Redis fails at that point the rows already exist, so the caller passes an
`undo` that removes them again: the user gets QueueUnavailable and the
database holds no half-submitted work.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

import django_rq
from django.db import connection, transaction
from django.utils.translation import gettext as _
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job
from rq.queue import EnqueueData
from rq.serializers import JSONSerializer

from labs.models import Host, Task
from labs.services.errors import QueueUnavailable

# Jobs travel as JSON, never pickle: loading a pickle runs code, and Redis is
# shared with every dom0 (settings.RQ_QUEUES names the same serializer).
SERIALIZER = JSONSerializer
# Every RQ job function, by the name services use for it; a worker runs no other.
JOBS = {
    "guest": "labs.jobs.guest.run_task",
    "build_template": "labs.jobs.template.build_template_job",
    "build_golden": "labs.jobs.template.build_golden_job",
    "sync": "labs.jobs.host.sync_host",
    "health": "labs.jobs.host.health_check",
}
# Task kinds whose job is not the guest job, with how long it may run (None: RQ_DEFAULT_TIMEOUT).
TASK_JOBS: dict[str, tuple[str, int | None]] = {
    # The bootstrap step alone may take most of an hour on a slow mirror.
    "build_template": ("build_template", 2 * 3600),
    "build_golden": ("build_golden", 3600),
}
RESULT_TTL = 3600
FAILURE_TTL = 7 * 24 * 3600
# Fail fast when Redis is down instead of hanging the request.
REDIS_CONNECT_TIMEOUT = 3.0


# One client per Redis configuration and process. django_rq builds a new client,
# so a new pool and a new TCP (and TLS) handshake, on every call: the sync loop
# with 10 hosts spent a third of its tick connecting. redis-py's pools are
# thread-safe and start afresh in a forked child.
_clients: dict[tuple[tuple[str, str], ...], Redis] = {}


def redis_connection(queue_name: str = "default") -> Redis:
    key = tuple(sorted((k, repr(v)) for k, v in django_rq.settings.QUEUES[queue_name].items()))
    conn = _clients.get(key)
    if conn is None:
        conn = django_rq.get_connection(queue_name)
        conn.connection_pool.connection_kwargs.setdefault("socket_connect_timeout", REDIS_CONNECT_TIMEOUT)
        conn.connection_pool.connection_kwargs.setdefault("socket_timeout", 10.0)
        conn = _clients.setdefault(key, conn)
    return conn


def _unavailable(error: Exception) -> QueueUnavailable:
    return QueueUnavailable(
        _("The job queue (Redis) is not reachable, so nothing was started. Try again in a minute. (%(error)s)")
        % {"error": error}
    )


def ping(queue_names: Iterable[str] = ("default",)) -> None:
    """Raise QueueUnavailable unless Redis answers; called inside the transaction, before commit."""
    try:
        for name in set(queue_names) or {"default"}:
            redis_connection(name).ping()
    except RedisError as e:
        raise _unavailable(e) from None


def new_job_id(host: Host) -> str:
    """A fresh RQ job id for work on `host`.

    Ids carry the host's queue, so a dom0's Redis user can be limited to its
    own jobs' keys (labs.services.credentials).
    """
    return f"{job_id_prefix(host.queue_name)}{uuid.uuid4().hex}"


def job_id_prefix(queue_name: str) -> str:
    # In hex: rq takes only [A-Za-z0-9_-] in an id, queue names may hold '.', and the
    # '-' after it keeps "dom0-a" from matching the jobs of "dom0-ab" in an ACL pattern.
    return f"xenpanel-q{queue_name.encode().hex()}-"


def job(
    name: str,
    arg: int,
    job_id: str,
    description: str,
    timeout: int | None = None,
    ttl: int | None = None,
    result_ttl: int = RESULT_TTL,
    failure_ttl: int = FAILURE_TTL,
) -> EnqueueData:
    """One job to send: JOBS[name](arg)."""
    return Queue.prepare_data(
        JOBS[name],
        args=(arg,),
        job_id=job_id,
        description=description,
        timeout=timeout,
        ttl=ttl,
        result_ttl=result_ttl,
        failure_ttl=failure_ttl,
    )


def task_job(task: Task) -> EnqueueData:
    """The job that carries out a Task row."""
    name, timeout = TASK_JOBS.get(task.kind, ("guest", None))
    return job(name, task.pk, task.rq_job_id, f"{task.kind} {task.target}", timeout=timeout)


def send(jobs: dict[str, list[EnqueueData]]) -> list[Job]:
    """Queue jobs, by queue name, all or none; RedisError when Redis fails."""
    # Every queue lives on the same Redis (settings.RQ_QUEUES maps any name to
    # the default connection), so one MULTI/EXEC pipeline enqueues the whole
    # submission atomically: either every job is queued or none is.
    conn = redis_connection(next(iter(jobs)))
    sent: list[Job] = []
    with conn.pipeline(transaction=True) as pipe:
        for name, group in jobs.items():
            sent += django_rq.get_queue(name, connection=conn).enqueue_many(group, pipeline=pipe)
        pipe.execute()
    return sent


def remove(task: Task) -> None:
    """Take a task's job off its queue (it has not started); RedisError when Redis fails."""
    if task.host is None:  # its host is gone: there is no queue to take it off
        return
    conn = redis_connection(task.host.queue_name)
    django_rq.get_queue(task.host.queue_name, connection=conn).remove(task.rq_job_id)


def _send(tasks: list[Task]) -> None:
    by_queue: dict[str, list[EnqueueData]] = {}
    for task in tasks:
        assert task.host is not None  # queued work always names its host
        by_queue.setdefault(task.host.queue_name, []).append(task_job(task))
    send(by_queue)


def enqueue_after_commit(tasks: list[Task], undo: Callable[[], None]) -> None:
    """Send the tasks' jobs once the current transaction commits; on failure undo and raise.

    Outside any transaction (the normal case: services open and close their
    own) this runs at once and a QueueUnavailable reaches the caller. Inside
    an outer transaction it runs at that transaction's commit.
    """
    if not tasks:
        return

    def send() -> None:
        try:
            _send(tasks)
        except RedisError as e:
            with transaction.atomic():
                undo()
            raise _unavailable(e) from None

    if connection.in_atomic_block:
        transaction.on_commit(send)
    else:
        send()
