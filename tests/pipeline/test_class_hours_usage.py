"""VM-hours and class hours: a VM saved outside class is not running, so its saved time is not counted."""

from __future__ import annotations

import time

import pytest

from labs.models import Guest, UsageCursor, UsageTotal
from labs.services.upkeep import tick

from .helpers import work

pytestmark = pytest.mark.django_db(transaction=True)


def _sync(host) -> None:
    assert tick()["synced"] == 1
    work(host.queue_name)


def _minute(host, seconds: float) -> None:
    """`seconds` pass, a sync, then a sync that ends the meter's open minute (as tests/pipeline/test_usage_sync)."""
    time.sleep(seconds)
    _sync(host)
    cursor = UsageCursor.objects.get(host=host)
    cursor.state["minute"] -= 1
    cursor.save()
    _sync(host)


def _run_seconds() -> dict[str, float]:
    return dict(UsageTotal.objects.values_list("domain_name", "run_seconds"))


def test_saved_time_is_not_counted_as_running(running_guest, host, alice, sim, ivy):
    from labs.services.actions import scheduled_action

    _sync(host)
    _minute(host, 1.0)
    before = _run_seconds()
    assert before["net-alice"] > 0 and before["net-bob"] > 0
    scheduled_action(Guest.objects.select_related("lab", "host").get(domain_name="net-alice"), "save")
    work(host.queue_name)
    assert "net-alice" not in sim.domains()
    _minute(host, 2.0)
    _minute(host, 1.0)
    after = _run_seconds()
    assert after["net-bob"] - before["net-bob"] >= 2.5  # bob ran all along
    assert after["net-alice"] - before["net-alice"] < 1.0  # alice's saved seconds are not VM time
