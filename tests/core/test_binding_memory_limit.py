"""Issue 15: which memory limit binds a guest is decided once (labs.services.limits) and said in words.

The memory form, the guest page and the mem_set refusal all read
guest_memory_limit(); a lab limit under what the lab's VMs hold is refused
in the admin (the change form and the list's in-place edit).
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from labs.models import Guest, Host, Lab, StudentQuota
from labs.services import QuotaExceeded, guest_action
from labs.services.limits import Binds, guest_memory_limit, lab_limit_refusal
from tests.conftest import make_guest


def _running(guest: Guest) -> Guest:
    Guest.objects.filter(pk=guest.pk).update(status=Guest.Status.READY, observed_state="r")
    return Guest.objects.select_related("lab__template", "host", "student").get(pk=guest.pk)


def test_the_quota_binds_with_its_numbers_in_the_issues_words(alice, alice_guest, host, template, pool):
    StudentQuota.objects.create(user=alice, max_guests=3, max_memory_mb=1024)
    other_lab = Lab.objects.create(name="Systems", slug="sys", template=template, pool=pool, memory_mb=640)
    Guest.objects.filter(pk=make_guest(other_lab, alice, host, 3).pk).update(memory_mb=640)
    limit = guest_memory_limit(_running(alice_guest))
    assert (limit.binds, limit.high, limit.quota_mb, limit.others_mb) == (Binds.QUOTA, 384, 1024, 640)
    assert limit.explain(True) == (
        "You can give this VM at most 384 MiB: your quota is 1024 MiB and your other VMs use 640 MiB."
    )
    # An instructor reading the same page is told whose quota it is.
    assert limit.explain(False) == (
        "This VM can have at most 384 MiB: alice's quota is 1024 MiB and their other VMs use 640 MiB."
    )


@pytest.mark.parametrize(
    ("setup", "binds", "high", "words"),
    [
        ({}, Binds.TEMPLATE, 1024, "the template debian-12 allows at most 1024 MiB"),
        ({"lab": 300}, Binds.LAB, 300, "the lab allows at most 300 MiB per VM"),
        ({"host_total": 1024 + 556}, Binds.HOST, 556, "host dom0-a has 300 MiB free besides this VM's"),
    ],
)
def test_each_limit_can_bind_and_is_named(alice_guest, host, setup, binds, high, words):
    if "lab" in setup:
        Lab.objects.filter(pk=alice_guest.lab_id).update(max_guest_memory_mb=setup["lab"])
    if "host_total" in setup:
        Host.objects.filter(pk=host.pk).update(total_memory_mb=setup["host_total"], dom0_reserve_mb=1024)
    limit = guest_memory_limit(_running(alice_guest))
    assert (limit.binds, limit.high) == (binds, high)
    assert words in limit.explain(True)


def test_a_lab_limit_under_the_vm_shows_it_over_and_never_suggests_a_refused_size(alice, alice_guest):
    Lab.objects.filter(pk=alice_guest.lab_id).update(max_guest_memory_mb=128)
    guest = _running(alice_guest)
    limit = guest_memory_limit(guest)
    assert limit.over and limit.binds == Binds.LAB
    assert "256 MiB, more than the 128 MiB" in limit.over_words()
    assert limit.suggested_mb() == 128  # not its 256 MiB, which the form refuses
    with pytest.raises(QuotaExceeded, match=r"maximum memory per guest \(128 MiB\)"):
        guest_action(alice, guest, "mem_set", memory_mb=256)


def test_no_size_fits_when_the_quota_is_spent(alice, alice_guest, host, template, pool):
    StudentQuota.objects.create(user=alice, max_guests=3, max_memory_mb=270)
    limit = guest_memory_limit(_running(alice_guest))
    assert limit.fits  # 270 MiB for this one alone
    other_lab = Lab.objects.create(name="Systems", slug="sys", template=template, pool=pool, memory_mb=256)
    Guest.objects.filter(pk=make_guest(other_lab, alice, host, 3).pk).update(memory_mb=250)
    limit = guest_memory_limit(_running(alice_guest))
    assert not limit.fits and limit.high == 20
    assert limit.explain(True).startswith("No memory size fits this VM now (a VM needs at least 32 MiB): your quota")


def test_lab_limit_refusal_names_the_biggest_vm_and_the_labs_size(lab, alice_guest, bob_guest):
    Guest.objects.filter(pk=bob_guest.pk).update(memory_mb=512)
    refusal = lab_limit_refusal(lab, 384)
    assert refusal is not None
    assert f"1 VM of this lab has more memory than 384 MiB ({bob_guest.domain_name} has 512 MiB)" in refusal
    assert lab_limit_refusal(lab, 512) is None
    Lab.objects.filter(pk=lab.pk).update(memory_mb=600)
    lab.refresh_from_db()
    assert "the lab's memory per VM (600 MiB)" in (lab_limit_refusal(lab, 512) or "")


def test_the_admin_refuses_a_lab_limit_under_its_vms(client, admin_user, admin_form, lab, alice_guest):
    client.force_login(admin_user)
    page = reverse("admin:labs_lab_change", args=[lab.pk])
    data = admin_form(client.get(page), "lab_form")
    data["max_guest_memory_mb"] = ["64"]
    r = client.post(page, data)
    assert r.status_code == 200
    assert "1 VM of this lab has more memory than 64 MiB (net101-alice has 256 MiB)" in r.content.decode()
    lab.refresh_from_db()
    assert lab.max_guest_memory_mb == 1024  # unchanged


def test_the_admin_list_refuses_it_too(client, admin_user, lab, alice_guest):
    client.force_login(admin_user)
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(lab.pk),
        "form-0-max_guest_memory_mb": "64",
        "_save": "Save",
    }
    r = client.post(reverse("admin:labs_lab_changelist"), data)
    assert r.status_code == 200 and "more memory than 64 MiB (net101-alice has 256 MiB)" in r.content.decode()
    lab.refresh_from_db()
    assert lab.max_guest_memory_mb == 1024
