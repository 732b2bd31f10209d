"""The browser console: tickets, who may type, the Redis streams between the panel and each dom0, audit.

The path of a keystroke: browser → websocket (`labs.consumers`, in the ASGI
process) → the console's input stream in Redis → the console agent on the
guest's dom0 (`manage.py console_agent`, `labs.jobs.console`) → `xl console`
in a pty (`labs.dom0.console`) → and back through the output stream.

Keys, all under the host's queue name so that a per-dom0 Redis ACL
(`~xenpanel:console:<queue>:*`) can confine each agent to its own:

- `xenpanel:console:<queue>:control`: a stream the agent reads: attach,
  detach, beat (a viewer is still there), resize;
- `xenpanel:console:<queue>:<domain>:in`: what viewers type;
- `xenpanel:console:<queue>:<domain>:out`: what the console printed, and
  events (opened, restarting, back, ended, takeover), capped at
  SCROLLBACK_BYTES of output: a new viewer gets it first, so a reload or a
  second tab shows the current screen;
- `xenpanel:console:<queue>:agent`: set while the host's agent runs.

Tickets (`xenpanel:console-ticket:<token>`) and the rate limit live outside
the hosts' prefix: only the panel reads them. A ticket is good for one
websocket, for TICKET_SECONDS, for the user, guest and session it was made
for; the socket takes it with GETDEL, so it cannot be used twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.utils import timezone
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from labs.access import console_rights
from labs.dom0 import names
from labs.dom0.errors import InvalidName
from labs.models import AuditEvent, Guest, Lab
from labs.services.actions import REBOOT_FAILED_HEAD
from labs.services.errors import QueueUnavailable, ServiceError
from labs.services.queueing import redis_connection

TICKET_SECONDS = 30
OPENS_PER_MINUTE = 10
SCROLLBACK_BYTES = 64 * 1024
# Viewers say they are still there this often; the agent drops one silent for its VIEWER_TIMEOUT (90 s).
BEAT_SECONDS = 20
AGENT_TTL = 15
AGENT_BEAT_SECONDS = 4
CONTROL_MAXLEN = 10_000
INPUT_MAXLEN = 2_000
# Nobody watching: the scrollback goes after a week.
OUTPUT_TTL = 7 * 24 * 3600
# The guest actions that take a domain down, and what the console says of them.
DOWN_BECAUSE = {
    "teardown": "deleted",
    "destroy": "destroyed",
    "shutdown": "shutdown",
    "reboot": "reboot",
    "reset": "reset",
}
RECENT_ACTION_SECONDS = 120
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}")

Item = tuple[str, bytes | str, str]  # ("d", output bytes, "") or ("e", event name, detail)


class ConsoleRefused(ServiceError):
    """No console now (too many opened in the last minute)."""


def prefix(queue: str) -> str:
    return f"xenpanel:console:{queue}"


def control_key(queue: str) -> str:
    return f"{prefix(queue)}:control"


def agent_key(queue: str) -> str:
    return f"{prefix(queue)}:agent"


def input_key(queue: str, domain: str) -> str:
    return f"{prefix(queue)}:{domain}:in"


def output_key(queue: str, domain: str) -> str:
    return f"{prefix(queue)}:{domain}:out"


def ticket_key(token: str) -> str:
    return f"xenpanel:console-ticket:{token}"


def _session_hash(session_key: str | None) -> str:
    return hashlib.sha256((session_key or "").encode()).hexdigest()


# ---------------------------------------------------------------- who may do what


@dataclass(frozen=True)
class ConsoleTarget:
    """A guest's console as one user may use it."""

    guest_id: int
    lab_id: int
    domain: str
    queue: str
    writable: bool  # the owner types; the lab's instructors and admins watch ...
    can_take_over: bool  # ... until they take over
    username: str


def authorize(user: AbstractBaseUser | AnonymousUser, guest_id: int) -> ConsoleTarget | None:
    """The console of the guest if the user may see it (owner, the lab's instructors, admins); None otherwise."""
    guest = Guest.objects.select_related("host").filter(pk=guest_id).first()
    if guest is None:
        return None
    rights = console_rights(user, guest)  # type: ignore[arg-type]
    if rights is None:
        return None
    return ConsoleTarget(
        guest_id=guest.pk,
        lab_id=guest.lab_id,
        domain=guest.domain_name,
        queue=guest.host.queue_name,
        writable=rights.writable,
        can_take_over=rights.can_take_over,
        username=user.get_username(),
    )


def why_down(queue: str, domain: str) -> str:
    """Why a guest's domain went away, for the agent: reboot, reset, shutdown, destroyed, deleted or "" (unknown).

    The host by its queue, as a dom0's credentials know it (a re-created Host row keeps its dom0).
    """
    guest = Guest.objects.select_related("lab").filter(host__queue_name=queue, domain_name=domain).first()
    if guest is None or guest.status == Guest.Status.TEARING_DOWN or guest.lab.status != Lab.Status.ACTIVE:
        return "deleted"
    # The action running now, or else the last one if it is recent (a quick destroy may be over before
    # the agent's next look at `xl list`).
    action = guest.busy_with
    if not action:
        last = guest.tasks.order_by("-created_at").values_list("kind", "created_at").first()
        if last is not None and (timezone.now() - last[1]).total_seconds() < RECENT_ACTION_SECONDS:
            action = last[0]
    if action in DOWN_BECAUSE:
        return DOWN_BECAUSE[action]
    # A reboot typed in the guest that xl could not finish: the dom0 reported it, or the panel is starting
    # the VM (actions.restart_failed_reboots); either way it is coming back.
    if guest.busy_with == "start" or guest.last_error.startswith(REBOOT_FAILED_HEAD):
        return "reboot"
    if guest.desired_state == Guest.Desired.STOPPED:
        return "shutdown"
    return ""


def agent_running(queue: str) -> bool:
    """Whether the host's console agent has checked in with Redis lately (its key lives AGENT_TTL seconds)."""
    return bool(redis_connection(queue).exists(agent_key(queue)))


# ---------------------------------------------------------------- tickets


def issue_ticket(user: AbstractBaseUser, guest: Guest, session_key: str | None) -> str:
    """A one-time ticket for the guest's console websocket; ConsoleRefused past OPENS_PER_MINUTE a minute.

    The caller has already checked that the user may see the guest.
    """
    conn = redis_connection()
    rate = f"xenpanel:console-rate:{user.pk}:{int(time.time() // 60)}"
    token = secrets.token_urlsafe(32)
    ticket = json.dumps({"u": user.pk, "g": guest.pk, "s": _session_hash(session_key)})
    try:
        with conn.pipeline(transaction=False) as pipe:
            pipe.incr(rate)
            pipe.expire(rate, 120)
            opened = pipe.execute()[0]
        if opened > OPENS_PER_MINUTE:
            AuditEvent.objects.create(
                actor_id=user.pk,
                action="console_open",
                guest=guest,
                lab_id=guest.lab_id,
                target=guest.domain_name,
                result=AuditEvent.Result.REFUSED,
                message=f"more than {OPENS_PER_MINUTE} consoles opened in a minute",
            )
            raise ConsoleRefused(
                _("Too many consoles opened: at most %(limit)s a minute. Wait a minute and try again.")
                % {"limit": OPENS_PER_MINUTE}
            )
        conn.set(ticket_key(token), ticket, ex=TICKET_SECONDS)
    except RedisError as e:
        raise QueueUnavailable(
            _("The console service (Redis) is not reachable. Try again in a minute. (%(error)s)") % {"error": e}
        ) from None
    return token


async def redeem_ticket(token: str, user_id: int, guest_id: int, session_key: str | None) -> bool:
    """Whether the ticket was made for this user, guest and session; it is gone afterwards either way."""
    if not _TOKEN.fullmatch(token or ""):
        return False
    raw = await aredis().getdel(ticket_key(token))
    if raw is None:
        return False
    try:
        ticket = json.loads(raw)
    except ValueError:
        return False
    return bool(
        ticket.get("u") == user_id
        and ticket.get("g") == guest_id
        and secrets.compare_digest(str(ticket.get("s")), _session_hash(session_key))
    )


# ---------------------------------------------------------------- audit


def _audit(
    target: ConsoleTarget, user_id: int, action: str, message: str, result: str = AuditEvent.Result.SUCCEEDED
) -> None:
    AuditEvent.objects.create(
        actor_id=user_id,
        action=action,
        guest_id=target.guest_id,
        lab_id=target.lab_id,
        target=target.domain,
        result=result,
        message=message,
    )


def record_refusal(target: ConsoleTarget, user_id: int, why: str) -> None:
    """A console the user may see but did not get: a ticket that was not theirs, was used, or had expired."""
    _audit(target, user_id, "console_open", why, AuditEvent.Result.REFUSED)


def record_open(target: ConsoleTarget, user_id: int) -> None:
    _audit(target, user_id, "console_open", "read-write" if target.writable else "read-only")


def record_close(target: ConsoleTarget, user_id: int, seconds: float, took_over: bool) -> None:
    mode = "took over" if took_over else "read-write" if target.writable else "read-only"
    _audit(target, user_id, "console_close", f"{mode}; open for {seconds:.0f} s")


def record_takeover(target: ConsoleTarget, user_id: int) -> None:
    _audit(target, user_id, "console_takeover", "typing in the student's console")


# ---------------------------------------------------------------- Redis, asynchronously

_clients: dict[int, aioredis.Redis] = {}


def aredis() -> aioredis.Redis:
    """The asyncio Redis client of the running event loop (bytes in, bytes out)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(id(loop))
    if client is None or getattr(client, "_xenpanel_loop", None) is not loop:
        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3, health_check_interval=30)
        client._xenpanel_loop = loop  # type: ignore[attr-defined]
        _clients[id(loop)] = client
    return client


def _items(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Item]:
    items: list[Item] = []
    for _id, fields in entries:
        if b"d" in fields:
            items.append(("d", fields[b"d"], ""))
        elif b"e" in fields:
            items.append(("e", fields[b"e"].decode(), fields.get(b"a", b"").decode(errors="replace")))
    return items


class ConsoleLink:
    """One viewer's end of a console: replay, follow, type, resize, come and go.

    Two connections of its own, one blocked reading the output, one for the
    rest: commands on a held connection skip the pool's per-command checks,
    which cost more than the command on a busy ASGI process. `close()` gives
    them back.
    """

    def __init__(self, client: aioredis.Redis, target: ConsoleTarget, viewer: str) -> None:
        self.r = client.client()
        self.rd = client.client()
        self.target = target
        self.viewer = viewer
        self.control = control_key(target.queue)
        self.input = input_key(target.queue, target.domain)
        self.output = output_key(target.queue, target.domain)

    async def agent_running(self) -> bool:
        return bool(await self.r.exists(agent_key(self.target.queue)))

    async def replay(self) -> tuple[list[Item], str]:
        """The scrollback as it stands, and the id to follow from."""
        entries = await self.r.xrange(self.output, "-", "+")
        last = entries[-1][0].decode() if entries else "0-0"
        return _items(entries), last

    async def follow(self, last: str, block_ms: int) -> tuple[list[Item], str]:
        """What came after `last`, waiting up to block_ms for something."""
        answer = await self.rd.xread({self.output: last}, block=block_ms, count=500)
        if not answer:
            return [], last
        entries = answer[0][1]
        return _items(entries), entries[-1][0].decode()

    async def _control(self, op: str, **fields: str | int) -> None:
        message: dict[Any, Any] = {"op": op, "domain": self.target.domain, "viewer": self.viewer, **fields}
        await self.r.xadd(self.control, message, maxlen=CONTROL_MAXLEN, approximate=True)

    async def attach(self, rows: int = 0, cols: int = 0) -> None:
        await self._control("attach", rows=rows, cols=cols)

    async def detach(self) -> None:
        await self._control("detach")

    async def beat(self) -> None:
        await self._control("beat")

    async def resize(self, rows: int, cols: int) -> None:
        await self._control("resize", rows=rows, cols=cols)

    async def type(self, data: bytes) -> None:
        await self.r.xadd(self.input, {"d": data}, maxlen=INPUT_MAXLEN, approximate=True)

    async def announce(self, event: str, detail: str = "") -> None:
        """An event every viewer of the console sees (and later ones in the scrollback)."""
        await self.r.xadd(self.output, {"e": event, "a": detail})

    async def close(self) -> None:
        for client in (self.rd, self.r):
            await client.aclose()


# ---------------------------------------------------------------- the agent's side


@dataclass
class Request:
    """What the agent read: a control message, or input for a domain."""

    kind: str  # attach, detach, beat, resize, input
    domain: str
    viewer: str = ""
    rows: int = 0
    cols: int = 0
    data: bytes = b""


def _int(value: bytes | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _id_before(stream_id: str) -> str:
    """The largest id before the millisecond of `stream_id`: reading after it gets that whole millisecond."""
    ms = int(stream_id.split("-", 1)[0])
    return f"{ms - 1}-18446744073709551615" if ms > 0 else "0-0"


class AgentStreams:
    """The console agent's Redis side for one host: it reads requests and is the `Sink` of its ConsoleManager."""

    def __init__(self, client: aioredis.Redis, queue: str, is_open: Callable[[str], bool]) -> None:
        self.pool = client.connection_pool
        self.r = client.client()  # every write: one held connection, no pool checks per command
        self._reader: Any = None  # the connection the XREAD blocks on (`start`)
        self.queue = queue
        self.is_open = is_open
        self.control = control_key(queue)
        self._control_b = self.control.encode()
        self._control_bulk = _bulk(self._control_b)
        self.control_last = b"$"
        self.inputs: dict[str, bytes] = {}  # domain -> the last input id read
        self._input_keys: dict[str, bytes] = {}
        self._domains_by_key: dict[bytes, str] = {}
        # Per domain: (id, size) of the output entries in the stream, to keep it at SCROLLBACK_BYTES.
        self._scroll: dict[str, deque[tuple[str, int]]] = {}
        self._scroll_bytes: dict[str, int] = {}

    async def start(self) -> None:
        """Read control messages from now on (older ones were for an agent that is gone)."""
        last = await self.r.xrevrange(self.control, "+", "-", count=1)
        self.control_last = last[0][0] if last else b"0-0"
        self._reader = await self.pool.get_connection()

    async def close(self) -> None:
        if self._reader is not None:
            await self.pool.release(self._reader)
            self._reader = None
        await self.r.aclose()

    async def beat(self, owner: str) -> None:
        await self.r.set(agent_key(self.queue), owner, ex=AGENT_TTL)

    async def claim(self, owner: str) -> bool:
        """Become the host's one agent; False while another one's key is alive."""
        key = agent_key(self.queue)
        if await self.r.set(key, owner, ex=AGENT_TTL, nx=True):
            return True
        return bool(await self.r.get(key) == owner.encode())

    async def release(self, owner: str) -> None:
        key = agent_key(self.queue)
        if await self.r.get(key) == owner.encode():
            await self.r.delete(key)

    async def read(self, block_ms: int) -> list[Request]:
        """One XREAD on the control stream and every open console's input stream.

        With a hundred consoles this command has two hundred arguments and runs
        a few hundred times a second: they are kept encoded, not rebuilt.
        """
        domains = list(self.inputs)
        keys = [self._input_keys.get(d) or self._input_key(d) for d in domains]
        ids = [_bulk(self.inputs[d]) for d in domains]
        head = [b"XREAD", b"COUNT", b"1000", b"BLOCK", str(block_ms).encode(), b"STREAMS"]
        parts = [_bulk(word) for word in head] + [self._control_bulk, *keys, _bulk(self.control_last), *ids]
        await self._reader.send_packed_command(b"*%d\r\n%s" % (len(parts), b"".join(parts)))
        answer = await self._reader.read_response()
        requests: list[Request] = []
        for key, entries in answer or []:
            if key == self._control_b:
                self.control_last = entries[-1][0]
                requests += [r for r in (self._control(i.decode(), _fields(f)) for i, f in entries) if r is not None]
                continue
            domain = self._domains_by_key.get(key)
            if domain is not None and domain in self.inputs:
                self.inputs[domain] = entries[-1][0]
                requests += [Request("input", domain, data=_fields(f).get(b"d", b"")) for _i, f in entries]
        return requests

    def _input_key(self, domain: str) -> bytes:
        key = input_key(self.queue, domain).encode()
        self._input_keys[domain] = _bulk(key)
        self._domains_by_key[key] = domain
        return self._input_keys[domain]

    def _control(self, entry_id: str, fields: dict[bytes, bytes]) -> Request | None:
        op = fields.get(b"op", b"").decode(errors="replace")
        domain = fields.get(b"domain", b"").decode(errors="replace")
        try:
            names.domain_name(domain)
        except InvalidName:
            return None  # no key is ever made from a name that breaks the rules
        if op not in ("attach", "detach", "beat", "resize"):
            return None
        if op == "beat" and domain not in self.inputs and not self.is_open(domain):
            # A viewer still there for a console this agent does not have: the agent was restarted (a crash,
            # an upgrade) under open pages. Open it again; their next keys go through.
            op = "attach"
        if op == "attach" and domain not in self.inputs:
            # Input typed from the moment of the attach on (the viewer types only after it).
            self.inputs[domain] = _id_before(entry_id).encode()
        rows, cols = _int(fields.get(b"rows")), _int(fields.get(b"cols"))
        return Request(op, domain, fields.get(b"viewer", b"").decode(errors="replace")[:64], rows, cols)

    # --- the Sink
    async def output(self, domain: str, data: bytes) -> None:
        data = data[-SCROLLBACK_BYTES:]
        key = output_key(self.queue, domain)
        sizes = self._scroll.get(domain)
        if sizes is None:
            sizes = self._scroll[domain] = await self._load_sizes(key)
            self._scroll_bytes[domain] = sum(n for _i, n in sizes)
        total = self._scroll_bytes[domain] + len(data)
        dropped = None
        while sizes and total > SCROLLBACK_BYTES:
            dropped, size = sizes.popleft()
            total -= size
        # Trim what no longer fits in the same command: everything up to the last output dropped.
        minid = _next_id(dropped) if dropped else None
        new_id = await self.r.xadd(key, {"d": data}, minid=minid, approximate=False)
        sizes.append((new_id.decode(), len(data)))
        self._scroll_bytes[domain] = total

    async def _load_sizes(self, key: str) -> deque[tuple[str, int]]:
        entries = await self.r.xrange(key, "-", "+")
        return deque((i.decode(), len(f[b"d"])) for i, f in entries if b"d" in f)

    async def event(self, domain: str, name: str, detail: str = "") -> None:
        out = output_key(self.queue, domain)
        await self.r.xadd(out, {"e": name, "a": detail})
        if name == "opened":
            await self.r.expire(out, OUTPUT_TTL)
        if name == "ended" and not self.is_open(domain):
            self.inputs.pop(domain, None)
            await self.r.delete(input_key(self.queue, domain))
            await self.r.expire(out, OUTPUT_TTL)


def _bulk(value: bytes) -> bytes:
    """One argument of a Redis command as the protocol (RESP) sends it."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _fields(flat: list[bytes] | dict[bytes, bytes]) -> dict[bytes, bytes]:
    """A stream entry's fields from the raw reply ([f1, v1, f2, v2...])."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _next_id(stream_id: str) -> str:
    ms, _, seq = stream_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"
