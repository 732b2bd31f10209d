"""The console agent of one dom0 (`manage.py console_agent --host <name>`): Redis ↔ `labs.dom0.console`.

One asyncio loop: one XREAD on the host's control stream and on the input
streams of its open consoles hands requests to the `ConsoleManager`, whose
output and events go back to Redis through `AgentStreams`; the manager's
watch checks idle times, viewers and `xl list`; a heartbeat keeps the host's
agent key alive, so pages can tell "no agent" from "no output yet". Why a
domain went away (a reboot from the panel, a shutdown, a deletion) comes
from the database through `services.console.why_down`.

With XENPANEL_DOM0=simulated the consoles are the simulated host's
(`SimulatedHost.open_console`): nothing is spawned.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from redis.exceptions import RedisError

from labs.dom0.console import Backend, ConsoleManager
from labs.jobs.connect import connect_host
from labs.models import Host
from labs.services import console

log = logging.getLogger(__name__)
READ_BLOCK_MS = 1000
CLAIM_WAIT_SECONDS = console.AGENT_TTL + 5


def _why_down(queue: str) -> Callable[[str], Awaitable[str]]:
    def why(domain: str) -> str:
        # A pool thread, seldom used (a domain went away): its own connection, closed after.
        try:
            return console.why_down(queue, domain)
        finally:
            connection.close()

    return sync_to_async(why, thread_sensitive=False)


class Agent:
    """The consoles of one host, served until `stop` is set."""

    def __init__(
        self,
        host: Host,
        *,
        client=None,
        spawn: Callable[[str], Backend] | None = None,
        idle_seconds: float | None = None,
        **manager_options: Any,
    ) -> None:
        self.host_row = host
        self.client = client or console.aredis()
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        dom0 = connect_host(host)
        if spawn is None and settings.XENPANEL_DOM0 == "simulated":
            spawn = dom0.open_console  # type: ignore[attr-defined]
        # The streams ask the manager whether a domain's console is open again (a reload re-attaching).
        self.streams = console.AgentStreams(self.client, host.queue_name, lambda d: d in self.manager.sessions)
        if settings.XENPANEL_DOM0 == "xen":
            # Each `xl list` forks twice on the dom0: while a guest reboots, look every 5 s, not every 2.
            manager_options.setdefault("restart_poll_seconds", 5.0)
        self.manager = ConsoleManager(
            dom0,
            self.streams,
            spawn=spawn,
            hint=_why_down(host.queue_name),
            idle_seconds=settings.XENPANEL_CONSOLE_IDLE if idle_seconds is None else idle_seconds,
            **manager_options,
        )
        self.stop = asyncio.Event()

    async def run(self) -> None:
        if not await self._claim():
            raise RuntimeError(f"another console agent runs for {self.host_row.name} (its key is alive)")
        await self.streams.start()
        log.info("console agent for %s (queue %s) ready", self.host_row.name, self.host_row.queue_name)
        tasks = [
            asyncio.create_task(self.manager.run(self.stop)),
            asyncio.create_task(self._beat()),
        ]
        try:
            await self._serve()
        finally:
            self.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.manager.close_all("closed")
            try:
                await self.streams.release(self.owner)
                await self.streams.close()
            except RedisError:
                pass

    async def _claim(self) -> bool:
        deadline = asyncio.get_running_loop().time() + CLAIM_WAIT_SECONDS
        while not await self.streams.claim(self.owner):
            if asyncio.get_running_loop().time() >= deadline or self.stop.is_set():
                return False
            await asyncio.sleep(1)
        return True

    async def _beat(self) -> None:
        while not self.stop.is_set():
            try:
                await self.streams.beat(self.owner)
            except RedisError as e:
                log.warning("console agent: heartbeat failed: %s", e)
            try:
                await asyncio.wait_for(self.stop.wait(), console.AGENT_BEAT_SECONDS)
            except TimeoutError:
                pass

    async def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                requests = await self.streams.read(READ_BLOCK_MS)
            except RedisError as e:
                log.warning("console agent: Redis read failed: %s; retrying", e)
                await asyncio.sleep(1)
                continue
            for request in requests:
                self._handle(request)

    def _handle(self, request: console.Request) -> None:
        m = self.manager
        if request.kind == "input":
            m.write(request.domain, request.data)
        elif request.kind == "attach":
            # Opening runs `xl list` (in a thread): other consoles' input must not wait for it.
            m.attach_soon(request.domain, request.viewer, request.rows, request.cols)
        elif request.kind == "detach":
            m.detach(request.domain, request.viewer)
        elif request.kind == "beat":
            m.beat(request.domain, request.viewer)
        elif request.kind == "resize":
            m.resize(request.domain, request.rows, request.cols)


def run_agent(host: Host) -> None:
    """Serve the host's consoles until SIGTERM or SIGINT."""

    async def main() -> None:
        agent = Agent(host)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop.set)
        await agent.run()

    try:  # uvloop (uvicorn[standard] brings it) takes a third off the agent's CPU per keystroke
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
