"""What the sync loop does besides syncing: health checks, lost work, lab expiry, unfinished teardowns.

Called by `manage.py sync_loop` every tick; each function is safe to run
from several processes at once (claims are conditional UPDATEs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from rq.exceptions import NoSuchJobError
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from labs.models import AuditEvent, Guest, Host, Lab, Task
from labs.services import queueing
from labs.services.actions import (
    close_lab_if_empty,
    queue_for_guests,
    restart_failed_reboots,
    retry_lost_task,
    teardown_expired_lab,
)
from labs.services.class_hours import apply_class_hours
from labs.services.registry import breaks_guest

log = logging.getLogger(__name__)
# A task younger than this may still be on its way to Redis (the enqueue runs
# just after the commit), so a missing job means nothing yet.
LOST_GRACE_SECONDS = 30
SYNC_JOB_TIMEOUT = 60
SYNC_JOB_TTL = 30  # a sync nobody picked up within this is stale: drop it
HEALTH_JOB_TIMEOUT = 120


# The sync loop queues a state sync on every host every few seconds, and the
# host's worker stamps Host.last_seen when it runs one: a host silent this
# long has no live worker (or the sync loop or Redis is down), and its jobs wait.
SILENT_AFTER_SECONDS = 30


def silent_hosts(hosts: Iterable[Host], now: datetime | None = None) -> list[Host]:
    """The hosts no worker has answered for lately (never, or not for SILENT_AFTER_SECONDS), by name."""
    cutoff = (now or timezone.now()) - timedelta(seconds=SILENT_AFTER_SECONDS)
    return sorted({h for h in hosts if h.last_seen is None or h.last_seen < cutoff}, key=lambda h: h.name)


def _lost_reason(status: str | None) -> str:
    if status is None:
        return _("The job disappeared from the queue (Redis was flushed or restarted).")
    return _(
        "The worker running this job stopped (killed or crashed) before it finished; what it left on the host is"
        " reused or cleaned up by a retry."
    )


def fail_lost_task(task: Task, reason: str) -> bool:
    """Mark an unfinished task failed and release its guest; False if it finished meanwhile."""
    with transaction.atomic():
        claimed = Task.objects.filter(pk=task.pk, status__in=[Task.Status.QUEUED, Task.Status.RUNNING]).update(
            status=Task.Status.FAILED, error=reason, finished_at=timezone.now()
        )
        if not claimed:
            return False
        message = f"{task.step or task.kind}: {reason}"
        if task.guest_id:
            if breaks_guest(task.kind):
                Guest.objects.filter(pk=task.guest_id).update(
                    status=Guest.Status.FAILED, busy_with="", last_error=message
                )
            else:
                Guest.objects.filter(pk=task.guest_id, busy_with=task.kind).update(busy_with="")
                Guest.objects.filter(pk=task.guest_id).update(last_error=message)
        AuditEvent.objects.filter(task=task).update(result=AuditEvent.Result.FAILED, message=message)
    log.warning("task %s (%s %s) lost: %s", task.pk, task.kind, task.target, reason)
    return True


def detect_lost_work(now: float | None = None) -> list[Task]:
    """Fail tasks whose RQ job is gone, failed or abandoned by a dead worker, and retry each once.

    RQ notices a dead worker when its job's heartbeat in the started
    registry expires (HostWorker's: 15 s, so within one or two sync-loop
    ticks after that); `now` lets a caller (or a test) judge as of a later
    moment. A lost guest job is queued again once, automatically (jobs are
    idempotent); a retry that is lost too stays failed for a person to see.
    """
    ts = time.time() if now is None else now
    conn = queueing.redis_connection()
    # A running task's job was dequeued by a worker, so it is in Redis: no grace for it.
    young = datetime.fromtimestamp(ts - LOST_GRACE_SECONDS, tz=UTC)
    open_tasks = list(
        Task.objects.filter(
            Q(status=Task.Status.RUNNING) | Q(status=Task.Status.QUEUED, created_at__lt=young)
        ).select_related("host")
    )
    for name in {t.host.queue_name for t in open_tasks if t.host}:
        # Moves jobs of dead workers to the failed registry (status FAILED).
        StartedJobRegistry(name, connection=conn, serializer=queueing.SERIALIZER).cleanup(timestamp=ts)
    lost = []
    for task in open_tasks:
        try:
            status = Job.fetch(task.rq_job_id, connection=conn, serializer=queueing.SERIALIZER).get_status()
        except NoSuchJobError:
            status = None
        if status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
            continue
        if fail_lost_task(task, _lost_reason(status)):
            lost.append(task)
            retry_lost_task(task)
    return lost


def expire_labs(now: datetime | None = None) -> list[Lab]:
    """Start the teardown of every active lab whose expiry has passed."""
    now = now or timezone.now()
    expired = list(Lab.objects.filter(status=Lab.Status.ACTIVE, expires_at__lte=now))
    for lab in expired:
        teardown_expired_lab(lab)
        log.info("lab %s expired; teardown started", lab.slug)
    return expired


def continue_teardowns() -> int:
    """Tear down guests of tearing-down labs that were busy when the teardown began; close empty labs."""
    queued = 0
    for lab in Lab.objects.filter(status=Lab.Status.TEARING_DOWN):
        waiting = list(
            lab.guests.filter(busy_with="").exclude(status__in=[Guest.Status.TEARING_DOWN, Guest.Status.FAILED])
        )
        if waiting:
            queued += len(queue_for_guests(None, lab, "teardown", waiting))
        else:
            close_lab_if_empty(lab.pk)
    return queued


def _delete_job(job: Job) -> None:
    """rq's Job.delete(), also when one of the job's execution records is half written.

    rq reads every execution before it deletes them, and one holding only
    `last_heartbeat` (a heartbeat that raced the job's end, or a dom0, whose
    Redis user writes its own queue's keys) raised KeyError there: the
    host's health check could then never be queued again.
    """
    try:
        job.delete()
    except (KeyError, ValueError):
        registry = ExecutionRegistry(job.id, job.connection)
        ids = [i.decode() for i in cast(list[bytes], job.connection.zrange(registry.key, 0, -1))]
        keys = [Execution(id=i, job_id=job.id, connection=job.connection).key for i in ids]
        job.connection.delete(registry.key, *keys)
        log.warning("job %s had %d broken execution records; deleted them", job.id, len(ids))
        job.delete()


def _host_job(
    host: Host, kind: str, timeout: int, ttl: int | None, queued_after: datetime | None = None
) -> Job | None:
    """Queue the `kind` job (queueing.JOBS) for the host unless the same job is already waiting or running.

    With `queued_after`, a job of the same kind queued after that moment also
    counts, whatever became of it: a check that keeps failing is not queued
    again on every tick.
    """
    conn = queueing.redis_connection(host.queue_name)
    job_id = f"{queueing.job_id_prefix(host.queue_name)}{kind}"
    try:
        old = Job.fetch(job_id, connection=conn, serializer=queueing.SERIALIZER)
        if old.get_status() in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED):
            return None
        queued_at = old.enqueued_at
        if queued_after is not None and queued_at is not None:
            # rq keeps UTC, without a zone in older versions.
            if (queued_at if queued_at.tzinfo else queued_at.replace(tzinfo=UTC)) > queued_after:
                return None
        _delete_job(old)
    except NoSuchJobError:
        pass
    job = queueing.job(
        kind, host.pk, job_id, f"{kind} {host.name}", timeout=timeout, ttl=ttl, result_ttl=60, failure_ttl=3600
    )
    return queueing.send({host.queue_name: [job]})[0]


def enqueue_sync(host: Host) -> Job | None:
    return _host_job(host, "sync", SYNC_JOB_TIMEOUT, SYNC_JOB_TTL)


def enqueue_health_check(host: Host, queued_after: datetime | None = None) -> Job | None:
    """Queue a health check on the host's worker (admin button, `manage.py check_hosts`, the sync loop)."""
    return _host_job(host, "health", HEALTH_JOB_TIMEOUT, None, queued_after)


def enqueue_due_health_checks(now: datetime | None = None) -> int:
    """Queue a health check on every host not checked for XENPANEL_HEALTH_INTERVAL seconds.

    The sync's `xl list` says which guests run, but not that the volume group
    or a thin pool is filling up or that the bridge went away: without a
    periodic check nobody learns that until provisioning fails.
    """
    interval = settings.XENPANEL_HEALTH_INTERVAL
    if not interval:
        return 0
    cutoff = (now or timezone.now()) - timedelta(seconds=interval)
    due = Host.objects.filter(Q(health_checked_at__isnull=True) | Q(health_checked_at__lt=cutoff))
    return sum(1 for host in due if enqueue_health_check(host, queued_after=cutoff) is not None)


def tick(now: datetime | None = None) -> dict:
    """One pass of the sync loop; each part runs even when another fails."""
    summary: dict[str, Any] = {
        "synced": 0,
        "health": 0,
        "lost": 0,
        "expired": 0,
        "teardowns": 0,
        "restarted": 0,
        "class_hours": 0,
        "errors": [],
    }
    steps = (
        ("synced", lambda: sum(1 for h in Host.objects.all() if enqueue_sync(h) is not None)),
        ("health", lambda: enqueue_due_health_checks(now)),
        ("lost", lambda: len(detect_lost_work())),
        ("expired", lambda: len(expire_labs(now))),
        ("teardowns", continue_teardowns),
        ("restarted", restart_failed_reboots),
        ("class_hours", lambda: apply_class_hours(now)),
    )
    for key, fn in steps:
        try:
            summary[key] = fn()
        except Exception as e:  # keep looping: Redis or the database may come back
            log.exception("sync loop: %s failed", key)
            summary["errors"].append(f"{key}: {e}")
    return summary


__all__ = [
    "continue_teardowns",
    "detect_lost_work",
    "enqueue_due_health_checks",
    "enqueue_health_check",
    "enqueue_sync",
    "expire_labs",
    "fail_lost_task",
    "tick",
]
