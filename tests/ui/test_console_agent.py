"""A keystroke's whole way on the simulated dom0: websocket → ASGI app → Redis → the console agent → back.

The agent (labs.jobs.console.Agent, what `manage.py console_agent` runs)
serves the test host in the same event loop as Channels' communicator; the
host is the simulated dom0, so its console is the simulated one and the
guest answers `hostname` from its own files.
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

from labs.jobs.console import Agent
from labs.models import Guest
from tests.ui.console_helpers import run_on_simulated_host
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


@pytest.fixture
def running(settings, tmp_path, host, alice_guest):
    """alice's guest running on the simulated host, with its files written as provisioning writes them."""
    settings.XENPANEL_SIM_DIR = str(tmp_path / "sim")
    conn = django_rq.get_connection("default")
    conn.flushdb()
    sim = run_on_simulated_host(host, alice_guest)
    yield sim
    conn.flushdb()


def open_socket(client: Client, guest: Guest) -> WebsocketCommunicator:
    token = client.post(reverse("console_ticket", args=[guest.pk])).json()["ticket"]
    headers = [
        (b"origin", b"http://127.0.0.1"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]
    return WebsocketCommunicator(application, f"/ws/console/{guest.pk}/?ticket={token}", headers=headers)


class Screen:
    """What one socket received: the bytes as text, and the events."""

    def __init__(self, ws: WebsocketCommunicator) -> None:
        self.ws = ws
        self.text = ""
        self.events: list[tuple[str, str]] = []
        self.closed: int | None = None

    async def until(self, check, timeout: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check():
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, f"timed out; screen: {self.text[-400:]!r}, events: {self.events}"
            try:
                message = await self.ws.receive_output(timeout=min(left, 1.0))
            except TimeoutError:
                continue
            if message["type"] == "websocket.close":
                self.closed = message.get("code", 1000)
            elif message.get("bytes") is not None:
                self.text += message["bytes"].decode(errors="replace")
            elif message.get("text") is not None:
                data = json.loads(message["text"])
                if data["t"] == "event":
                    self.events.append((data["e"], data["a"]))


def test_the_owner_types_hostname_and_reads_the_guests_answer_then_a_new_socket_replays_it(
    running, alice, alice_guest, host
):
    client = Client()
    client.force_login(alice)
    first, second = open_socket(client, alice_guest), open_socket(client, alice_guest)

    async def test() -> None:
        agent = Agent(host, watch_seconds=0.1)
        served = asyncio.create_task(agent.run())
        try:
            assert (await first.connect())[0]
            screen = Screen(first)
            await screen.until(lambda: screen.text.endswith(f"root@{alice_guest.hostname}:~# "))
            await first.send_to(bytes_data=b"hostname\r")
            await screen.until(lambda: f"hostname\r\n{alice_guest.hostname}\r\n" in screen.text)
            await first.disconnect()
            # A reload: the new socket gets the scrollback first, then the live console.
            assert (await second.connect())[0]
            again = Screen(second)
            await again.until(lambda: f"hostname\r\n{alice_guest.hostname}\r\n" in again.text)
            await second.send_to(bytes_data=b"ip addr\r")
            await again.until(lambda: f"inet {alice_guest.ip}/24" in again.text)
            assert len(agent.manager.sessions) == 1  # the same session all along
            await second.disconnect()
        finally:
            agent.stop.set()
            await served

    run(test())


def test_a_reboot_from_the_panel_says_restarting_and_comes_back_and_a_destroy_ends_the_session(
    running, alice, alice_guest, host
):
    client = Client()
    client.force_login(alice)
    ws = open_socket(client, alice_guest)

    async def test() -> None:
        agent = Agent(host, watch_seconds=0.1)
        served = asyncio.create_task(agent.run())
        try:
            assert (await ws.connect())[0]
            screen = Screen(ws)
            await screen.until(lambda: "login:" in screen.text)
            # What the reboot job does, as the agent sees it: the guest is busy rebooting, xl reboots it.
            await database_sync_to_async(Guest.objects.filter(pk=alice_guest.pk).update)(busy_with="reboot")
            await asyncio.to_thread(running.reboot, alice_guest.domain_name)
            await screen.until(lambda: ("back", "") in screen.events)
            assert ("restarting", "") in screen.events
            # The console is attached again: a new boot, a new login prompt.
            await screen.until(lambda: screen.text.count("login:") == 2)
            await database_sync_to_async(Guest.objects.filter(pk=alice_guest.pk).update)(busy_with="destroy")
            await asyncio.to_thread(running.destroy, alice_guest.domain_name)
            await screen.until(lambda: screen.closed is not None)
            assert screen.events[-1] == ("ended", "destroyed") and screen.closed == 1000
            await ws.disconnect()  # the browser's side of the closing handshake
        finally:
            agent.stop.set()
            await served

    run(test())


def test_a_viewer_still_there_after_an_agent_restart_gets_the_console_opened_again(running, alice_guest, host):
    """The agent died under an open page (no goodbye reached it): the page's next heartbeat reopens the console."""
    from labs.services import console

    async def test() -> None:
        agent = Agent(host, watch_seconds=0.1)
        served = asyncio.create_task(agent.run())
        try:
            client = console.aredis()
            await until_true(lambda: client.exists(console.agent_key(host.queue_name)))
            assert agent.manager.sessions == {}
            await client.xadd(
                console.control_key(host.queue_name), {"op": "beat", "domain": alice_guest.domain_name, "viewer": "t1"}
            )
            await until_true(lambda: _open(agent, alice_guest.domain_name))
            session = agent.manager.sessions[alice_guest.domain_name]
            assert set(session.viewers) == {"t1"}
            # Its input is read again: typing reaches the guest.
            await client.xadd(console.input_key(host.queue_name, alice_guest.domain_name), {"d": b"hostname\r"})
            out = console.output_key(host.queue_name, alice_guest.domain_name)

            async def answered() -> bool:
                entries = await client.xrange(out)
                return f"\r\n{alice_guest.hostname}\r\n".encode() in b"".join(f.get(b"d", b"") for _i, f in entries)

            await until_true(answered)
        finally:
            agent.stop.set()
            await served

    run(test())


def _open(agent: Agent, domain: str):
    async def check() -> bool:
        session = agent.manager.sessions.get(domain)
        return session is not None and session.state == "open"

    return check()


async def until_true(check, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)
