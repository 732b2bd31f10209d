"""A VM that reboots itself (a student types `reboot`) and that xl then cannot build again (libxl's hotplug
timeout, on a loaded dom0) is started by the panel, with the reason in the audit trail. A VM shut down from
inside, or rebooted from inside without trouble, is left as it is."""

from __future__ import annotations

import pytest

from labs.models import AuditEvent, Guest, Host, Task
from labs.services.upkeep import tick
from labs.templatetags.xenpanel import state_word

from .helpers import work

pytestmark = pytest.mark.django_db(transaction=True)


def _sync(host: Host) -> None:
    assert tick()["synced"] == 1
    work(host.queue_name)


def test_a_reboot_from_inside_that_xl_could_not_finish_is_started_by_the_panel(running_guest, host, sim):
    g = running_guest
    first = sim.domains()[g.domain_name]["domid"]
    sim.guest_reboot(g.domain_name, restart_fails=True)
    assert g.domain_name not in sim.domains()

    _sync(host)  # the dom0's sync sees it gone and reports what xl's log says
    g.refresh_from_db()
    assert g.last_error.startswith("The VM rebooted itself, but Xen could not start it again (unable to add disk")
    assert not Task.objects.filter(kind="start").exists()
    _sync(host)  # the panel's sync loop starts it

    start = Task.objects.get(kind="start")
    assert start.status == "succeeded", start.log
    assert start.actor is None  # the panel's own act
    g = Guest.objects.select_related("host", "lab").get(pk=g.pk)
    assert sim.domains()[g.domain_name]["domid"] > first
    assert state_word(g) == "running" and g.desired_state == "running"
    note = AuditEvent.objects.get(task=start).message
    assert "rebooted itself" in note and "unable to add disk devices" in note, note
    assert g.last_error == ""


def test_a_vm_shut_down_from_inside_stays_stopped(running_guest, host, sim):
    g = running_guest
    sim.shutdown(g.domain_name, wait=True)  # as `poweroff` in the guest: no panel job
    _sync(host)
    assert not Task.objects.filter(kind="start").exists()
    assert state_word(Guest.objects.select_related("host", "lab").get(pk=g.pk)) == "stopped"


def test_a_reboot_from_inside_that_xl_finished_needs_nothing(running_guest, host, sim):
    g = running_guest
    first = sim.domains()[g.domain_name]["domid"]
    sim.guest_reboot(g.domain_name)
    _sync(host)
    assert sim.domains()[g.domain_name]["domid"] > first
    assert not Task.objects.filter(kind="start").exists()
    assert sim.restart_failure(g.domain_name) == ""


def test_it_is_started_once_and_a_vm_its_student_started_first_is_left_alone(running_guest, host, sim, alice):
    from labs.services import guest_action

    g = running_guest
    sim.guest_reboot(g.domain_name, restart_fails=True)
    for _ in range(4):
        _sync(host)
    assert Task.objects.filter(kind="start").count() == 1

    # Again, but alice presses Start before the panel's loop gets to it: one start, hers.
    sim.guest_reboot(g.domain_name, restart_fails=True)
    _sync(host)
    guest_action(alice, Guest.objects.get(pk=g.pk), "start")
    work(host.queue_name)
    for _ in range(3):
        _sync(host)
    starts = list(Task.objects.filter(kind="start").order_by("pk"))
    assert len(starts) == 2 and starts[1].actor == alice and starts[1].status == "succeeded"
    assert Guest.objects.get(pk=g.pk).last_error == ""


def test_a_report_on_a_vm_its_student_stopped_starts_nothing(running_guest, host, alice):
    """The report comes from the dom0, which is trusted less than the panel: written by hand (a dom0's
    Redis and database users can) on a VM alice shut down from her page, it must not start it again."""
    from labs.services import guest_action
    from labs.services.actions import REBOOT_FAILED

    g = running_guest
    guest_action(alice, g, "shutdown")
    work(host.queue_name)
    Guest.objects.filter(pk=g.pk).update(last_error=REBOOT_FAILED % {"reason": "x" * 5000})
    _sync(host)
    _sync(host)
    assert not Task.objects.filter(kind="start").exists()
    assert state_word(Guest.objects.select_related("host", "lab").get(pk=g.pk)) == "stopped"
