"""A worker killed with SIGKILL in the middle of a slow step: the loss is detected and a retry finishes the job."""

from __future__ import annotations

import os
import signal
import time

import pytest

from labs.models import AuditEvent, Guest, Task
from labs.services import create_lab_batch
from labs.services.upkeep import detect_lost_work

from .helpers import roster, start_worker, wait_for, work

pytestmark = pytest.mark.django_db(transaction=True)


def test_killed_worker_is_detected_and_the_retry_reuses_what_exists(ivy, alice, host, template, pool, sim, sim_dir):
    result = create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=256, slug="net")
    guest = result.guests[0]
    task = Task.objects.get(guest=guest)
    # sim delay 1.0: the clone step takes 0.6 s, xl create 1 s.
    worker = start_worker(sim_dir, host.queue_name, delay=1.0, burst=False)
    try:
        wait_for(lambda: Task.objects.filter(pk=task.pk, step="clone").exists(), timeout=60)
        # The worker and its work-horse die at once, as with kill -9 or an OOM kill.
        os.killpg(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
        worker.stdout.close()

    task.refresh_from_db()
    guest.refresh_from_db()
    assert (task.status, task.step, guest.status, guest.busy_with) == ("running", "clone", "provisioning", "provision")
    # The root and swap volumes exist, but the clone never finished.
    volumes = sim.volumes()
    assert volumes["vm-net-alice.raiz"]["content"] is None
    root_serial = volumes["vm-net-alice.raiz"]["serial"]
    assert "net-alice" not in sim.domains()

    # Right now the job still looks alive (its heartbeat has not expired)...
    assert detect_lost_work() == []
    # ...20 s later RQ's started registry gives it up (15 s after the last beat), and so do we.
    lost = detect_lost_work(now=time.time() + 20)
    assert [t.pk for t in lost] == [task.pk]
    task.refresh_from_db()
    assert task.status == "failed" and "worker running this job stopped" in task.error
    assert AuditEvent.objects.get(task=task).result == "failed"
    # The job is queued again at once, by itself: nobody has to press Retry.
    retry = Task.objects.exclude(pk=task.pk).get(guest=guest)
    guest.refresh_from_db()
    assert (retry.kind, retry.args["retry_of"], retry.actor) == ("provision", task.pk, ivy)
    assert (guest.status, guest.busy_with) == ("pending", "provision")
    assert "Retried automatically" in AuditEvent.objects.get(task=retry).message

    # The retry reuses the volumes (never a second one) and finishes.
    work(host.queue_name)
    retry.refresh_from_db()
    guest.refresh_from_db()
    assert retry.status == "succeeded", retry.log
    assert "volume vm-net-alice.raiz exists, reused" in retry.log
    assert guest.status == "ready" and guest.observed_state in ("r", "b")
    assert sim.volumes()["vm-net-alice.raiz"]["serial"] == root_serial
    assert sorted(sim.volumes()) == ["vm-net-alice.raiz", "vm-net-alice.swap"]
    lvcreates = [argv for argv in sim.history if argv[0] == "lvcreate"]
    assert len(lvcreates) == 2  # root and swap, once each
    assert list(sim.domains()) == ["net-alice"]


def test_a_job_lost_from_redis_is_detected(ivy, alice, host, template, pool, sim, redis_flushed):
    result = create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=256, slug="net")
    redis_flushed.flushdb()  # Redis restarted without persistence: the queued job is gone
    assert detect_lost_work() == []  # too young to judge: the enqueue may still be on its way
    [lost] = detect_lost_work(now=time.time() + 60)
    guest = Guest.objects.get(pk=result.guests[0].pk)
    assert lost.guest_id == guest.pk
    assert "disappeared from the queue" in Task.objects.get(pk=lost.pk).error
    # Queued again by itself; this time the job reaches the worker, and the guest is built.
    assert (guest.status, guest.busy_with) == ("pending", "provision")
    work(host.queue_name)
    guest.refresh_from_db()
    assert guest.status == "ready", guest.last_error


def test_a_retry_that_is_lost_too_stays_failed(ivy, alice, host, template, pool, sim, redis_flushed):
    result = create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=256, slug="net")
    redis_flushed.flushdb()
    detect_lost_work(now=time.time() + 60)  # lost, and retried
    redis_flushed.flushdb()  # the retry is lost as well
    [again] = detect_lost_work(now=time.time() + 120)
    assert again.args["retry_of"]
    guest = Guest.objects.get(pk=result.guests[0].pk)
    assert guest.status == "failed" and "disappeared from the queue" in guest.last_error
    assert Task.objects.filter(guest=guest).count() == 2  # no third try: a person decides
