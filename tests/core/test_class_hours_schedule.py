"""Class hours' schedule on a fake clock: wake 10 minutes before class, sleep at its end, in the panel's zone,
across DST changes, and a panel that was down at a moment catching up when it comes back."""

from __future__ import annotations

from datetime import UTC, datetime, time
from unittest import mock
from zoneinfo import ZoneInfo

import pytest

from labs.class_hours_models import ClassSchedule
from labs.models import Guest
from labs.services import class_hours
from labs.services.class_hours import apply_class_hours, phase

pytestmark = pytest.mark.django_db

SP = ZoneInfo("America/Sao_Paulo")
NY = ZoneInfo("America/New_York")


def at(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)


@pytest.fixture
def tue_thu(lab) -> ClassSchedule:
    """Tuesday and Thursday 14:00-16:00, saved outside."""
    return ClassSchedule.objects.create(lab=lab, days="13", start=time(14), end=time(16))


@pytest.fixture
def sao_paulo(settings):
    settings.TIME_ZONE = "America/Sao_Paulo"


def test_awake_from_ten_minutes_before_class_to_its_end(tue_thu, sao_paulo):
    # 2026-12-01 is a Tuesday.
    assert not phase(tue_thu, at(SP, 2026, 12, 1, 13, 49)).awake
    woke = phase(tue_thu, at(SP, 2026, 12, 1, 13, 50))
    assert woke.awake and woke.since == at(SP, 2026, 12, 1, 13, 50) and woke.until == at(SP, 2026, 12, 1, 16)
    assert phase(tue_thu, at(SP, 2026, 12, 1, 15, 59)).awake
    asleep = phase(tue_thu, at(SP, 2026, 12, 1, 16, 0))
    assert not asleep.awake and asleep.until == at(SP, 2026, 12, 3, 13, 50)  # Thursday
    # Friday to Tuesday: the weekend is asleep, and the wake-up is Tuesday's.
    assert phase(tue_thu, at(SP, 2026, 12, 5, 12)).until == at(SP, 2026, 12, 8, 13, 50)
    assert class_hours.wake_time(at(SP, 2026, 12, 8, 13, 50)) == "Tue 13:50"


def test_class_hours_follow_the_wall_clock_across_dst(lab, settings):
    # New York: summer time ends on Sunday 2026-11-01 (UTC-4 -> UTC-5).
    settings.TIME_ZONE = "America/New_York"
    tue = ClassSchedule.objects.create(lab=lab, days="1", start=time(14), end=time(16))
    before = phase(tue, at(NY, 2026, 10, 27, 12)).until
    after = phase(tue, at(NY, 2026, 11, 3, 12)).until
    assert before == datetime(2026, 10, 27, 17, 50, tzinfo=UTC)  # 13:50 EDT
    assert after == datetime(2026, 11, 3, 18, 50, tzinfo=UTC)  # 13:50 EST: an hour later in UTC
    # Seen from the week before, the next Tuesday's class is 7 days and 1 hour of real time away.
    assert phase(tue, at(NY, 2026, 10, 27, 17)).until == after


def test_a_class_in_the_hour_dst_skips_still_has_a_wake_up_before_its_end(lab, settings):
    # Sunday 2026-03-08, New York: 02:00 jumps to 03:00. A (strange) class 02:30-04:00 on Sundays.
    settings.TIME_ZONE = "America/New_York"
    sunday = ClassSchedule.objects.create(lab=lab, days="6", start=time(2, 30), end=time(4))
    p = phase(sunday, at(NY, 2026, 3, 8, 1, 0))
    assert not p.awake and p.until is not None
    woke = phase(sunday, p.until)
    assert woke.awake and woke.until == at(NY, 2026, 3, 8, 4)
    assert p.until < woke.until


def test_the_ambiguous_hour_when_dst_ends_is_read_once(lab, settings):
    # Sunday 2026-11-01, New York: 01:00-02:00 happens twice. A class 01:30-03:00 wakes once, at the first 01:20.
    settings.TIME_ZONE = "America/New_York"
    sunday = ClassSchedule.objects.create(lab=lab, days="6", start=time(1, 30), end=time(3))
    p = phase(sunday, at(NY, 2026, 11, 1, 0, 0))
    assert p.until == datetime(2026, 11, 1, 5, 20, tzinfo=UTC)  # 01:20 EDT
    assert phase(sunday, datetime(2026, 11, 1, 7, 0, tzinfo=UTC)).awake  # 02:00 EST, still in class


def _queued(guests: list[Guest]) -> dict[str, str]:
    return {g.domain_name: Guest.objects.get(pk=g.pk).busy_with for g in guests}


@pytest.fixture
def no_queue():
    """Jobs are recorded but not sent: this file is about when, tests/pipeline about what the jobs do."""
    with (
        mock.patch("labs.services.queueing.ping"),
        mock.patch("labs.services.queueing.enqueue_after_commit") as sent,
    ):
        yield sent


def _ready(guest: Guest, state: str, desired: str = "running") -> Guest:
    Guest.objects.filter(pk=guest.pk).update(status="ready", observed_state=state, desired_state=desired, busy_with="")
    guest.refresh_from_db()
    return guest


def test_the_tick_saves_at_the_end_of_class_and_restores_before_the_next(
    tue_thu, sao_paulo, alice_guest, bob_guest, no_queue
):
    _ready(alice_guest, "b")
    _ready(bob_guest, "r")
    assert apply_class_hours(at(SP, 2026, 12, 1, 16, 0, 5)) == 2
    assert _queued([alice_guest, bob_guest]) == {"net101-alice": "save", "net101-bob": "save"}
    tue_thu.refresh_from_db()
    assert tue_thu.applied_at == at(SP, 2026, 12, 1, 16)
    # The jobs ran: both saved. Ticks until Thursday's wake-up do nothing.
    _ready(alice_guest, "", "saved")
    _ready(bob_guest, "", "saved")
    assert apply_class_hours(at(SP, 2026, 12, 2, 9)) == 0
    assert apply_class_hours(at(SP, 2026, 12, 3, 13, 50, 2)) == 2
    assert _queued([alice_guest, bob_guest]) == {"net101-alice": "restore", "net101-bob": "restore"}


def test_a_panel_down_at_the_end_of_class_puts_the_vms_to_sleep_when_it_is_back(
    tue_thu, sao_paulo, alice_guest, no_queue
):
    _ready(alice_guest, "b")
    ClassSchedule.objects.filter(pk=tue_thu.pk).update(applied_at=at(SP, 2026, 12, 1, 13, 50))
    # Down from 15:00 to 21:30: the 16:00 moment was missed.
    assert apply_class_hours(at(SP, 2026, 12, 1, 21, 30)) == 1
    assert _queued([alice_guest]) == {"net101-alice": "save"}


def test_a_panel_down_across_a_whole_class_acts_only_on_the_latest_moment(tue_thu, sao_paulo, alice_guest, no_queue):
    _ready(alice_guest, "", "saved")
    ClassSchedule.objects.filter(pk=tue_thu.pk).update(applied_at=at(SP, 2026, 12, 1, 16))
    # Down from Wednesday to Thursday 20:00: Thursday's wake-up and sleep both passed; the VM stays saved.
    assert apply_class_hours(at(SP, 2026, 12, 3, 20)) == 0
    assert _queued([alice_guest]) == {"net101-alice": ""}
    tue_thu.refresh_from_db()
    assert tue_thu.applied_at == at(SP, 2026, 12, 3, 16)


def test_a_vm_woken_outside_class_stays_awake_until_the_next_moment(tue_thu, sao_paulo, alice_guest, no_queue):
    _ready(alice_guest, "b")
    ClassSchedule.objects.filter(pk=tue_thu.pk).update(applied_at=at(SP, 2026, 12, 1, 16))
    assert apply_class_hours(at(SP, 2026, 12, 2, 10)) == 0
    assert _queued([alice_guest]) == {"net101-alice": ""}


def test_a_busy_vm_is_put_to_sleep_at_a_later_tick(tue_thu, sao_paulo, alice_guest, no_queue):
    _ready(alice_guest, "b")
    Guest.objects.filter(pk=alice_guest.pk).update(busy_with="reboot")
    assert apply_class_hours(at(SP, 2026, 12, 1, 16, 0, 5)) == 0
    tue_thu.refresh_from_db()
    assert tue_thu.applied_at is None  # not done yet
    Guest.objects.filter(pk=alice_guest.pk).update(busy_with="")
    assert apply_class_hours(at(SP, 2026, 12, 1, 16, 0, 10)) == 1
    assert _queued([alice_guest]) == {"net101-alice": "save"}


def test_shut_down_labs_shut_down_and_start_again(tue_thu, sao_paulo, alice_guest, no_queue):
    ClassSchedule.objects.filter(pk=tue_thu.pk).update(outside="shutdown")
    _ready(alice_guest, "b")
    apply_class_hours(at(SP, 2026, 12, 1, 16, 1))
    assert _queued([alice_guest]) == {"net101-alice": "shutdown"}
    _ready(alice_guest, "", "stopped")
    apply_class_hours(at(SP, 2026, 12, 3, 13, 51))
    assert _queued([alice_guest]) == {"net101-alice": "start"}


def test_students_see_when_their_vm_wakes_and_may_wake_it_only_if_the_lab_allows(
    tue_thu, sao_paulo, alice, ivy, alice_guest, no_queue
):
    from labs.services import guest_action
    from labs.services.errors import InvalidAction

    _ready(alice_guest, "", "saved")
    night = at(SP, 2026, 12, 1, 22)
    assert class_hours.sleeps_until(alice_guest, night) == at(SP, 2026, 12, 3, 13, 50)
    assert class_hours.sleeps_until(alice_guest, at(SP, 2026, 12, 3, 14)) is None  # class: not asleep
    with mock.patch("labs.services.class_hours.timezone.now", return_value=night):
        with pytest.raises(InvalidAction, match="sleeps until Thu 13:50"):
            guest_action(alice, alice_guest, "restore")
        assert Guest.objects.get(pk=alice_guest.pk).busy_with == ""
        guest_action(ivy, alice_guest, "restore")  # the lab's instructor may
        _ready(alice_guest, "", "saved")
        ClassSchedule.objects.filter(pk=tue_thu.pk).update(students_may_wake=True)
        alice_guest.lab.refresh_from_db()
        alice_guest = Guest.objects.select_related("lab").get(pk=alice_guest.pk)
        guest_action(alice, alice_guest, "restore")
    assert Guest.objects.get(pk=alice_guest.pk).busy_with == "restore"
