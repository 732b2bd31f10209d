"""Class hours in the pages: the lab's instructors set them (others get 404), bad input changes nothing,
and a student whose VM sleeps reads until when, and whether they may wake it."""

from __future__ import annotations

from datetime import UTC, datetime, time
from unittest import mock

import pytest
from django.urls import reverse

from labs.class_hours_models import ClassSchedule
from labs.models import Guest
from tests.ui.conftest import set_state

pytestmark = pytest.mark.django_db

FORM = {"days": ["1", "3"], "start": "14:00", "end": "16:00", "outside": "save"}


def test_an_instructor_sets_changes_and_removes_the_class_hours(client, ivy, lab, settings):
    settings.TIME_ZONE = "America/Sao_Paulo"
    client.force_login(ivy)
    url = reverse("lab_class_hours", args=[lab.pk])
    page = client.get(url).content.decode()
    assert "America/Sao_Paulo" in page and 'type="time"' in page
    assert client.post(url, {**FORM, "students_may_wake": "on"}).status_code == 302
    schedule = ClassSchedule.objects.get(lab=lab)
    assert (schedule.days, schedule.start, schedule.end, schedule.outside) == ("13", time(14), time(16), "save")
    assert schedule.students_may_wake and schedule.applied_at is None
    assert "Class hours: Tue, Thu 14:00–16:00" in client.get(reverse("lab_detail", args=[lab.pk])).content.decode()
    # A change is acted on at the next tick: applied_at starts over.
    ClassSchedule.objects.filter(pk=schedule.pk).update(applied_at=datetime(2026, 12, 1, tzinfo=UTC))
    client.post(url, {**FORM, "days": ["0"], "outside": "shutdown"})
    schedule.refresh_from_db()
    assert (schedule.days, schedule.outside, schedule.applied_at, schedule.students_may_wake) == (
        "0",
        "shutdown",
        None,
        False,
    )
    client.post(url, {"remove": "1"})
    assert not ClassSchedule.objects.filter(lab=lab).exists()


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"days": []}, "This field is required"),
        ({"days": ["9"]}, "Select a valid choice"),
        ({"end": "13:00"}, "Class must end after it starts"),
        ({"start": "25:00"}, "Enter a valid time"),
        ({"outside": "reboot"}, "Select a valid choice"),
    ],
)
def test_bad_class_hours_are_refused_with_a_message_and_nothing_changes(client, ivy, lab, bad, words):
    client.force_login(ivy)
    response = client.post(reverse("lab_class_hours", args=[lab.pk]), {**FORM, **bad})
    assert response.status_code == 200 and words in response.content.decode()
    assert not ClassSchedule.objects.exists()


def test_only_the_labs_instructors_see_its_class_hours(client, charlie, alice, lab):
    for user in (charlie, alice):
        client.force_login(user)
        assert client.get(reverse("lab_class_hours", args=[lab.pk])).status_code == 404
        assert client.post(reverse("lab_class_hours", args=[lab.pk]), FORM).status_code == 404
    assert not ClassSchedule.objects.exists()


@pytest.mark.parametrize(("may_wake", "words"), [(False, "only the lab"), (True, "You can wake it now")])
def test_a_student_reads_when_the_vm_wakes(client, alice, alice_guest, lab, settings, may_wake, words):
    settings.TIME_ZONE = "UTC"
    ClassSchedule.objects.create(lab=lab, days="13", start=time(14), end=time(16), students_may_wake=may_wake)
    set_state(alice_guest, "")
    Guest.objects.filter(pk=alice_guest.pk).update(desired_state="saved")
    client.force_login(alice)
    tuesday_night = datetime(2026, 12, 1, 22, tzinfo=UTC)
    with mock.patch("labs.services.class_hours.timezone.now", return_value=tuesday_night):
        page = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert "Your VM sleeps until Thu 13:50." in page and words in page
    assert 'state-badge">saved <span class="xl-letter"' in page
    assert "Wake" in page
    # In class it is not asleep: no note.
    with mock.patch("labs.services.class_hours.timezone.now", return_value=datetime(2026, 12, 3, 14, tzinfo=UTC)):
        assert "sleeps until" not in client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()


def test_the_sleep_note_in_portuguese(client, alice, alice_guest, lab, settings):
    settings.TIME_ZONE = "UTC"
    ClassSchedule.objects.create(lab=lab, days="13", start=time(14), end=time(16))
    set_state(alice_guest, "")
    Guest.objects.filter(pk=alice_guest.pk).update(desired_state="saved")
    client.force_login(alice)
    with mock.patch("labs.services.class_hours.timezone.now", return_value=datetime(2026, 12, 1, 22, tzinfo=UTC)):
        page = client.get(reverse("guest_detail", args=[alice_guest.pk]), HTTP_ACCEPT_LANGUAGE="pt-br").content
    text = page.decode()
    assert "Sua VM dorme até Qui 13:50." in text and 'state-badge">salva <span' in text
