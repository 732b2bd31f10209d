"""The console websocket (`/ws/console/<guest pk>/`): thin, like a view; `labs.services.console` decides.

Frames: binary from the browser is what the user typed; binary to the
browser is console output. Text frames are JSON: from the browser
{"t": "resize", "rows", "cols"} and {"t": "takeover"}; to the browser
{"t": "hello", "mode", "takeover"}, {"t": "mode", "mode"} and
{"t": "event", "e", "a"} (opened, restarting, back, ended + reason,
takeover + name, no_agent), which the page words in the user's language.

Refusals close the socket after accepting it, so the browser sees the code:
4401 not signed in, 4404 no such guest for this user (a stranger), 4403 no
valid ticket, 4503 no console agent on the guest's host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from redis.exceptions import RedisError

from labs.services import console

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_BAD_TICKET = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_NO_AGENT = 4503
MAX_INPUT = 16 * 1024


class ConsoleConsumer(AsyncWebsocketConsumer):
    target: console.ConsoleTarget | None = None
    link: console.ConsoleLink | None = None
    pump: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(CLOSE_UNAUTHENTICATED)
            return
        pk = int(self.scope["url_route"]["kwargs"]["pk"])
        target = await database_sync_to_async(console.authorize)(user, pk)
        if target is None:
            await self.close(CLOSE_NOT_FOUND)
            return
        token = parse_qs(self.scope.get("query_string", b"").decode()).get("ticket", [""])[0]
        session = self.scope.get("session")
        try:
            valid = await console.redeem_ticket(token, user.pk, pk, getattr(session, "session_key", None))
            link = console.ConsoleLink(console.aredis(), target, secrets.token_hex(8))
            running = valid and await link.agent_running()
        except RedisError:
            log.exception("console: Redis failed while opening %s", target.domain)
            await self.close(CLOSE_NO_AGENT)
            return
        if not valid or not running:
            await link.close()
        if not valid:
            await database_sync_to_async(console.record_refusal)(target, user.pk, "invalid, used or expired ticket")
            await self.close(CLOSE_BAD_TICKET)
            return
        if not running:
            await self.send(json.dumps({"t": "event", "e": "no_agent", "a": ""}))
            await self.close(CLOSE_NO_AGENT)
            return
        self.target, self.link, self.user_id = target, link, user.pk
        self.writable, self.took_over, self.opened = target.writable, False, time.monotonic()
        await database_sync_to_async(console.record_open)(target, user.pk)
        items, last = await link.replay()
        await self._send_items(items)
        await self.send(json.dumps({"t": "hello", "mode": self._mode(), "takeover": target.can_take_over}))
        await link.attach()
        self.pump = asyncio.get_running_loop().create_task(self._pump(last))

    async def dispatch(self, message: dict) -> None:
        """Channels closes stale database connections before every message, through a thread hop that cost
        more than a keystroke's own work; this consumer reaches the database only through
        database_sync_to_async, which does that itself."""
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.link is None:
            return
        if bytes_data is not None:
            if self.writable and bytes_data:
                await self.link.type(bytes_data[:MAX_INPUT])
            return
        try:
            message = json.loads(text_data or "")
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("t") == "resize" and self.writable:
            rows, cols = message.get("rows"), message.get("cols")
            if isinstance(rows, int) and isinstance(cols, int) and 0 < rows <= 500 and 0 < cols <= 1000:
                await self.link.resize(rows, cols)
        elif message.get("t") == "takeover":
            await self._take_over()

    async def disconnect(self, code: int) -> None:
        if self.pump is not None:
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.pump
        if self.link is None or self.target is None:
            return
        with contextlib.suppress(RedisError):
            await self.link.detach()
            await self.link.close()
        seconds = time.monotonic() - self.opened
        await database_sync_to_async(console.record_close)(self.target, self.user_id, seconds, self.took_over)
        self.link = None

    # ------------------------------------------------------------ inside
    def _mode(self) -> str:
        return "rw" if self.writable else "ro"

    async def _take_over(self) -> None:
        assert self.link is not None and self.target is not None
        if self.writable or not self.target.can_take_over:
            return
        self.writable = self.took_over = True
        await self.send(json.dumps({"t": "mode", "mode": "rw"}))
        await database_sync_to_async(console.record_takeover)(self.target, self.user_id)
        await self.link.announce("takeover", self.target.username)

    async def _send_items(self, items: list[console.Item]) -> bool:
        """Pass output and events on; True when the session ended."""
        ended = False
        data = bytearray()
        for kind, value, detail in items:
            if kind == "d":
                assert isinstance(value, bytes)
                data += value
                continue
            if data:
                await self.send(bytes_data=bytes(data))
                data.clear()
            await self.send(json.dumps({"t": "event", "e": value, "a": detail}))
            ended = ended or value == "ended"
        if data:
            await self.send(bytes_data=bytes(data))
        return ended

    async def _pump(self, last: str) -> None:
        """Output to the browser as it comes; a heartbeat to the agent every BEAT_SECONDS."""
        assert self.link is not None
        beat_at = time.monotonic() + console.BEAT_SECONDS
        try:
            while True:
                items, last = await self.link.follow(last, block_ms=console.BEAT_SECONDS * 1000)
                if items and await self._send_items(items):
                    await self.close(1000)  # the session is over; the page offers to reconnect
                    return
                if time.monotonic() >= beat_at:
                    await self.link.beat()
                    beat_at = time.monotonic() + console.BEAT_SECONDS
        except RedisError:
            log.exception("console: lost Redis while following %s", self.link.target.domain)
            await self.close(CLOSE_NO_AGENT)
