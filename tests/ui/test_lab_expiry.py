"""Issue 15: a lab's expiry nobody misses.

From XENPANEL_EXPIRY_WARNING_HOURS before (48 by default) My VMs, the guest
page and the lab page carry a banner with the time left; the lab's
instructors change, extend or remove the expiry on the lab page (POST, CSRF,
audited), and the form says plainly the VMs are destroyed at that time.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labs.models import AuditEvent, Lab
from labs.services.errors import InvalidAction
from labs.services.expiry import expiring_soon, left_words, set_lab_expiry
from tests.ui.conftest import messages_of


def _expire_in(lab: Lab, delta: timedelta) -> None:
    Lab.objects.filter(pk=lab.pk).update(expires_at=timezone.now() + delta)
    lab.refresh_from_db()


@pytest.mark.parametrize("page", ["my_vms", "guest_detail"])
def test_students_see_the_banner_from_48_hours_before(client, alice, alice_guest, lab, page):
    client.force_login(alice)
    url = reverse(page, args=[alice_guest.pk] if page == "guest_detail" else [])
    _expire_in(lab, timedelta(hours=49))
    assert "expiry-banner" not in client.get(url).content.decode()
    _expire_in(lab, timedelta(hours=26, minutes=30))
    body = client.get(url).content.decode()
    assert "expiry-banner" in body
    assert "The VMs of lab Networks 101 will be destroyed on" in body
    assert "in 1\xa0day, 2\xa0hours" in body


def test_the_window_comes_from_the_setting(client, alice, alice_guest, lab, settings):
    settings.XENPANEL_EXPIRY_WARNING_HOURS = 72
    _expire_in(lab, timedelta(hours=60))
    client.force_login(alice)
    assert "expiry-banner" in client.get(reverse("my_vms")).content.decode()
    settings.XENPANEL_EXPIRY_WARNING_HOURS = 0
    assert "expiry-banner" not in client.get(reverse("my_vms")).content.decode()


def test_the_lab_page_shows_it_and_says_plainly_what_happens(client, ivy, lab, alice_guest):
    _expire_in(lab, timedelta(hours=3))
    client.force_login(ivy)
    body = client.get(reverse("lab_detail", args=[lab.pk])).content.decode()
    assert "expiry-banner" in body and ("in 3\xa0hours" in body or "in 2\xa0hours" in body)
    assert "destroys every VM of the lab and deletes its disks" in body
    assert f'action="{reverse("lab_expiry", args=[lab.pk])}"' in body
    # The header no longer ends the date with a second full stop ("11:39 a.m..").
    assert "m.." not in body


def test_an_instructor_extends_and_changes_it_audited(client, ivy, lab):
    _expire_in(lab, timedelta(hours=3))
    before = lab.expires_at
    client.force_login(ivy)
    url = reverse("lab_expiry", args=[lab.pk])
    r = client.post(url, {"extend_days": "7", "expires_at": "2001-01-01T00:00"})
    assert r.status_code == 302
    lab.refresh_from_db()
    assert lab.expires_at == before + timedelta(days=7)
    [message] = messages_of(r)
    assert "will be destroyed on" in message and "in 1\xa0week" in message and "m.." not in message
    later = (timezone.localtime() + timedelta(days=30)).replace(second=0, microsecond=0)
    client.post(url, {"expires_at": later.strftime("%Y-%m-%dT%H:%M")})
    lab.refresh_from_db()
    assert lab.expires_at == later
    client.post(url, {"clear": "1"})
    lab.refresh_from_db()
    assert lab.expires_at is None
    events = AuditEvent.objects.filter(lab=lab, action="lab_expiry", actor=ivy)
    assert events.count() == 3 and all(e.result == AuditEvent.Result.SUCCEEDED for e in events)
    assert "to none" in events.first().message


def test_a_past_date_or_nothing_changes_nothing(client, ivy, lab):
    _expire_in(lab, timedelta(hours=3))
    before = lab.expires_at
    client.force_login(ivy)
    url = reverse("lab_expiry", args=[lab.pk])
    r = client.post(url, {"expires_at": "2001-01-01T00:00"})
    assert "must be in the future" in messages_of(r)[0]
    r = client.post(url, {})
    assert "Give the new expiry date" in messages_of(r)[-1]
    lab.refresh_from_db()
    assert lab.expires_at == before
    assert not AuditEvent.objects.filter(action="lab_expiry").exists()


def test_strangers_and_students_cannot_and_csrf_is_checked(client, alice, charlie, ivy, lab):
    url = reverse("lab_expiry", args=[lab.pk])
    for user in (alice, charlie):
        client.force_login(user)
        assert client.post(url, {"extend_days": "7"}).status_code == 404
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(ivy)
    assert csrf_client.post(url, {"extend_days": "7"}).status_code == 403
    lab.refresh_from_db()
    assert lab.expires_at is None
    # The service's own rule (labs.access.may_change_lab_expiry): not on a lab being torn down.
    Lab.objects.filter(pk=lab.pk).update(status=Lab.Status.TEARING_DOWN)
    lab.refresh_from_db()
    with pytest.raises(InvalidAction):
        set_lab_expiry(ivy, lab, timezone.now() + timedelta(days=1))


def test_time_left_never_says_zero_minutes(lab):
    assert left_words(timedelta(seconds=20)) == "less than a minute"
    _expire_in(lab, timedelta(seconds=-5))
    [notice] = expiring_soon([lab])
    assert "in less than a minute" in notice.words()
