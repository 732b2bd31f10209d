"""Serial consoles on a dom0: `xl console <domain>` in a pty, pumped to and from the panel.

No Django here, and no transport either: `ConsoleManager` runs on an asyncio
loop and talks to the rest of the world through a `Sink` (where output and
events go; the console agent's is Redis streams) and its methods (attach,
write, resize, detach), which the agent calls for each request it reads.

- Only a name that passes `names.domain_name` and that the host's own
  `list_domains()` shows as a running or paused guest (never Domain-0) is ever
  opened, and the only command is `host.console_command(name)`: `xl console
  <name>` (or `xm console <name>`), as an argv list in a pty, never a shell.
- One session per domain, as xenconsole itself allows: a second viewer
  attaches to the session that is open; the pty is shared.
- A session closes after `idle_seconds` without input (the recipe's TMOUT),
  `linger_seconds` after its last viewer left, or when asked.
- When the domain goes away (xl console exits, or `xl list` shows it gone or
  under a new domid) the session asks `hint(domain)` why: a reboot keeps the
  session, says "restarting" and opens the console again once the domain
  runs; a shutdown, destroy or deletion ends it with that reason. Unknown
  causes (a `reboot` typed inside the guest) wait for the domain to return,
  and end the session when it stays away.

Events sent to the sink: "opened", "restarting", "back", and "ended" with a
reason (see END_REASONS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import names
from .base import Domain
from .errors import Dom0Error, InvalidName
from .pty import MAX_COLS, MAX_ROWS, READ_SIZE, PtyProcess

log = logging.getLogger(__name__)

# How often viewers and idle times are looked at, and `xl list` run while a domain restarts or for a
# console that does not end with its domain; with only `xl console`s open, `xl list` runs every POLL_SECONDS.
WATCH_SECONDS = 2.0
POLL_SECONDS = 30.0
# A restarting domain must be back within this (a reset rebuilds the disk first: longer). As the reboot
# job's own wait (labs.jobs.guest.REBOOT_TIMEOUT): a loaded dom0's hotplug scripts can take minutes.
RESTART_SECONDS = 600.0
RESET_SECONDS = 900.0
# After its console ended on its own, a domain absent this long is taken as off.
GONE_SECONDS = 30.0
# A viewer that sent no heartbeat for this long has gone (a tab killed without a goodbye).
VIEWER_TIMEOUT = 90.0
DEFAULT_IDLE_SECONDS = 20 * 60
LINGER_SECONDS = 30.0
# Input kept while a session opens (typed before the console program is up).
EARLY_BYTES = 4096

# Why a session ended.
END_REASONS = (
    "idle",  # nobody typed for idle_seconds
    "closed",  # asked to (the agent stopping, an operator)
    "shutdown",  # the guest was shut down
    "destroyed",  # the guest was destroyed
    "deleted",  # the guest was deleted (teardown)
    "off",  # the domain went away and did not come back
    "refused",  # not a running guest on this host: nothing opened
    "error",  # the console program could not be started
)
# What `hint(domain)` may answer, besides "" (no idea): the session restarts or ends.
RESTART_HINTS = ("reboot", "reset")
END_HINTS = ("shutdown", "destroyed", "deleted")
LIVE_LETTERS = ("r", "b", "p")


class Backend(Protocol):
    """One open console: a pty with `xl console` in it (pty.PtyProcess), or the simulated console."""

    ends_with_domain: bool  # it ends by itself when its domain goes (else only `xl list` tells)

    def fileno(self) -> int: ...
    def read(self) -> bytes | None: ...  # None: nothing now; b"": the console ended
    def write(self, data: bytes) -> None: ...
    @property
    def pending(self) -> bool: ...  # input not yet taken by the console
    def flush(self) -> None: ...
    def resize(self, rows: int, cols: int) -> None: ...
    def close(self) -> None: ...
    def reap(self, force: bool = False) -> bool: ...  # True once nothing of it is left


class ConsoleHost(Protocol):
    """What the manager needs of a dom0 (XenHost and SimulatedHost both are one)."""

    def list_domains(self) -> list[Domain]: ...
    def console_command(self, name: str) -> list[str]: ...


class Sink(Protocol):
    """Where the consoles' output and events go, in order per domain."""

    async def output(self, domain: str, data: bytes) -> None: ...
    async def event(self, domain: str, name: str, detail: str = "") -> None: ...


Spawner = Callable[[str], Backend]
Hint = Callable[[str], Awaitable[str]]


@dataclass
class Session:
    """The one console of a domain, and who watches it."""

    domain: str
    domid: int = -1
    state: str = "opening"  # opening, open, restarting, ended
    backend: Backend | None = None
    viewers: dict[str, float] = field(default_factory=dict)  # viewer id -> last heartbeat
    opened_at: float = 0.0
    last_input: float = 0.0
    alone_since: float | None = None
    down_at: float = 0.0
    absent_since: float | None = None
    restart_until: float = 0.0
    hint: str = ""
    rows: int = 24
    cols: int = 80
    early: bytes = b""  # input that came while the session was opening
    outq: list[bytes | tuple[str, str]] = field(default_factory=list)
    flusher: asyncio.Task[None] | None = None


class ConsoleManager:
    """Every console session of one dom0."""

    def __init__(
        self,
        host: ConsoleHost,
        sink: Sink,
        *,
        spawn: Spawner | None = None,
        hint: Hint | None = None,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        linger_seconds: float = LINGER_SECONDS,
        watch_seconds: float = WATCH_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        restart_poll_seconds: float | None = None,  # None: every watch
        restart_seconds: float = RESTART_SECONDS,
        gone_seconds: float = GONE_SECONDS,
        viewer_timeout: float = VIEWER_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.sink = sink
        self.spawn: Spawner = spawn or self._spawn_pty
        self.hint = hint
        self.idle_seconds = idle_seconds
        self.linger_seconds = linger_seconds
        self.watch_seconds = watch_seconds
        self.poll_seconds = poll_seconds
        self.restart_poll_seconds = watch_seconds if restart_poll_seconds is None else restart_poll_seconds
        self._polled_at = float("-inf")
        self.restart_seconds = restart_seconds
        self.gone_seconds = gone_seconds
        self.viewer_timeout = viewer_timeout
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        # Closed consoles being reaped, by domain: a new one for the domain waits (xenconsole's lock).
        self._reaping: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ requests
    async def attach(self, domain: str, viewer: str, rows: int = 0, cols: int = 0) -> bool:
        """Join the domain's session, opening it first if there is none; False when refused.

        A refused request opens nothing: a domain this host does not run
        sends "ended"/"refused" to the sink, a name that breaks the name
        rules only returns False.
        """
        now = self.clock()
        session = self.sessions.get(domain)
        if session is not None:
            session.viewers[viewer] = now
            session.alone_since = None
            return True
        try:
            names.domain_name(domain)
        except InvalidName as e:
            # Not even a name: nothing is opened, and no key is made from it either.
            log.warning("console: refused: %s", e)
            return False
        # A placeholder first: a second viewer arriving while `xl list` runs joins it.
        session = Session(domain, viewers={viewer: now}, opened_at=now, last_input=now)
        if rows and cols:
            session.rows, session.cols = rows, cols
        self.sessions[domain] = session
        running = await self._running(domain)
        if running is None:
            self.sessions.pop(domain, None)
            await self.sink.event(domain, "ended", "refused")
            return False
        await self._reaped(domain)
        if not self._start(session, running):
            return False
        self._emit(session, ("opened", ""))
        return True

    def attach_soon(self, domain: str, viewer: str, rows: int = 0, cols: int = 0) -> None:
        """`attach` in a task of its own: a loop reading requests goes on meanwhile."""

        async def attach() -> None:
            await self.attach(domain, viewer, rows, cols)

        self._spawn_task(attach())

    def detach(self, domain: str, viewer: str) -> None:
        session = self.sessions.get(domain)
        if session is not None and session.viewers.pop(viewer, None) is not None and not session.viewers:
            session.alone_since = self.clock()

    def beat(self, domain: str, viewer: str) -> None:
        session = self.sessions.get(domain)
        if session is not None:
            session.viewers[viewer] = self.clock()
            session.alone_since = None

    def write(self, domain: str, data: bytes) -> bool:
        """Type into the console; False when it is not open (restarting, closed: the bytes are dropped)."""
        session = self.sessions.get(domain)
        if session is not None and session.state == "opening" and len(session.early) < EARLY_BYTES:
            session.early += data  # typed while `xl list` still runs: given to the console once open
            return True
        if session is None or session.state != "open" or session.backend is None:
            return False
        session.last_input = self.clock()
        backend = session.backend
        backend.write(data)
        if backend.pending:
            asyncio.get_running_loop().add_writer(backend.fileno(), self._writable, session)
        return True

    def resize(self, domain: str, rows: int, cols: int) -> None:
        session = self.sessions.get(domain)
        if session is None or rows <= 0 or cols <= 0:
            return
        session.rows, session.cols = min(rows, MAX_ROWS), min(cols, MAX_COLS)
        if session.backend is not None:
            session.backend.resize(session.rows, session.cols)

    async def close(self, domain: str, reason: str = "closed") -> None:
        session = self.sessions.get(domain)
        if session is not None:
            self._end(session, reason)

    async def close_all(self, reason: str = "closed") -> None:
        for session in list(self.sessions.values()):
            self._end(session, reason)
        await self.drain()

    async def drain(self) -> None:
        """Wait until every queued output and event has reached the sink, and every closed console is reaped."""
        while True:
            pending = [s.flusher for s in self.sessions.values() if s.flusher and not s.flusher.done()]
            pending += [t for t in self._tasks | set(self._reaping.values()) if not t.done()]
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------ the watch
    async def run(self, stop: asyncio.Event) -> None:
        """Look at idle times, viewers and domains every `watch_seconds` until `stop` is set."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # the next tick tries again; a failing `xl list` must not stop the agent
                log.exception("console: watch failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.watch_seconds)

    async def tick(self) -> None:
        now = self.clock()
        for session in list(self.sessions.values()):
            self._drop_stale_viewers(session, now)
            if session.state == "open" and now - session.last_input >= self.idle_seconds:
                self._end(session, "idle")
            elif session.alone_since is not None and now - session.alone_since >= self.linger_seconds:
                self._end(session, "closed")
        watched = [s for s in self.sessions.values() if s.state in ("open", "restarting")]
        if not watched or not self._poll_due(watched, now):
            return
        self._polled_at = now
        domains = await self._domains()
        if domains is None:
            return
        for session in watched:
            if self.sessions.get(session.domain) is not session:
                continue
            d = domains.get(session.domain)
            if session.state == "open" and (d is None or d.domid != session.domid):
                await self._went_down(session)
            elif session.state == "restarting":
                await self._restarting(session, d, now)

    def _poll_due(self, watched: list[Session], now: float) -> bool:
        """Whether to run `xl list` now: every tick for a console that would not notice its domain going (the
        simulated one), every `restart_poll_seconds` while a domain restarts, else every `poll_seconds`
        (`xl console` exits with its domain; this only catches what it might miss). `xl list -l` is not
        free on a busy dom0, least of all while the hotplug scripts of a reboot need it."""
        since = now - self._polled_at
        if since >= self.poll_seconds:
            return True
        if any(s.state == "open" and s.backend is not None and not s.backend.ends_with_domain for s in watched):
            return True
        return since >= self.restart_poll_seconds and any(s.state == "restarting" for s in watched)

    def _drop_stale_viewers(self, session: Session, now: float) -> None:
        for viewer, seen in list(session.viewers.items()):
            if now - seen >= self.viewer_timeout:
                del session.viewers[viewer]
        if not session.viewers and session.alone_since is None:
            session.alone_since = now

    # ------------------------------------------------------------ inside
    def _spawn_pty(self, domain: str) -> Backend:
        return PtyProcess(self.host.console_command(domain))

    async def _domains(self) -> dict[str, Domain] | None:
        try:
            listed = await asyncio.to_thread(self.host.list_domains)
        except Dom0Error as e:
            log.warning("console: xl list failed: %s", e)
            return None
        return {d.name: d for d in listed if d.domid != 0}

    async def _running(self, domain: str) -> Domain | None:
        """The domain if this host runs it (running or paused guest); None otherwise."""
        domains = await self._domains()
        d = domains.get(domain) if domains else None
        if d is None or d.letter not in LIVE_LETTERS:
            log.warning("console: refused %s: not a running guest on this host", domain)
            return None
        return d

    def _start(self, session: Session, domain: Domain) -> bool:
        """Open the console program; on failure the session ends with "error"."""
        try:
            backend = self.spawn(session.domain)
            backend.resize(session.rows, session.cols)
        except (Dom0Error, OSError) as e:
            log.error("console: could not open %s: %s", session.domain, e)
            self._end(session, "error")
            return False
        session.backend = backend
        session.domid = domain.domid
        session.state = "open"
        session.last_input = self.clock()
        asyncio.get_running_loop().add_reader(backend.fileno(), self._readable, session)
        early, session.early = session.early, b""
        if early:
            self.write(session.domain, early)
        return True

    def _readable(self, session: Session) -> None:
        backend = session.backend
        if backend is None:
            return
        try:
            data = backend.read()
        except OSError as e:
            log.warning("console: reading %s failed: %s", session.domain, e)
            data = b""
        if data is None:
            return
        if data:
            self._emit(session, data)
            return
        # The console program ended: the domain died, or someone killed it.
        self._detach_backend(session)
        self._spawn_task(self._went_down(session))

    def _writable(self, session: Session) -> None:
        backend = session.backend
        if backend is None:
            return
        backend.flush()
        if not backend.pending:
            asyncio.get_running_loop().remove_writer(backend.fileno())

    def _detach_backend(self, session: Session) -> None:
        backend, session.backend = session.backend, None
        if backend is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(backend.fileno())
        loop.remove_writer(backend.fileno())
        backend.close()
        self._reaping[session.domain] = loop.create_task(self._reap(backend))

    async def _reaped(self, domain: str) -> None:
        """Wait until the domain's last console program is gone (it may still hold xenconsole's lock)."""
        task = self._reaping.get(domain)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
            if self._reaping.get(domain) is task:
                del self._reaping[domain]

    async def _reap(self, backend: Backend) -> None:
        for _ in range(20):
            if backend.reap():
                return
            await asyncio.sleep(0.1)
        backend.reap(force=True)

    async def _went_down(self, session: Session) -> None:
        """The console ended or the domain changed: restart or end, as the hint says."""
        if session.state != "open" or self.sessions.get(session.domain) is not session:
            return
        self._detach_backend(session)
        now = self.clock()
        session.state = "restarting"
        session.hint = ""
        session.down_at = now
        session.absent_since = None
        session.restart_until = now + self.restart_seconds
        hint = await self._ask(session)
        if hint is None:
            return
        if hint in END_HINTS:
            self._end(session, hint)
            return
        session.hint = hint
        if hint == "reset":
            session.restart_until = now + RESET_SECONDS
        self._emit(session, ("restarting", ""))

    async def _restarting(self, session: Session, d: Domain | None, now: float) -> None:
        await self._reaped(session.domain)
        if d is None and self._gone_unexplained(session, now):
            await self._ask_again(session)
        if session.state == "restarting":
            self._maybe_back(session, d, now)

    def _gone_unexplained(self, session: Session, now: float) -> bool:
        """Absent for gone_seconds with no hint: about to be taken as off."""
        since = session.absent_since if session.absent_since is not None else now
        return not session.hint and now - since >= self.gone_seconds

    async def _ask(self, session: Session) -> str | None:
        """The hint for a restarting session's domain ("" when none or it failed); None when the session has
        moved on meanwhile (ended, or replaced)."""
        hint = ""
        if self.hint is not None:
            try:
                hint = await self.hint(session.domain)
            except Exception:  # no hint is no reason to stop: wait for the domain instead
                log.exception("console: hint for %s failed", session.domain)
        if self.sessions.get(session.domain) is not session or session.state != "restarting":
            return None
        return hint

    async def _ask_again(self, session: Session) -> None:
        """Before a domain gone for no known reason is taken as off, ask once more: the panel may be bringing
        it back meanwhile (a reboot typed in the guest that xl could not finish, which the panel starts)."""
        hint = await self._ask(session)
        if hint in END_HINTS:
            self._end(session, hint)
        elif hint in RESTART_HINTS:
            session.hint = hint  # wait for it up to restart_until, as for a reboot asked of the panel

    def _maybe_back(self, session: Session, d: Domain | None, now: float) -> None:
        if d is not None and d.letter in LIVE_LETTERS:
            if self._start(session, d):
                self._emit(session, ("back", ""))
            return
        if d is None:
            session.absent_since = session.absent_since if session.absent_since is not None else now
        if now >= session.restart_until:
            self._end(session, "off")
        elif not session.hint and session.absent_since is not None and now - session.absent_since >= self.gone_seconds:
            self._end(session, "off")

    def _end(self, session: Session, reason: str) -> None:
        if session.state == "ended":
            return
        self._detach_backend(session)
        session.state = "ended"
        if self.sessions.get(session.domain) is session:
            del self.sessions[session.domain]
        self._emit(session, ("ended", reason))

    def _emit(self, session: Session, item: bytes | tuple[str, str]) -> None:
        """Queue output or an event; one flusher per session keeps them in order."""
        session.outq.append(item)
        if session.flusher is None or session.flusher.done():
            session.flusher = asyncio.get_running_loop().create_task(self._flush(session))
            self._tasks.add(session.flusher)
            session.flusher.add_done_callback(self._tasks.discard)

    async def _flush(self, session: Session) -> None:
        while session.outq:
            item = session.outq.pop(0)
            try:
                if isinstance(item, tuple):
                    await self.sink.event(session.domain, *item)
                    continue
                chunks = [item]
                size = len(item)
                while session.outq and isinstance(session.outq[0], bytes) and size < READ_SIZE:
                    more = session.outq.pop(0)
                    assert isinstance(more, bytes)
                    chunks.append(more)
                    size += len(more)
                await self.sink.output(session.domain, b"".join(chunks))
            except Exception:  # the transport failed (Redis away): this piece is lost, the next may pass
                log.exception("console: could not pass on output of %s", session.domain)

    def _spawn_task(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
