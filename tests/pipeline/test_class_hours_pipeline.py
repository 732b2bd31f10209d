"""Class hours end to end: the sync loop's tick on a fake clock queues `xl save` and `xl restore`, real RQ
workers run them on the simulated dom0, and the panel's states follow ("saved", then "running")."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from labs.class_hours_models import ClassSchedule
from labs.models import Guest
from labs.services.upkeep import tick
from labs.templatetags.xenpanel import state_word

from .helpers import work

pytestmark = pytest.mark.django_db(transaction=True)

# Every day 14:00-16:00 in UTC (the tests' TIME_ZONE): 2026-12-01 16:05 is after class, 12-02 13:51 before the next.
AFTER_CLASS = datetime(2026, 12, 1, 16, 5, tzinfo=UTC)
BEFORE_CLASS = datetime(2026, 12, 2, 13, 51, tzinfo=UTC)


def _guests() -> dict[str, Guest]:
    return {g.domain_name: g for g in Guest.objects.select_related("host", "lab")}


def _words() -> dict[str, str]:
    return {name: state_word(g) for name, g in _guests().items()}


@pytest.fixture
def every_day(running_guest, settings) -> ClassSchedule:
    settings.TIME_ZONE = "UTC"
    return ClassSchedule.objects.create(lab=running_guest.lab, days="0123456", start=time(14), end=time(16))


def test_saved_after_class_and_restored_before_the_next(every_day, host, sim):
    free_in_class = sim.info().free_memory_mb
    domids = {n: d["domid"] for n, d in sim.domains().items()}
    assert tick(AFTER_CLASS)["class_hours"] == 2
    work(host.queue_name)
    assert sim.domains() == {}
    assert sim.saved_images() == {"/var/lib/xen/save/net-alice": "net-alice", "/var/lib/xen/save/net-bob": "net-bob"}
    assert sim.info().free_memory_mb == free_in_class + 2 * 256  # saving frees the guests' memory
    assert _words() == {"net-alice": "saved", "net-bob": "saved"}
    assert ["xl", "save", "net-alice", "/var/lib/xen/save/net-alice"] in sim.history
    # Ticks in between change nothing.
    assert tick(datetime(2026, 12, 2, 9, tzinfo=UTC))["class_hours"] == 0

    assert tick(BEFORE_CLASS)["class_hours"] == 2
    work(host.queue_name)
    running = sim.domains()
    assert set(running) == {"net-alice", "net-bob"}
    assert all(running[n]["domid"] > domids[n] for n in running)  # restored as new domains, not created
    assert ["xl", "restore", "/var/lib/xen/save/net-alice"] in sim.history
    assert not [a for a in sim.history if a[:2] == ["xl", "create"] and "net-alice" in a[-1]][1:]
    assert sim.saved_images() == {}  # a restored image is deleted: xendomains must never restore it again
    assert _words() == {"net-alice": "running", "net-bob": "running"}
    assert {g.desired_state for g in _guests().values()} == {"running"}


def test_a_vm_whose_image_is_gone_is_started_afresh(every_day, host, sim, alice):
    tick(AFTER_CLASS)
    work(host.queue_name)
    sim.remove_saved_image("/var/lib/xen/save/net-alice")
    tick(BEFORE_CLASS)
    work(host.queue_name)
    alice_guest = Guest.objects.get(domain_name="net-alice")
    task = alice_guest.tasks.filter(kind="restore").get()
    assert task.status == "succeeded", task.log
    assert "starting net-alice afresh" in task.log and alice_guest.observed_state in ("r", "b")


def test_a_lab_that_shuts_down_outside_class_starts_again_before_it(every_day, host, sim):
    ClassSchedule.objects.filter(pk=every_day.pk).update(outside="shutdown")
    tick(AFTER_CLASS)
    work(host.queue_name)
    assert sim.domains() == {} and sim.saved_images() == {}
    assert _words() == {"net-alice": "stopped", "net-bob": "stopped"}
    tick(BEFORE_CLASS)
    work(host.queue_name)
    assert _words() == {"net-alice": "running", "net-bob": "running"}


def test_a_student_wakes_a_saved_vm_when_the_lab_allows(every_day, host, sim, alice):
    from unittest import mock

    from labs.services import guest_action

    ClassSchedule.objects.filter(pk=every_day.pk).update(students_may_wake=True)
    tick(AFTER_CLASS)
    work(host.queue_name)
    guest = Guest.objects.select_related("lab", "host").get(domain_name="net-alice")
    with mock.patch("labs.services.class_hours.timezone.now", return_value=AFTER_CLASS):
        guest_action(alice, guest, "restore")
    work(host.queue_name)
    assert _words() == {"net-alice": "running", "net-bob": "saved"}
    # Woken outside class, it stays up: the next tick does not save it again before the next end of class.
    assert tick(datetime(2026, 12, 1, 18, tzinfo=UTC))["class_hours"] == 0
