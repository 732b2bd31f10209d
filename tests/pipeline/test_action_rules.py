"""Guest actions check who acts and the guest's state before any job is queued."""

from __future__ import annotations

import pytest

from labs.models import AuditEvent, Guest, Lab, StudentQuota, Task
from labs.services import InvalidAction, QuotaExceeded, allowed_actions, guest_action, memory_limits

from .helpers import work

pytestmark = pytest.mark.django_db(transaction=True)


def test_rebooting_a_stopped_guest_is_refused_with_a_reason(running_guest, alice):
    guest_action(alice, running_guest, "destroy")
    work(running_guest.host.queue_name)
    running_guest.refresh_from_db()
    tasks_before = Task.objects.count()

    with pytest.raises(InvalidAction) as info:
        guest_action(alice, running_guest, "reboot")

    assert info.value.message == "Cannot reboot alice's VM: it is stopped."
    assert Task.objects.count() == tasks_before
    refused = AuditEvent.objects.get(result="refused")
    assert (refused.action, refused.actor, refused.message) == ("reboot", alice, info.value.message)


def test_a_busy_guest_refuses_a_second_action(running_guest, alice, ivy):
    guest_action(alice, running_guest, "shutdown")
    assert allowed_actions(Guest.objects.get(pk=running_guest.pk)) == set()
    with pytest.raises(InvalidAction) as info:
        guest_action(ivy, running_guest, "reboot")
    assert "busy (shutdown)" in info.value.message
    assert Task.objects.filter(guest=running_guest, kind="reboot").count() == 0
    work(running_guest.host.queue_name)
    assert "start" in allowed_actions(Guest.objects.get(pk=running_guest.pk))


def test_who_may_act(running_guest, alice, bob, ivy, charlie, admin_user):
    for stranger in (bob, charlie):
        with pytest.raises(InvalidAction):
            guest_action(stranger, running_guest, "pause")
    assert Task.objects.filter(kind="pause").count() == 0
    # The owner, the lab's instructor and an admin may.
    for actor in (alice, ivy, admin_user):
        task = guest_action(actor, running_guest, "pause" if actor != ivy else "unpause")
        assert task.actor == actor
        work(running_guest.host.queue_name)


def test_a_student_may_not_delete_their_vm_through_the_service(running_guest, alice, ivy):
    # The registry's row says teardown is the instructor's: the service refuses it, not only the page.
    with pytest.raises(InvalidAction):
        guest_action(alice, running_guest, "teardown")
    assert not Task.objects.filter(kind="teardown").exists()
    assert Guest.objects.get(pk=running_guest.pk).status == "ready"
    assert guest_action(ivy, running_guest, "teardown").kind == "teardown"


def test_unknown_action(running_guest, alice):
    with pytest.raises(InvalidAction):
        guest_action(alice, running_guest, "rm -rf")
    with pytest.raises(InvalidAction):
        guest_action(alice, running_guest, "provision")  # a job kind, but not one users ask for


def test_mem_set_limits(running_guest, alice, template):
    g = running_guest
    assert memory_limits(g) == (32, 1024)
    with pytest.raises(QuotaExceeded) as info:
        guest_action(alice, g, "mem_set", memory_mb=2048)
    assert "template's maximum memory (1024 MiB)" in info.value.message
    Lab.objects.filter(pk=g.lab_id).update(max_guest_memory_mb=512)
    g.lab.refresh_from_db()
    assert memory_limits(g) == (32, 512)
    with pytest.raises(QuotaExceeded) as info:
        guest_action(alice, g, "mem_set", memory_mb=768)
    assert "lab's maximum memory per guest (512 MiB)" in info.value.message
    Lab.objects.filter(pk=g.lab_id).update(max_guest_memory_mb=1024)
    g.lab.refresh_from_db()
    with pytest.raises(QuotaExceeded):
        guest_action(alice, g, "mem_set", memory_mb=16)
    with pytest.raises(InvalidAction):
        guest_action(alice, g, "mem_set", memory_mb="512")

    # An admin lowers alice's total memory: the student quota now bounds mem-set.
    StudentQuota.objects.create(user=alice, max_guests=2, max_memory_mb=384)
    assert memory_limits(g) == (32, 384)
    with pytest.raises(QuotaExceeded) as info:
        guest_action(alice, g, "mem_set", memory_mb=512)
    assert "maximum total memory" in info.value.message and "alice" in info.value.message
    assert Guest.objects.get(pk=g.pk).busy_with == ""
    guest_action(alice, g, "mem_set", memory_mb=384)
    work(g.host.queue_name)
    assert Guest.objects.get(pk=g.pk).memory_mb == 384


def test_allowed_actions_follow_the_observed_state(running_guest):
    g = running_guest
    # A guest with a disk takes, returns to and deletes save points whatever its domain is doing;
    # a failed one may have no root to copy, so only deleting one is left.
    save_points = {"savepoint", "savepoint_return", "savepoint_delete"}
    assert (
        allowed_actions(g) == {"shutdown", "reboot", "destroy", "pause", "mem_set", "reset", "teardown"} | save_points
    )
    g.observed_state = "p"
    assert allowed_actions(g) == {"unpause", "destroy", "mem_set", "reset", "teardown"} | save_points
    g.observed_state = "c"
    assert allowed_actions(g) == {"destroy", "reset", "teardown"} | save_points
    g.observed_state = ""
    assert allowed_actions(g) == {"start", "reset", "teardown"} | save_points
    g.status = Guest.Status.FAILED
    assert allowed_actions(g) == {"reset", "teardown", "savepoint_delete"}
    g.status = Guest.Status.PROVISIONING
    assert allowed_actions(g) == set()
    g.status = Guest.Status.READY
    g.lab.status = "tearing_down"
    assert allowed_actions(g) == {"teardown"}
