"""Issue 15: the guest page and its memory form say which limit binds, in words, and never pre-fill a refused size."""

from __future__ import annotations

from django.urls import reverse

from labs.models import Guest, Lab, StudentQuota, Task
from tests.conftest import make_guest
from tests.ui.conftest import messages_of, set_state


def _page_with_quota(client, alice, alice_guest, quota_mb: int, others_mb: int) -> str:
    """alice's running VM's page, with a quota and another VM of hers in another lab holding `others_mb`."""
    set_state(alice_guest, "r")
    StudentQuota.objects.create(user=alice, max_guests=3, max_memory_mb=quota_mb)
    lab = alice_guest.lab
    other_lab = Lab.objects.create(name="Systems", slug="sys", template=lab.template, pool=lab.pool, memory_mb=256)
    Guest.objects.filter(pk=make_guest(other_lab, alice, alice_guest.host, 3).pk).update(memory_mb=others_mb)
    client.force_login(alice)
    return client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()


def test_the_page_says_which_limit_binds(client, alice, alice_guest):
    body = _page_with_quota(client, alice, alice_guest, 1024, 640)
    assert "You can give this VM at most 384 MiB: your quota is 1024 MiB and your other VMs use 640 MiB." in body
    assert 'max="384"' in body and 'value="256"' in body


def test_a_vm_over_a_lowered_lab_limit_is_shown_over_and_the_form_offers_the_limit(client, alice, alice_guest):
    set_state(alice_guest, "r")
    Lab.objects.filter(pk=alice_guest.lab_id).update(max_guest_memory_mb=128)
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert "over its limit" in body
    assert "This VM has 256 MiB, more than the 128 MiB it may have now." in body
    assert 'value="128"' in body and 'max="128"' in body
    assert 'value="256"' not in body
    assert "the lab allows at most 128 MiB per VM" in body


def test_a_stopped_vm_over_its_limit_is_shown_over_too(client, ivy, alice_guest):
    set_state(alice_guest, "")
    Lab.objects.filter(pk=alice_guest.lab_id).update(max_guest_memory_mb=128)
    client.force_login(ivy)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert "over its limit" in body
    assert "Memory can be changed while the VM runs or is paused." in body


def test_a_refused_size_names_the_limit_not_djangos_bound(client, alice, alice_guest):
    set_state(alice_guest, "r")
    StudentQuota.objects.create(user=alice, max_guests=3, max_memory_mb=300)
    client.force_login(alice)
    r = client.post(reverse("guest_action", args=[alice_guest.pk, "mem_set"]), {"memory_mb": "512"})
    [message] = messages_of(r)
    assert "less than or equal to" not in message
    assert "alice would use 512 MiB of memory; the limit is 300 MiB" in message
    assert "You can give this VM at most 300 MiB: your quota is 300 MiB and your other VMs use 0 MiB." in message
    assert not Task.objects.filter(kind="mem_set").exists()


def test_no_size_fits_disables_the_form_and_says_why(client, alice, alice_guest):
    body = _page_with_quota(client, alice, alice_guest, 270, 250)
    assert "No memory size fits this VM now" in body
    assert 'id="id_memory_mb"' in body and "disabled>" in body.split('id="id_memory_mb"', 1)[1].split("\n", 1)[0]


def test_my_vms_marks_a_vm_over_a_lowered_lab_limit(client, alice, alice_guest):
    client.force_login(alice)
    assert "over its limit" not in client.get(reverse("my_vms")).content.decode()
    Lab.objects.filter(pk=alice_guest.lab_id).update(max_guest_memory_mb=128)
    assert "over its limit" in client.get(reverse("my_vms")).content.decode()
