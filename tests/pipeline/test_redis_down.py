"""Redis unreachable when work is submitted: a clear error and nothing half-created."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from redis.exceptions import ConnectionError as RedisConnectionError

from labs.models import AuditEvent, Guest, Lab, Task
from labs.services import QueueUnavailable, create_lab_batch, guest_action, lab_action, queueing

from .helpers import roster

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dead_redis(monkeypatch):
    """Every queue points at a port nobody listens on."""
    monkeypatch.setitem(settings.RQ_QUEUES, "default", {"URL": "redis://127.0.0.1:1/13", "DEFAULT_TIMEOUT": 60})


@pytest.fixture
def redis_dies_at_commit(monkeypatch):
    """PING succeeds inside the transaction, then Redis is gone when the jobs are sent after COMMIT."""

    def send(tasks):
        raise RedisConnectionError("Connection refused (Redis died after the PING)")

    monkeypatch.setattr(queueing, "_send", send)


def snapshot() -> tuple[int, ...]:
    return (
        Lab.objects.count(),
        Guest.objects.count(),
        Task.objects.count(),
        AuditEvent.objects.count(),
        User.objects.count(),
    )


@pytest.mark.parametrize("failure", ["dead_redis", "redis_dies_at_commit"])
def test_batch_with_redis_down_creates_nothing(failure, request, ivy, alice, host, template, pool, sim_dir):
    request.getfixturevalue(failure)
    before = snapshot()
    with pytest.raises(QueueUnavailable) as info:
        create_lab_batch(ivy, template, pool, roster("alice", "newbie"), memory_mb=256, slug="net")
    assert "job queue (Redis) is not reachable" in info.value.message
    assert snapshot() == before
    assert not User.objects.filter(username="newbie").exists()


@pytest.mark.parametrize("failure", ["dead_redis", "redis_dies_at_commit"])
def test_guest_action_with_redis_down_leaves_the_guest_as_it_was(failure, request, running_guest, ivy):
    request.getfixturevalue(failure)
    before = snapshot()
    with pytest.raises(QueueUnavailable):
        guest_action(ivy, running_guest, "teardown")
    guest = Guest.objects.get(pk=running_guest.pk)
    assert (guest.status, guest.busy_with, guest.desired_state) == ("ready", "", "running")
    assert snapshot() == before


@pytest.mark.parametrize("failure", ["dead_redis", "redis_dies_at_commit"])
def test_lab_teardown_with_redis_down_leaves_the_lab_active(failure, request, running_guest, ivy):
    request.getfixturevalue(failure)
    before = snapshot()
    with pytest.raises(QueueUnavailable):
        lab_action(ivy, running_guest.lab, "teardown")
    assert Lab.objects.get().status == "active"
    assert set(Guest.objects.values_list("status", "busy_with")) == {("ready", "")}
    assert snapshot() == before
