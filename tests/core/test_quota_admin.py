"""A quota or lab limit an admin edits in the Django admin is what the service layer enforces next.

Each test edits through the admin's own forms (GET the page, POST it back as a
browser would), then calls the services the panel's views call. The tests run
inside a transaction that never commits, so no job reaches Redis.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from labs.models import Guest, Lab, StudentQuota
from labs.roster import RosterEntry
from labs.services import QuotaExceeded, create_lab_batch, guest_action


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


def roster(*users) -> list[RosterEntry]:
    return [RosterEntry(line=i, username=u.username, full_name="", email=u.email) for i, u in enumerate(users, 1)]


def running(guest: Guest) -> Guest:
    Guest.objects.filter(pk=guest.pk).update(status=Guest.Status.READY, observed_state="r")
    guest.refresh_from_db()
    return guest


def set_quota_on_user_page(staff, admin_form, user, **values) -> None:
    page = reverse("admin:auth_user_change", args=[user.pk])
    data = admin_form(staff.get(page), "user_form")
    if data.get("quota-TOTAL_FORMS") == ["0"]:
        data["quota-TOTAL_FORMS"] = ["1"]
    for name, value in values.items():
        data[f"quota-0-{name}"] = [str(value)]
    r = staff.post(page, data)
    assert r.status_code == 302, r.context and r.context["inline_admin_formsets"][0].formset.errors


def set_quota_on_quota_page(staff, admin_form, quota: StudentQuota, **values) -> None:
    page = reverse("admin:labs_studentquota_change", args=[quota.pk])
    data = admin_form(staff.get(page), "studentquota_form")
    for name, value in values.items():
        data[name] = [str(value)]
    assert staff.post(page, data).status_code == 302


def test_guest_limit_set_in_the_admin_stops_the_next_batch(staff, admin_form, ivy, alice, host, template, pool):
    lab = create_lab_batch(ivy, template, pool, roster(alice), 256, name="First", slug="first").lab
    assert Guest.objects.filter(student=alice).count() == 1

    set_quota_on_user_page(staff, admin_form, alice, max_guests=1, max_memory_mb=4096, max_save_points=3)
    with pytest.raises(QuotaExceeded) as refused:
        create_lab_batch(ivy, template, pool, roster(alice), 256, name="Second", slug="second")
    assert "alice" in refused.value.message
    assert "maximum guests" in refused.value.message
    assert "the limit is 1" in refused.value.message
    assert not Lab.objects.filter(slug="second").exists()

    set_quota_on_quota_page(staff, admin_form, StudentQuota.objects.get(user=alice), max_guests=2)
    create_lab_batch(ivy, template, pool, roster(alice), 256, name="Second", slug="second")
    assert Guest.objects.filter(student=alice).count() == 2
    assert lab.guests.count() == 1


def test_memory_limit_set_in_the_admin_stops_a_mem_set(staff, admin_form, alice, alice_guest):
    guest = running(alice_guest)  # 256 MiB
    page = reverse("admin:labs_studentquota_add")
    data = admin_form(staff.get(page), "studentquota_form")
    data.update({"user": [str(alice.pk)], "max_guests": ["2"], "max_memory_mb": ["300"]})
    assert staff.post(page, data).status_code == 302

    with pytest.raises(QuotaExceeded) as refused:
        guest_action(alice, guest, "mem_set", memory_mb=512)
    assert "alice" in refused.value.message
    assert "maximum total memory" in refused.value.message
    assert "300 MiB" in refused.value.message

    set_quota_on_quota_page(staff, admin_form, StudentQuota.objects.get(user=alice), max_memory_mb=1024)
    task = guest_action(alice, guest, "mem_set", memory_mb=512)
    assert task.kind == "mem_set" and task.args == {"memory_mb": 512}


def test_lab_memory_ceiling_set_in_the_admin_stops_a_mem_set(staff, admin_form, alice, lab, alice_guest):
    guest = running(alice_guest)
    page = reverse("admin:labs_lab_change", args=[lab.pk])
    data = admin_form(staff.get(page), "lab_form")
    data["max_guest_memory_mb"] = ["384"]
    assert staff.post(page, data).status_code == 302

    with pytest.raises(QuotaExceeded) as refused:
        guest_action(alice, guest, "mem_set", memory_mb=512)
    assert "maximum memory per guest (384 MiB)" in refused.value.message
    assert guest_action(alice, guest, "mem_set", memory_mb=384).args == {"memory_mb": 384}


def test_save_point_limit_set_in_the_admin_stops_the_next_save_point(staff, admin_form, alice, alice_guest):
    from labs.services import save_points

    guest = running(alice_guest)
    set_quota_on_user_page(staff, admin_form, alice, max_guests=2, max_memory_mb=2048, max_save_points=1)
    save_points.take(alice, guest, "first")
    Guest.objects.filter(pk=guest.pk).update(busy_with="")  # as if its job were done
    with pytest.raises(QuotaExceeded, match="alice already has 1 save point"):
        save_points.take(alice, guest, "second")
    set_quota_on_quota_page(staff, admin_form, StudentQuota.objects.get(user=alice), max_save_points=2)
    assert save_points.take(alice, guest, "second").kind == "savepoint"
