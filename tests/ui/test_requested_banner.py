"""Issue 15: a queued action's banner says "Requested" (not "Done"), and gives way to the live state."""

from __future__ import annotations

from django.urls import reverse

from labs.models import Guest, Task
from labs.services.registry import GUEST_ACTIONS, STEP_LABELS
from tests.ui.conftest import set_state


def test_the_banner_says_requested_while_the_job_runs(client, alice, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(alice)
    r = client.post(reverse("guest_action", args=[alice_guest.pk, "reboot"]), follow=True)
    body = r.content.decode()
    assert 'id="requested-banner"' in body
    assert "<strong>Requested:</strong>" in body and "Done:" not in body
    assert "Reboot of net101-alice." in body


def test_the_banner_gives_way_once_the_job_ended(client, alice, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(alice)
    client.post(reverse("guest_action", args=[alice_guest.pk, "reboot"]))
    # The job ends before the page is read: the live state says how, not the banner.
    Guest.objects.filter(pk=alice_guest.pk).update(busy_with="")
    Task.objects.update(status=Task.Status.SUCCEEDED)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert "requested-banner" not in body and "Requested:" not in body
    assert "Last job: reboot, succeeded." in body


def test_a_poll_after_the_job_removes_the_banner(client, alice, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(alice)
    url = reverse("guest_live", args=[alice_guest.pk])
    busy = set_state(alice_guest, "r", busy="reboot")
    Task.objects.create(kind="reboot", guest=busy, status=Task.Status.RUNNING, steps_total=1)
    assert 'hx-swap-oob="delete"' not in client.get(url, HTTP_HX_REQUEST="true").content.decode()
    set_state(alice_guest, "r")
    Task.objects.update(status=Task.Status.SUCCEEDED)
    body = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert '<div id="requested-banner" hx-swap-oob="delete"></div>' in body


def test_lab_actions_say_requested_too(client, ivy, lab, alice_guest):
    set_state(alice_guest, "", status=Guest.Status.FAILED)
    client.force_login(ivy)
    body = client.post(reverse("lab_action", args=[lab.pk, "retry_failed"]), follow=True).content.decode()
    assert "<strong>Requested:</strong>" in body and "1 jobs queued" in body


def test_job_log_steps_are_words_in_both_languages(client, alice, alice_guest):
    Task.objects.create(kind="mem_set", guest=alice_guest, status=Task.Status.SUCCEEDED, step="mem_set")
    Task.objects.create(kind="unpause", guest=alice_guest, status=Task.Status.SUCCEEDED, step="unpause")
    Task.objects.create(kind="provision", guest=alice_guest, status=Task.Status.SUCCEEDED, step="customize")
    client.force_login(alice)
    url = reverse("guest_detail", args=[alice_guest.pk])
    body = client.get(url).content.decode()
    log = body.split('id="job-log"', 1)[1]
    assert "mem_set" not in log and " unpause<" not in log
    assert "memory change" in log and "resume" in log and "write the VM&#x27;s settings" in log
    log = client.get(url, HTTP_ACCEPT_LANGUAGE="pt-br").content.decode().split('id="job-log"', 1)[1]
    assert "alteração de memória" in log and "escrever as configurações da VM" in log


def test_every_step_an_action_records_has_words():
    for action in GUEST_ACTIONS.values():
        for step in action.job_steps:
            assert step in STEP_LABELS or step in GUEST_ACTIONS, (action.name, step)
