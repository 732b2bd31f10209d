"""The guest page's console card and its ticket endpoint: who gets what, the rate limit, no inline script."""

from __future__ import annotations

import re

import django_rq
import pytest
from django.urls import reverse

from labs.models import AuditEvent
from labs.services import console


@pytest.fixture
def redis():
    conn = django_rq.get_connection("default")
    conn.flushdb()
    yield conn
    conn.flushdb()


def test_a_ticket_is_short_lived_single_and_bound(client, redis, alice, alice_guest):
    client.force_login(alice)
    response = client.post(reverse("console_ticket", args=[alice_guest.pk]))
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"] and "no-store" in response["Cache-Control"]
    token = response.json()["ticket"]
    assert response.json()["seconds"] == console.TICKET_SECONDS == 30
    key = console.ticket_key(token)
    assert 0 < redis.ttl(key) <= 30
    stored = redis.get(key).decode()
    assert f'"u": {alice.pk}' in stored and f'"g": {alice_guest.pk}' in stored
    assert client.session.session_key not in stored  # a hash of it, not the key itself
    assert client.get(reverse("console_ticket", args=[alice_guest.pk])).status_code == 405


def test_opening_consoles_is_limited_per_user_with_a_clear_message(
    client, redis, monkeypatch, alice, bob, alice_guest, bob_guest
):
    monkeypatch.setattr(console.time, "time", lambda: 1_800_000_000.0)  # all in one minute, whenever it runs
    client.force_login(alice)
    url = reverse("console_ticket", args=[alice_guest.pk])
    for _ in range(console.OPENS_PER_MINUTE):
        assert client.post(url).status_code == 200
    refused = client.post(url)
    assert refused.status_code == 429
    assert refused.json() == {"error": "Too many consoles opened: at most 10 a minute. Wait a minute and try again."}
    refused = client.post(url, HTTP_ACCEPT_LANGUAGE="pt-BR")
    assert "no máximo 10 por minuto" in refused.json()["error"]
    event = AuditEvent.objects.filter(action="console_open", result="refused").first()
    assert event is not None and event.actor == alice and event.guest == alice_guest
    # The limit is the user's: another student is not held back by it.
    client.force_login(bob)
    assert client.post(reverse("console_ticket", args=[bob_guest.pk])).status_code == 200


def test_the_console_card_for_each_role(client, redis, alice, ivy, admin_user, alice_guest, host):
    page = reverse("guest_detail", args=[alice_guest.pk])
    client.force_login(alice)
    body = client.get(page).content.decode()
    assert 'id="console"' in body and f'data-ticket-url="{reverse("console_ticket", args=[alice_guest.pk])}"' in body
    assert 'data-ws-url="/ws/"' in body
    assert 'data-console="takeover"' not in body  # the owner types
    assert "No <kbd>Ctrl</kbd>+<kbd>]</kbd> needed here" in body
    assert 'aria-live="off"' in body and 'data-console="refresh-text"' in body
    for user in (ivy, admin_user):
        client.force_login(user)
        body = client.get(page).content.decode()
        assert 'data-console="takeover"' in body and "You watch read-only" in body


def test_the_console_card_speaks_portuguese(client, redis, alice, alice_guest):
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk]), HTTP_ACCEPT_LANGUAGE="pt-BR").content.decode()
    for text in ("Console serial", "Abrir console", "Desconectar", 'data-msg-restarting="VM reiniciando…"'):
        assert text in body, text
    assert 'data-msg-takeover="{name} assumiu o console e pode digitar."' in body


def test_the_guest_page_has_no_inline_script(client, redis, alice, alice_guest):
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    scripts = re.findall(r"<script\b[^>]*>", body)
    assert scripts and all(" src=" in tag for tag in scripts), scripts
    assert not re.search(r"\son[a-z]+=", body)  # no onclick= and the like either
    for path in ("vendor/xterm/xterm.js", "vendor/xterm/addon-fit.js", "js/console.js", "vendor/xterm/xterm.css"):
        assert f"/static/{path}" in body


@pytest.mark.parametrize("value", ["/ws/", ":8001/ws/", "wss://panel.example.edu/ws/"])
def test_the_socket_address_comes_from_the_setting(client, redis, settings, alice, alice_guest, value):
    settings.XENPANEL_CONSOLE_WS_URL = value
    client.force_login(alice)
    assert f'data-ws-url="{value}"' in client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
