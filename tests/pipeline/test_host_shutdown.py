"""A dom0 shut down and booted again: with the guide's xendomains its guests are "saved (host down)" while it
is silent and running again when it answers, with no action from anyone; without it, the lab page says
which VMs came back stopped and the instructor starts them in one confirmed click."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labs.jobs.host import LOST_IN_REBOOT
from labs.models import Guest, Host
from labs.services.actions import STOPPED, stopped_guests
from labs.services.registry import Situation, situation
from labs.services.upkeep import tick
from labs.templatetags.xenpanel import state_word

from .helpers import work

pytestmark = pytest.mark.django_db(transaction=True)


def _words() -> dict[str, str]:
    return {g.domain_name: state_word(g) for g in Guest.objects.select_related("host", "lab")}


def _silent_for(host: Host, minutes: int) -> None:
    """The host's worker last answered `minutes` ago (dom0 down meanwhile)."""
    Host.objects.filter(pk=host.pk).update(last_seen=timezone.now() - timedelta(minutes=minutes))


def _sync(host: Host) -> None:
    assert tick()["synced"] == 1
    work(host.queue_name)


def test_xendomains_saves_and_restores_the_guests_and_the_panel_follows(running_guest, host, sim):
    _sync(host)
    assert _words() == {"net-alice": "running", "net-bob": "running"}
    domids = {n: d["domid"] for n, d in sim.domains().items()}
    _silent_for(host, 5)
    assert _words() == {"net-alice": "saved (host down)", "net-bob": "saved (host down)"}
    sim.power_cycle(xendomains=True)
    _sync(host)
    assert _words() == {"net-alice": "running", "net-bob": "running"}
    assert all(sim.domains()[n]["domid"] > domids[n] for n in domids)  # restored: new domains
    assert sim.saved_images() == {}
    assert not Guest.objects.exclude(last_error="").exists()
    assert stopped_guests(running_guest.lab) == []


def test_a_dom0_back_without_its_guests_says_so_and_the_instructor_starts_them(running_guest, host, sim, client, ivy):
    from tests.conftest import PASSWORD

    _sync(host)
    _silent_for(host, 5)
    sim.power_cycle(xendomains=False)
    _sync(host)
    guests = list(Guest.objects.select_related("host", "lab"))
    assert {g.domain_name: state_word(g) for g in guests} == {"net-alice": "stopped", "net-bob": "stopped"}
    assert {g.last_error for g in guests} == {LOST_IN_REBOOT % {"host": host.name}}
    # The queryset the lab page counts with and the registry's situation agree.
    assert {g.pk for g in Guest.objects.filter(STOPPED)} == {g.pk for g in guests if situation(g) == Situation.STOPPED}

    client.login(username="ivy", password=PASSWORD)
    lab = running_guest.lab
    page = client.get(f"/labs/{lab.pk}/").content.decode()
    assert "Start the lab's stopped VMs (2)" in page
    confirm = client.get(f"/labs/{lab.pk}/start-stopped/").content.decode()
    assert "net-alice" in confirm and "came back after a silence without this VM" in confirm
    # Without the ticked box nothing starts.
    client.post(f"/labs/{lab.pk}/start-stopped/", {})
    assert not Guest.objects.exclude(busy_with="").exists()
    client.post(f"/labs/{lab.pk}/start-stopped/", {"confirm": "on"})
    assert set(Guest.objects.values_list("busy_with", flat=True)) == {"start"}
    work(host.queue_name)
    assert _words() == {"net-alice": "running", "net-bob": "running"}
    assert set(Guest.objects.values_list("last_error", flat=True)) == {""}


def test_a_vm_its_student_shut_down_before_the_host_went_silent_is_not_called_lost(running_guest, host, sim, alice):
    from labs.services import guest_action

    guest_action(alice, running_guest, "shutdown")
    work(host.queue_name)
    _silent_for(host, 5)
    sim.power_cycle(xendomains=False)
    _sync(host)
    alice_guest = Guest.objects.get(domain_name="net-alice")
    assert alice_guest.last_error == "" and alice_guest.observed_state == ""
