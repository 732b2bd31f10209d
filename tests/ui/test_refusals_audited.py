"""Refusals made before any service is asked leave a "refused" audit row too: a page's or the API's missing
confirmation, the memory form's refusal, a console ticket the socket turned down."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labs.models import AuditEvent, Task
from labs.services import api_tokens
from labs.services.console import ConsoleTarget, record_refusal
from tests.ui.conftest import set_state

pytestmark = pytest.mark.django_db


def _refused(**kw) -> AuditEvent:
    return AuditEvent.objects.get(result=AuditEvent.Result.REFUSED, **kw)


def test_the_memory_form_s_refusal_is_recorded(client, alice, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(alice)
    client.post(reverse("guest_action", args=[alice_guest.pk, "mem_set"]), {"memory_mb": "4096"})
    assert _refused(action="mem_set", guest=alice_guest).actor == alice


def test_a_page_s_missing_confirmation_is_recorded(client, alice, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(alice)
    client.post(reverse("guest_action", args=[alice_guest.pk, "destroy"]))
    assert _refused(action="destroy", guest=alice_guest).message == "The confirmation box was not ticked."
    assert not Task.objects.exists()


def test_the_api_s_missing_confirmation_is_recorded(client, ivy, alice_guest, lab):
    set_state(alice_guest, "r")
    token = api_tokens.create_token(ivy, "script", 30)[1]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    url = reverse("api:guest_action", args=[alice_guest.pk, "teardown"])
    assert client.post(url, "{}", content_type="application/json", **auth).status_code == 400
    assert _refused(action="teardown", guest=alice_guest).message.startswith("Nothing was done: send confirm: true.")
    url = reverse("api:lab_teardown", args=[lab.pk])
    assert client.post(url, "{}", content_type="application/json", **auth).status_code == 400
    assert _refused(action="teardown", lab=lab, guest=None).actor == ivy
    assert not Task.objects.exists()


def test_a_console_ticket_refused_at_the_socket_is_recorded(alice, alice_guest):
    target = ConsoleTarget(
        guest_id=alice_guest.pk,
        lab_id=alice_guest.lab_id,
        domain=alice_guest.domain_name,
        queue="dom0-a",
        writable=True,
        can_take_over=False,
        username="alice",
    )
    record_refusal(target, alice.pk, "invalid, used or expired ticket")
    row = _refused(action="console_open", guest=alice_guest)
    assert row.lab_id == alice_guest.lab_id and row.message == "invalid, used or expired ticket"
    # The socket itself records it (tests/ui/test_console_socket.py: a replayed, a missing, a made-up ticket).
