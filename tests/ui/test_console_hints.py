"""Why a guest's domain went away, as the console agent asks (services.console.why_down): restart or end, and why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labs.models import Guest, Lab, Task
from labs.services.console import RECENT_ACTION_SECONDS, why_down


@pytest.mark.parametrize(
    "busy, answer",
    [
        ("reboot", "reboot"),
        ("reset", "reset"),
        ("shutdown", "shutdown"),
        ("destroy", "destroyed"),
        ("teardown", "deleted"),
    ],
)
def test_the_action_running_on_the_guest_says_why(alice_guest, host, busy, answer):
    Guest.objects.filter(pk=alice_guest.pk).update(busy_with=busy)
    assert why_down(host.queue_name, alice_guest.domain_name) == answer


def test_a_quick_action_already_over_still_counts_while_recent(alice_guest, host, alice):
    task = Task.objects.create(kind="destroy", guest=alice_guest, host=host, actor=alice, status="succeeded")
    assert why_down(host.queue_name, alice_guest.domain_name) == "destroyed"
    Task.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(seconds=RECENT_ACTION_SECONDS + 1))
    assert why_down(host.queue_name, alice_guest.domain_name) == ""  # a reboot typed in the guest, say


def test_a_guest_meant_to_be_off_or_gone(alice_guest, host, lab):
    assert why_down(host.queue_name, alice_guest.domain_name) == ""
    Guest.objects.filter(pk=alice_guest.pk).update(desired_state=Guest.Desired.STOPPED)
    assert why_down(host.queue_name, alice_guest.domain_name) == "shutdown"
    Lab.objects.filter(pk=lab.pk).update(status=Lab.Status.TEARING_DOWN)
    assert why_down(host.queue_name, alice_guest.domain_name) == "deleted"
    assert why_down(host.queue_name, "no-such-guest") == "deleted"
    assert why_down("another-queue", alice_guest.domain_name) == "deleted"  # only this host's guests


def test_a_vm_the_panel_brings_back_after_a_failed_reboot_from_inside(alice_guest, host):
    from labs.services.actions import REBOOT_FAILED

    Guest.objects.filter(pk=alice_guest.pk).update(last_error=REBOOT_FAILED % {"reason": "unable to add disk devices"})
    assert why_down(host.queue_name, alice_guest.domain_name) == "reboot"  # reported, the start is next
    Guest.objects.filter(pk=alice_guest.pk).update(last_error="", busy_with="start")
    assert why_down(host.queue_name, alice_guest.domain_name) == "reboot"  # being started
