"""Hand Task rows to RQ, all or nothing.

Rows are written in a transaction and the jobs sent only after it commits
(a worker must never pick up a job whose Task row it cannot see yet). If
Redis fails at that point the rows already exist, so the caller passes an
`undo` that removes them again: the user gets QueueUnavailable and the
database holds no half-submitted work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import django_rq
from django.db import connection, transaction
from django.utils.translation import gettext as _
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from labs.models import Task
from labs.services.errors import QueueUnavailable

JOB_FUNC = "labs.jobs.run_task"
# Fail fast when Redis is down instead of hanging the request.
REDIS_CONNECT_TIMEOUT = 3.0


def redis_connection(queue_name: str = "default") -> Redis:
    conn = django_rq.get_connection(queue_name)
    conn.connection_pool.connection_kwargs.setdefault("socket_connect_timeout", REDIS_CONNECT_TIMEOUT)
    conn.connection_pool.connection_kwargs.setdefault("socket_timeout", 10.0)
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


def _send(tasks: list[Task]) -> None:
    # Every queue lives on the same Redis (settings.RQ_QUEUES maps any name to
    # the default connection), so one MULTI/EXEC pipeline enqueues the whole
    # submission atomically: either every job is queued or none is.
    conn = redis_connection(tasks[0].host.queue_name)
    by_queue: dict[str, list[Task]] = {}
    for task in tasks:
        by_queue.setdefault(task.host.queue_name, []).append(task)
    with conn.pipeline(transaction=True) as pipe:
        for name, group in by_queue.items():
            queue = django_rq.get_queue(name, connection=conn)
            queue.enqueue_many(
                [
                    Queue.prepare_data(
                        JOB_FUNC,
                        args=(task.pk,),
                        job_id=task.rq_job_id,
                        description=f"{task.kind} {task.target}",
                        result_ttl=3600,
                        failure_ttl=7 * 24 * 3600,
                    )
                    for task in group
                ],
                pipeline=pipe,
            )
        pipe.execute()


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
