"""The console websocket's rules, role by role, through the whole ASGI app (xenpanel.asgi.application).

Channels' WebsocketCommunicator drives the real stack: Origin check, session
cookie, the consumer, Redis (the test database, flushed). The host's agent
is stood in for by its heartbeat key where only the rules are under test; the
last test runs the real agent on a simulated dom0 and types into the guest.

Close codes: 4401 not signed in, 4403 no valid ticket, 4404 a stranger (the
socket's 404), 4503 no agent.
"""

from __future__ import annotations

import asyncio
import json

import django_rq
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client
from django.urls import reverse

from labs.models import AuditEvent
from labs.services import console
from xenpanel.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def run(test) -> None:
    """Run the test's coroutine, then close the database connection Channels' thread opened for the consumer."""

    async def whole() -> None:
        try:
            await test
        finally:
            await database_sync_to_async(connections.close_all)()

    asyncio.run(whole())


ORIGIN = b"http://127.0.0.1:8000"


@pytest.fixture
def redis():
    conn = django_rq.get_connection("default")
    conn.flushdb()
    yield conn
    conn.flushdb()


@pytest.fixture
def agent_up(redis, host):
    """The host's agent heartbeat, as a running `console_agent` keeps it."""
    redis.set(console.agent_key(host.queue_name), "test", ex=600)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def ticket(client: Client, guest) -> str:
    response = client.post(reverse("console_ticket", args=[guest.pk]))
    assert response.status_code == 200, response.content
    return response.json()["ticket"]


def socket(client: Client | None, guest_pk: int, token: str = "", origin: bytes = ORIGIN) -> WebsocketCommunicator:
    headers = [(b"origin", origin)] if origin else []
    if client is not None:
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(application, f"/ws/console/{guest_pk}/?ticket={token}", headers=headers)


async def closed_with(ws: WebsocketCommunicator) -> int:
    """The close code of a socket the server accepted and then closed (texts before it are skipped)."""
    connected, _ = await ws.connect()
    assert connected
    while True:
        message = await ws.receive_output(timeout=5)
        if message["type"] == "websocket.close":
            return message["code"]


async def hello(ws: WebsocketCommunicator) -> dict:
    connected, _ = await ws.connect()
    assert connected
    while True:
        message = json.loads(await ws.receive_from(timeout=5))
        if message["t"] == "hello":
            return message


def control(redis, host) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _id, fields in redis.xrange(console.control_key(host.queue_name))
    ]


def typed(redis, host, guest) -> bytes:
    return b"".join(f[b"d"] for _i, f in redis.xrange(console.input_key(host.queue_name, guest.domain_name)))


def test_the_owner_types_and_each_open_and_close_is_audited(redis, agent_up, host, alice, alice_guest):
    client = signed_in(alice)
    token = ticket(client, alice_guest)  # the page's POST, before the socket

    async def test() -> None:
        ws = socket(client, alice_guest.pk, token)
        assert await hello(ws) == {"t": "hello", "mode": "rw", "takeover": False}
        await ws.send_to(bytes_data=b"hostname\r")
        await ws.send_to(text_data=json.dumps({"t": "resize", "rows": 30, "cols": 100}))
        await asyncio.sleep(0.2)
        await ws.disconnect()

    run(test())
    assert typed(redis, host, alice_guest) == b"hostname\r"
    ops = [(m["op"], m["domain"], m.get("rows")) for m in control(redis, host)]
    assert ops == [("attach", "net101-alice", "0"), ("resize", "net101-alice", "30"), ("detach", "net101-alice", None)]
    opened, closed = AuditEvent.objects.filter(action__startswith="console_").order_by("created_at")
    assert (opened.action, opened.actor, opened.guest, opened.result) == (
        "console_open",
        alice,
        alice_guest,
        "succeeded",
    )
    assert (closed.action, closed.actor, closed.guest) == ("console_close", alice, alice_guest)
    assert closed.message.startswith("read-write; open for ")


@pytest.mark.parametrize("who", ["ivy", "admin_user"])
def test_the_labs_instructors_and_admins_watch_read_only_until_they_take_over(
    request, redis, agent_up, host, alice_guest, who
):
    user = request.getfixturevalue(who)
    client = signed_in(user)
    token = ticket(client, alice_guest)

    async def test() -> None:
        ws = socket(client, alice_guest.pk, token)
        assert await hello(ws) == {"t": "hello", "mode": "ro", "takeover": True}
        await ws.send_to(bytes_data=b"ignored")
        await ws.send_to(text_data=json.dumps({"t": "resize", "rows": 10, "cols": 10}))
        await ws.send_to(text_data=json.dumps({"t": "takeover"}))
        assert json.loads(await ws.receive_from(timeout=5)) == {"t": "mode", "mode": "rw"}
        # The student's side (and every viewer) sees who took over, in the console's stream.
        event = json.loads(await ws.receive_from(timeout=5))
        assert event == {"t": "event", "e": "takeover", "a": user.username}
        await ws.send_to(bytes_data=b"typed by the instructor")
        await asyncio.sleep(0.2)
        await ws.disconnect()

    run(test())
    assert typed(redis, host, alice_guest) == b"typed by the instructor"
    assert [m["op"] for m in control(redis, host)] == ["attach", "detach"]  # the read-only resize went nowhere
    actions = list(AuditEvent.objects.order_by("created_at").values_list("action", flat=True))
    assert actions == ["console_open", "console_takeover", "console_close"]
    assert AuditEvent.objects.get(action="console_close").message.startswith("took over; ")


@pytest.mark.parametrize("who", ["bob", "charlie"])
def test_strangers_are_closed_with_4404(request, redis, agent_up, alice_guest, bob_guest, who):
    user = request.getfixturevalue(who)
    client = signed_in(user)
    # A stranger has no ticket for the guest (the ticket view answers 404)...
    assert client.post(reverse("console_ticket", args=[alice_guest.pk])).status_code == 404
    # ... and a ticket for a guest of their own (bob's) or none does not open someone else's.
    own = ticket(client, bob_guest) if who == "bob" else ""

    async def test() -> None:
        assert await closed_with(socket(client, alice_guest.pk, own)) == 4404
        assert await closed_with(socket(client, 999_999, own)) == 4404

    run(test())
    assert redis.xlen(console.control_key(alice_guest.host.queue_name)) == 0
    assert not AuditEvent.objects.filter(action="console_open").exists()


def test_without_a_session_the_socket_is_closed_with_4401(redis, agent_up, alice, alice_guest):
    token = ticket(signed_in(alice), alice_guest)

    async def test() -> None:
        assert await closed_with(socket(None, alice_guest.pk, token)) == 4401

    run(test())


def test_a_ticket_opens_one_socket_only(redis, agent_up, alice, alice_guest):
    client = signed_in(alice)
    token = ticket(client, alice_guest)

    async def test() -> None:
        ws = socket(client, alice_guest.pk, token)
        assert (await hello(ws))["mode"] == "rw"
        await ws.disconnect()
        assert await closed_with(socket(client, alice_guest.pk, token)) == 4403  # replayed
        assert await closed_with(socket(client, alice_guest.pk, "")) == 4403  # none
        assert await closed_with(socket(client, alice_guest.pk, "x" * 43)) == 4403  # made up

    run(test())
    opened = AuditEvent.objects.filter(action="console_open")
    assert opened.filter(result=AuditEvent.Result.SUCCEEDED).count() == 1
    # Each refused ticket is on the lab's audit trail.
    refused = opened.filter(result=AuditEvent.Result.REFUSED)
    assert [e.message for e in refused] == ["invalid, used or expired ticket"] * 3
    assert {e.actor_id for e in refused} == {alice.pk}


def test_a_ticket_is_bound_to_its_user_and_session(redis, agent_up, alice, ivy, alice_guest):
    token = ticket(signed_in(alice), alice_guest)
    other_session = signed_in(alice)  # the same student, another browser
    assert redis.ttl(console.ticket_key(token)) <= console.TICKET_SECONDS

    async def test() -> None:
        assert await closed_with(socket(other_session, alice_guest.pk, token)) == 4403

    run(test())
    token = ticket(signed_in(alice), alice_guest)
    instructor = signed_in(ivy)

    async def by_ivy() -> None:
        # The lab's instructor may watch the guest, but not with the student's ticket.
        assert await closed_with(socket(instructor, alice_guest.pk, token)) == 4403

    run(by_ivy())


@pytest.mark.parametrize("origin", [b"http://evil.example", b"https://127.0.0.1.evil.example", b""])
def test_a_socket_from_another_origin_is_refused(redis, agent_up, alice, alice_guest, origin):
    client = signed_in(alice)
    token = ticket(client, alice_guest)

    async def test() -> None:
        connected, _ = await socket(client, alice_guest.pk, token, origin=origin).connect()
        assert not connected

    run(test())
    assert redis.exists(console.ticket_key(token))  # refused before the consumer ever saw it


def test_no_agent_on_the_host_is_said_and_closed_with_4503(redis, alice, alice_guest):
    client = signed_in(alice)
    token = ticket(client, alice_guest)

    async def test() -> None:
        ws = socket(client, alice_guest.pk, token)
        connected, _ = await ws.connect()
        assert connected
        assert json.loads(await ws.receive_from(timeout=5)) == {"t": "event", "e": "no_agent", "a": ""}
        assert (await ws.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4503}

    run(test())
