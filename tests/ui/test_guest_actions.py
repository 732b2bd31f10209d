"""Guest actions from the browser: POST only, state guards, confirmations, messages."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labs.models import AuditEvent, Guest, Task
from tests.ui.conftest import messages_of, set_state


def _post(client, guest, action, **data):
    return client.post(reverse("guest_action", args=[guest.pk, action]), data)


def test_get_is_refused(client, alice, running_guest):
    client.force_login(alice)
    assert client.get(reverse("guest_action", args=[running_guest.pk, "reboot"])).status_code == 405
    assert not Task.objects.exists()


def test_reboot_queues_a_task_and_says_so(client, alice, running_guest):
    client.force_login(alice)
    r = _post(client, running_guest, "reboot")
    assert r.status_code == 302
    assert r["Location"] == reverse("guest_detail", args=[running_guest.pk])
    task = Task.objects.get()
    assert (task.kind, task.guest, task.actor) == ("reboot", running_guest, alice)
    running_guest.refresh_from_db()
    assert running_guest.busy_with == "reboot"
    assert any("Reboot of net101-alice" in m for m in messages_of(r))  # "Requested:", not "Done:" (issue 15)


def test_refused_action_changes_nothing_and_explains(client, alice, alice_guest):
    set_state(alice_guest, "")  # stopped
    client.force_login(alice)
    r = _post(client, alice_guest, "reboot")
    assert r.status_code == 302
    assert not Task.objects.exists()
    alice_guest.refresh_from_db()
    assert alice_guest.busy_with == ""
    msgs = messages_of(r)
    assert any("Cannot reboot alice's VM: it is stopped." in m for m in msgs), msgs


def test_message_is_shown_on_the_next_page(client, alice, alice_guest):
    set_state(alice_guest, "")
    client.force_login(alice)
    r = _post(client, alice_guest, "shutdown")
    body = client.get(r["Location"]).content.decode()
    assert "Cannot shut down alice&#x27;s VM: it is stopped." in body


def test_busy_guest_refuses_a_second_action(client, alice, running_guest):
    client.force_login(alice)
    _post(client, running_guest, "reboot")
    r = _post(client, running_guest, "shutdown")
    assert Task.objects.count() == 1
    assert any("busy" in m for m in messages_of(r))


@pytest.mark.parametrize("action", ["destroy", "reset"])
def test_destructive_action_needs_the_box_ticked(client, alice, running_guest, action):
    client.force_login(alice)
    r = _post(client, running_guest, action)
    assert r["Location"] == reverse("guest_confirm", args=[running_guest.pk, action])
    assert not Task.objects.exists()
    assert any("tick the confirmation box" in m for m in messages_of(r))
    r = _post(client, running_guest, action, confirm="on")
    assert Task.objects.get().kind == action


def test_confirm_page_explains_the_risk(client, alice, running_guest):
    client.force_login(alice)
    body = client.get(reverse("guest_confirm", args=[running_guest.pk, "destroy"])).content.decode()
    assert "pulling the power plug" in body
    assert "corrupted" in body
    assert 'type="checkbox"' in body and 'name="confirm"' in body
    body = client.get(reverse("guest_confirm", args=[running_guest.pk, "reset"])).content.decode()
    assert "every file" in body


def test_student_cannot_delete_their_vm(client, alice, running_guest):
    client.force_login(alice)
    assert _post(client, running_guest, "teardown", confirm="on").status_code == 404
    assert not Task.objects.exists()


def test_instructor_deletes_a_vm_and_returns_to_the_lab(client, ivy, running_guest, lab):
    client.force_login(ivy)
    r = _post(client, running_guest, "teardown", confirm="on")
    assert r["Location"] == reverse("lab_detail", args=[lab.pk])
    assert Task.objects.get().kind == "teardown"
    running_guest.refresh_from_db()
    assert running_guest.status == Guest.Status.TEARING_DOWN


def test_other_student_gets_404_and_nothing_happens(client, bob, running_guest):
    client.force_login(bob)
    assert _post(client, running_guest, "reboot").status_code == 404
    assert not Task.objects.exists()


def test_mem_set_within_limits(client, alice, running_guest):
    client.force_login(alice)
    _post(client, running_guest, "mem_set", memory_mb="512")
    task = Task.objects.get()
    assert task.kind == "mem_set"
    assert task.args == {"memory_mb": 512}


@pytest.mark.parametrize("value", ["4096", "8", "lots", ""])
def test_mem_set_bad_value_is_refused_with_a_message(client, alice, running_guest, value):
    client.force_login(alice)
    r = _post(client, running_guest, "mem_set", memory_mb=value)
    assert r.status_code == 302
    assert not Task.objects.exists()
    assert any(m.startswith("Memory not changed") for m in messages_of(r))


def test_next_must_be_local(client, alice, running_guest):
    client.force_login(alice)
    r = _post(client, running_guest, "reboot", next="https://evil.example/")
    assert r["Location"] == reverse("guest_detail", args=[running_guest.pk])


def test_refusal_is_audited(client, alice, alice_guest):
    set_state(alice_guest, "")
    client.force_login(alice)
    _post(client, alice_guest, "pause")
    assert AuditEvent.objects.filter(result=AuditEvent.Result.REFUSED, action="pause").exists()
