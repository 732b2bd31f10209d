"""Whoever can write to Redis cannot run code on a dom0 worker: jobs are JSON, and only the panel's own run."""

from __future__ import annotations

import os
import pickle
import zlib

import pytest
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer, PickleSerializer

from labs.models import Guest
from labs.services import queueing

from .helpers import finish_worker, start_worker

pytestmark = pytest.mark.django_db(transaction=True)


class _Touch:
    """A pickle that runs `touch <path>` the moment it is loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _push_raw(conn, queue_name: str, job_id: str, data: bytes) -> None:
    """A job written straight into Redis, as an attacker with write access would, bypassing rq's client."""
    conn.hset(
        f"rq:job:{job_id}",
        mapping={
            "data": zlib.compress(data),
            "origin": queue_name,
            "status": "queued",
            "description": "not ours",
            "created_at": "2026-12-04T00:00:00.000000Z",
            "enqueued_at": "2026-12-04T00:00:00.000000Z",
        },
    )
    conn.rpush(f"rq:queue:{queue_name}", job_id)
    conn.sadd("rq:queues", f"rq:queue:{queue_name}")


def test_the_panel_queues_json(running_guest, redis_flushed):
    from labs.services import guest_action

    task = guest_action(running_guest.student, running_guest, "pause")
    raw = zlib.decompress(redis_flushed.hget(f"rq:job:{task.rq_job_id}", "data"))
    assert JSONSerializer.loads(raw)[0] == queueing.JOBS["guest"]


def test_a_worker_runs_neither_a_pickle_nor_a_foreign_function(running_guest, sim_dir, host, redis_flushed, tmp_path):
    conn, q = redis_flushed, host.queue_name
    by_pickle, by_name, by_args = tmp_path / "pickle-ran", tmp_path / "os-system-ran", tmp_path / "args-ran"
    # 1. A raw pickle payload that runs as it is loaded.
    _push_raw(conn, q, "evil-pickle", pickle.dumps((_Touch(str(by_pickle)), None, (), {})))
    # 2. rq's own pickle format naming os.system.
    Queue(q, connection=conn, serializer=PickleSerializer).enqueue_call(
        "os.system", args=(f"touch {by_name}",), job_id="evil-pickled-call"
    )
    # 3. Valid JSON naming os.system, and one of our jobs called with a string.
    json_q = Queue(q, connection=conn, serializer=JSONSerializer)
    json_q.enqueue_call("os.system", args=(f"touch {by_name}",), job_id="evil-json-call")
    json_q.enqueue_call(queueing.JOBS["sync"], args=(f"; touch {by_args}",), job_id="evil-json-args")
    # 4. Then real work: the worker must still be alive to do it.
    from labs.services import guest_action

    task = guest_action(running_guest.student, running_guest, "pause")

    out = finish_worker(start_worker(sim_dir, q))

    assert not by_pickle.exists() and not by_name.exists() and not by_args.exists()
    failed = set(FailedJobRegistry(q, connection=conn, serializer=JSONSerializer).get_job_ids())
    assert {"evil-pickle", "evil-pickled-call", "evil-json-call", "evil-json-args"} <= failed
    assert "refused job evil-json-call: 'os.system' is not one of the panel's jobs" in out
    assert "refused job evil-json-args" in out
    task.refresh_from_db()
    assert task.status == "succeeded"
    assert Guest.objects.get(pk=running_guest.pk).observed_state == "p"
