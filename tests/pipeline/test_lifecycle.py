"""Every lifecycle action, run by a real RQ worker on the simulated dom0, ends in the right state."""

from __future__ import annotations

import netaddr
import pytest

from labs.jobs import guest as jobs
from labs.models import AuditEvent, Guest, Task
from labs.services import allowed_actions, create_lab_batch, guest_action
from labs.services.ipam import free_ips
from labs.services.upkeep import tick

from .helpers import roster, work

pytestmark = pytest.mark.django_db(transaction=True)


def act(actor, guest: Guest, action: str, **kw) -> Task:
    task = guest_action(actor, guest, action, **kw)
    assert Guest.objects.get(pk=guest.pk).busy_with == action
    work(guest.host.queue_name)
    task.refresh_from_db()
    assert task.status == "succeeded", task.log
    if Guest.objects.filter(pk=guest.pk).exists():
        guest.refresh_from_db()
        assert guest.busy_with == ""
    return task


def test_shutdown_start_destroy_reboot(running_guest, alice, sim):
    g = running_guest
    act(alice, g, "shutdown")
    assert g.observed_state == "" and g.desired_state == "stopped"
    assert g.domain_name not in sim.domains()
    assert "start" in allowed_actions(g) and "reboot" not in allowed_actions(g)

    act(alice, g, "start")
    assert g.observed_state in ("r", "b") and g.desired_state == "running"
    first_domid = sim.domains()[g.domain_name]["domid"]

    act(alice, g, "reboot")
    assert sim.domains()[g.domain_name]["domid"] > first_domid

    act(alice, g, "destroy")
    assert g.observed_state == "" and g.domain_name not in sim.domains()
    # Volumes and config survive a power-off.
    assert {"vm-net-alice.raiz", "vm-net-alice.swap"} <= set(sim.volumes())
    assert "net-alice" in sim.configs()


def test_a_reboot_waits_for_the_new_domain(running_guest, alice, sim):
    g = running_guest
    first_domid = sim.domains()[g.domain_name]["domid"]
    task = act(alice, g, "reboot")
    new_domid = sim.domains()[g.domain_name]["domid"]
    assert new_domid > first_domid and g.observed_state in ("r", "b")
    assert f"{g.domain_name} is back as domain {new_domid}" in task.log
    assert "xl create" not in task.log


def test_a_reboot_that_xl_could_not_finish_starts_the_guest_again(running_guest, alice, sim, monkeypatch):
    """On the testbed xl's rebuild of a rebooting guest hit libxl's hotplug timeout and the guest was gone."""
    monkeypatch.setattr(jobs, "REBOOT_GONE_SECONDS", 0.0)
    monkeypatch.setattr(jobs, "REBOOT_POLL_SECONDS", 0.01)
    g = running_guest
    first_domid = sim.domains()[g.domain_name]["domid"]
    sim.inject("reboot", "restart_fails", times=1, match=g.domain_name)
    task = act(alice, g, "reboot")
    assert "xl could not build the rebooted domain again" in task.log and f"xl create {g.domain_name}" in task.log
    assert sim.domains()[g.domain_name]["domid"] > first_domid
    assert g.observed_state in ("r", "b") and g.last_error == ""


def test_pause_unpause(running_guest, alice, sim):
    g = running_guest
    act(alice, g, "pause")
    assert g.observed_state == "p" and sim.domains()[g.domain_name]["state"] == "--p---"
    assert allowed_actions(g) >= {"unpause", "destroy"} and "pause" not in allowed_actions(g)
    act(alice, g, "unpause")
    assert g.observed_state in ("r", "b") and sim.domains()[g.domain_name]["state"] == "-b----"


def test_mem_set_changes_the_domain_and_the_config(running_guest, ivy, sim):
    g = running_guest
    task = act(ivy, g, "mem_set", memory_mb=512)
    assert task.args == {"memory_mb": 512}
    assert g.memory_mb == 512
    assert sim.domains()[g.domain_name]["memory_mb"] == 512
    assert sim.configs()[g.domain_name]["spec"]["memory_mb"] == 512
    event = AuditEvent.objects.get(task=task)
    assert (event.action, event.result, event.actor) == ("mem_set", "succeeded", ivy)


def test_reset_recreates_the_root_volume(running_guest, alice, sim):
    g = running_guest
    old_root = sim.volume_serial(g.root_lv)
    old_swap = sim.volume_serial(g.swap_lv)
    old_domid = sim.domains()[g.domain_name]["domid"]

    task = act(alice, g, "reset")

    assert (task.steps_done, task.steps_total) == (7, 7)
    assert sim.volume_serial(g.root_lv) != old_root  # a new volume, freshly cloned
    assert sim.volume_serial(g.swap_lv) == old_swap
    assert sim.volumes()[g.root_lv]["content"] == "fs"
    assert sim.volumes()[g.root_lv]["files"]["/etc/hostname"] == "net-alice\n"
    assert sim.domains()[g.domain_name]["domid"] > old_domid
    assert g.status == "ready" and g.observed_state in ("r", "b")


def test_teardown_leaves_nothing_and_frees_ip_and_mac(running_guest, alice, ivy, template, pool, host, sim):
    g = running_guest
    ip, mac, name = g.ip, g.mac, g.domain_name
    assert netaddr.IPAddress(ip) not in free_ips(pool)

    task = act(ivy, g, "teardown")

    assert not Guest.objects.filter(pk=g.pk).exists()
    assert name not in sim.domains()
    assert name not in sim.configs()
    assert not any(v.startswith(f"vm-{name}.") for v in sim.volumes())
    # bob's guest is untouched.
    assert "net-bob" in sim.domains() and "vm-net-bob.raiz" in sim.volumes()
    assert netaddr.IPAddress(ip) in free_ips(pool)
    event = AuditEvent.objects.get(task=task)
    assert (event.action, event.result, event.target, event.guest) == ("teardown", "succeeded", name, None)

    # The address, MAC and name are usable again: a new lab gets the lowest free IP.
    result = create_lab_batch(ivy, template, pool, roster("zoe"), memory_mb=256)
    assert result.guests[0].ip == ip
    assert not Guest.objects.filter(mac=mac).exists()


def test_lab_teardown_ends_with_the_lab_torn_down(running_guest, ivy, sim):
    from labs.services import lab_action

    lab = running_guest.lab
    tasks = lab_action(ivy, lab, "teardown")
    assert len(tasks) == 2
    lab.refresh_from_db()
    assert lab.status == "tearing_down"
    work(running_guest.host.queue_name)
    lab.refresh_from_db()
    # The jobs are done, but closing the lab is the panel's: the next tick of the sync loop does it.
    assert lab.status == "tearing_down"
    assert tick()["teardowns"] == 0
    lab.refresh_from_db()
    assert lab.status == "torn_down"
    assert not Guest.objects.filter(lab=lab).exists()
    assert sim.domains() == {} and sim.volumes() == {} and sim.configs() == {}
    assert AuditEvent.objects.get(action="teardown_lab").result == "succeeded"


def test_lab_without_guests_is_torn_down_at_once(ivy, alice, bob, running_guest, sim):
    from labs.services import lab_action

    lab = running_guest.lab
    for guest in Guest.objects.filter(lab=lab):
        act(ivy, guest, "teardown")
    assert lab_action(ivy, lab, "teardown") == []
    assert lab.status == "torn_down"
    assert AuditEvent.objects.get(action="teardown_lab").result == "succeeded"
