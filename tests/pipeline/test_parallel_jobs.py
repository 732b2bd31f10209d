"""Several jobs at once on one host (Host.jobs_at_a_time), run by `manage.py host_worker`: real RQ workers,
forked by rq's WorkerPool, on the simulated dom0 with real step delays."""

from __future__ import annotations

import os
import signal

import pytest
from rq import Worker

from labs.models import Guest, Host, Task
from labs.services import create_lab_batch, queueing
from labs.services.upkeep import detect_lost_work

from .helpers import finish_worker, roster, start_pool, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def most_at_once(tasks: list[Task]) -> int:
    """The most tasks whose [started_at, finished_at] intervals overlap at one moment."""
    edges = sorted([(t.started_at, 1) for t in tasks] + [(t.finished_at, -1) for t in tasks])
    running = peak = 0
    for _at, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def provisioned(lab, n: int) -> list[Task]:
    assert sorted(lab.guests.values_list("status", flat=True)) == ["ready"] * n, list(
        lab.guests.values_list("domain_name", "status", "last_error")
    )
    tasks = list(Task.objects.filter(lab=lab, kind="provision"))
    assert [t.status for t in tasks] == ["succeeded"] * n
    return tasks


def test_two_guests_of_one_host_are_built_at_the_same_time(ivy, host, template, pool, sim, sim_dir):
    assert host.jobs_at_a_time == 2  # the default
    lab = create_lab_batch(ivy, template, pool, roster("s1", "s2", "s3", "s4"), memory_mb=64, slug="par").lab
    finish_worker(start_pool(sim_dir, host.queue_name, delay=0.3), timeout=120)
    tasks = provisioned(lab, 4)
    assert most_at_once(tasks) == 2
    # Both workers built guests, side by side; nothing was made twice or left over.
    assert len({t.log.splitlines()[0] for t in tasks}) == 4
    assert sorted(sim.domains()) == [f"par-s{i}" for i in range(1, 5)]
    assert len(sim.volumes()) == 8 and len(sim.configs()) == 4
    # The last report of the VG's free space is the VG's, whatever order the jobs reported in.
    assert Host.objects.get(pk=host.pk).vg_free_mb == sim.volume_group().free_bytes // 2**20


@pytest.mark.parametrize("jobs", [1, 3])
def test_the_hosts_jobs_at_a_time_is_honoured(jobs, ivy, host, template, pool, sim, sim_dir):
    Host.objects.filter(pk=host.pk).update(jobs_at_a_time=jobs)
    lab = create_lab_batch(ivy, template, pool, roster(*(f"s{i}" for i in range(6))), memory_mb=64, slug="hon").lab
    finish_worker(start_pool(sim_dir, host.queue_name, delay=0.3), timeout=120)
    assert most_at_once(provisioned(lab, 6)) == jobs


def registered(queue: str) -> list[Worker]:
    conn = queueing.redis_connection(queue)
    return [w for w in Worker.all(connection=conn) if queue in w.queue_names()]


def test_a_change_in_the_admin_applies_to_a_running_pool(host, sim_dir):
    Host.objects.filter(pk=host.pk).update(jobs_at_a_time=1)
    pool = start_pool(sim_dir, host.queue_name, burst=False)
    try:
        wait_for(lambda: len(registered(host.queue_name)) == 1, timeout=30)
        Host.objects.filter(pk=host.pk).update(jobs_at_a_time=3)
        wait_for(lambda: len(registered(host.queue_name)) == 3, timeout=30)
        Host.objects.filter(pk=host.pk).update(jobs_at_a_time=2)
        wait_for(lambda: len(registered(host.queue_name)) == 2, timeout=30)
    finally:
        pool.send_signal(signal.SIGTERM)  # as systemd stops it: a warm shutdown of every worker
        out = finish_worker(pool, timeout=60)
    assert registered(host.queue_name) == [], out


def test_a_killed_worker_of_the_pool_is_replaced_and_its_job_retried_once(ivy, host, template, pool, sim, sim_dir):
    lab = create_lab_batch(ivy, template, pool, roster("s1", "s2"), memory_mb=64, slug="kil").lab
    proc = start_pool(sim_dir, host.queue_name, delay=1.0, burst=False)
    try:
        running = wait_for(lambda: list(Task.objects.filter(lab=lab, step="clone")), timeout=60)
        victim = running[0]
        worker = next(w for w in registered(host.queue_name) if w.get_current_job_id() == victim.rq_job_id)
        os.kill(worker.pid, signal.SIGKILL)  # one worker dies, as with an OOM kill; its sibling goes on
        # The pool starts another within a second or two.
        wait_for(lambda: len([w for w in registered(host.queue_name) if w.pid != worker.pid]) == 2, timeout=10)
        # The job's heartbeat lapses 15 s after the worker died (its sibling's goes on beating): the sync
        # loop then fails that job alone and retries it once.
        lost = wait_for(detect_lost_work, timeout=40, interval=1)
        assert [t.pk for t in lost] == [victim.pk]
        wait_for(lambda: lab.guests.filter(status="ready").count() == 2, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        finish_worker(proc, timeout=60)
    tasks = Task.objects.filter(lab=lab).order_by("pk")
    assert sorted(t.status for t in tasks) == ["failed", "succeeded", "succeeded"]
    retry = tasks.get(args__retry_of=victim.pk)
    assert retry.status == "succeeded" and "reused" in retry.log
    assert sorted(sim.domains()) == ["kil-s1", "kil-s2"] and len(sim.volumes()) == 4
    assert Guest.objects.filter(lab=lab, status="ready").count() == 2
