"""Tearing a lab down while it provisions: the jobs no worker has started are canceled and never run."""

from __future__ import annotations

import pytest

from labs.models import AuditEvent, Guest, Lab, Task
from labs.services import create_lab_batch, lab_action
from labs.services.upkeep import tick

from .helpers import roster, work

pytestmark = pytest.mark.django_db(transaction=True)


def test_queued_provisioning_is_canceled_not_built_then_destroyed(ivy, host, template, pool, sim, redis_flushed):
    lab = create_lab_batch(ivy, template, pool, roster("ana", "ben", "cid"), memory_mb=256, slug="net").lab
    assert Task.objects.filter(kind="provision", status="queued").count() == 3
    teardowns = lab_action(ivy, lab, "teardown")
    assert len(teardowns) == 3  # every guest at once: none waits for its provisioning
    provisions = Task.objects.filter(kind="provision")
    assert {(t.status, t.error) for t in provisions} == {("failed", "Canceled: the lab is being torn down.")}
    assert {e.result for e in AuditEvent.objects.filter(task__in=provisions)} == {"failed"}
    # Off the queue: only the teardowns are left for the worker.
    assert redis_flushed.llen(f"rq:queue:{host.queue_name}") == 3
    work(host.queue_name)
    assert not [argv for argv in sim.history if argv[0] in ("lvcreate", "xl") and argv[1:2] == ["create"]]
    assert not [argv for argv in sim.history if argv[0] == "lvcreate"]  # nothing was built to be destroyed
    assert not Guest.objects.filter(lab=lab).exists()
    tick()
    lab.refresh_from_db()
    assert lab.status == Lab.Status.TORN_DOWN


def test_a_canceled_job_that_reaches_a_worker_anyway_does_nothing(ivy, host, template, pool, sim, redis_flushed):
    lab = create_lab_batch(ivy, template, pool, roster("ana"), memory_mb=256, slug="net").lab
    [provision] = Task.objects.filter(kind="provision")
    job = redis_flushed.lrange(f"rq:queue:{host.queue_name}", 0, -1)
    lab_action(ivy, lab, "teardown")
    redis_flushed.rpush(f"rq:queue:{host.queue_name}", *job)  # as if it was dequeued before the cancel
    work(host.queue_name)
    provision.refresh_from_db()
    assert provision.status == "failed" and provision.started_at is None
    assert not [argv for argv in sim.history if argv[0] == "lvcreate"]
