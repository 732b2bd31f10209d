"""Placement skips a host whose last health check found its guests' bridge missing, and the refusal says so."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from labs.jobs.host import health_check
from labs.models import Guest, Host, Lab
from labs.services import QuotaExceeded, create_lab_batch
from labs.services.capacity import bridge_failed

from .helpers import roster

pytestmark = pytest.mark.django_db(transaction=True)


def _break_bridge(host: Host) -> None:
    host.health_report = {"bridge": {"ok": False, "detail": f"bridge {host.bridge} is missing"}}
    host.health_ok = False
    host.save(update_fields=["health_report", "health_ok"])


def test_the_health_check_s_bridge_failure_is_what_counts(host, sim):
    health_check(host.pk)
    host.refresh_from_db()
    assert not bridge_failed(host)
    _break_bridge(host)
    assert bridge_failed(host)
    host.health_report = {}  # never checked: not held against the host
    assert not bridge_failed(host)


def test_guests_go_to_the_host_whose_bridge_is_there(ivy, host, second_host, template, pool):
    _break_bridge(host)  # dom0-a has more free memory, but no bridge
    batch = create_lab_batch(ivy, template, pool, roster("s1", "s2"), memory_mb=64)
    assert {g.host_id for g in batch.guests} == {second_host.pk}


def test_the_refusal_names_the_skipped_host_and_its_bridge(ivy, host, template, pool):
    _break_bridge(host)
    users = User.objects.count()
    with pytest.raises(QuotaExceeded) as info:
        create_lab_batch(ivy, template, pool, roster("s1"), memory_mb=64)
    message = info.value.message
    assert "bridge missing: dom0-a (xenbr0)" in message, message
    assert "Fix the bridge, then run a health check." in message
    assert info.value.field == "hosts"
    assert Lab.objects.count() == Guest.objects.count() == 0 and User.objects.count() == users


def test_a_refusal_for_memory_also_names_the_skipped_host(ivy, host, second_host, template, pool):
    _break_bridge(host)
    second_host.total_memory_mb = 1100  # 76 MiB after the dom0 reserve
    second_host.save(update_fields=["total_memory_mb"])
    with pytest.raises(QuotaExceeded) as info:
        create_lab_batch(ivy, template, pool, roster("s1"), memory_mb=256)
    message = info.value.message
    assert "Not enough host capacity" in message and "dom0-b:" in message, message
    assert "bridge missing: dom0-a (xenbr0)" in message
