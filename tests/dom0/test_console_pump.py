"""The console pump (labs.dom0.console) against a fake `xl console` in a real pty; no Django, no Redis.

The fake (fake_console.py, next to this file) is an echo that takes a lock
per domain as xenconsole does; the host is a stub whose `list_domains` the
tests change, and whose `console_command` names the fake.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from labs.dom0 import names
from labs.dom0.base import Domain
from labs.dom0.console import ConsoleManager

FAKE = Path(__file__).with_name("fake_console.py")


class Host:
    """A dom0 that runs what `running` says, with the fake as its console command."""

    def __init__(self, *running: str, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir or Path(os.environ["FAKE_CONSOLE_DIR"])
        self.domains = [Domain("Domain-0", 0, 1024, 2, "r-----")]
        self.domains += [Domain(name, i, 256, 1, "-b----") for i, name in enumerate(running, 1)]

    def list_domains(self) -> list[Domain]:
        return list(self.domains)

    def console_command(self, name: str) -> list[str]:
        return [sys.executable, str(FAKE), names.domain_name(name), str(self.state_dir)]

    def set(self, name: str, domid: int | None, state: str = "-b----") -> None:
        self.domains = [d for d in self.domains if d.name != name]
        if domid is not None:
            self.domains.append(Domain(name, domid, 256, 1, state))


class Sink:
    def __init__(self) -> None:
        self.data: dict[str, bytearray] = {}
        self.events: list[tuple[str, str, str]] = []

    async def output(self, domain: str, data: bytes) -> None:
        self.data.setdefault(domain, bytearray()).extend(data)

    async def event(self, domain: str, name: str, detail: str = "") -> None:
        self.events.append((domain, name, detail))

    def text(self, domain: str) -> str:
        return bytes(self.data.get(domain, b"")).decode(errors="replace")


@pytest.fixture(autouse=True)
def fake_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FAKE_CONSOLE_DIR", str(tmp_path))
    return tmp_path


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def starts(fake_dir: Path, name: str) -> list[int]:
    path = fake_dir / f"{name}.started"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_bytes_come_back_in_order():
    async def test() -> None:
        sink = Sink()
        manager = ConsoleManager(Host("web1"), sink)
        assert await manager.attach("web1", "v1")
        await until(lambda: "fake console of web1\r\n" in sink.text("web1"))
        banner = len(sink.data["web1"])
        sent = bytearray()
        for i in range(3000):
            chunk = f"{i:05d};".encode() + bytes([i % 256])  # every byte value, 0 and 255 included
            sent += chunk
            assert manager.write("web1", chunk)
            if i % 50 == 0:
                await asyncio.sleep(0)  # let the pump read between bursts, as keystrokes come
        await until(lambda: len(sink.data["web1"]) >= banner + len(sent))
        assert bytes(sink.data["web1"][banner:]) == bytes(sent)
        await manager.close_all()

    run(test)


def test_resize_reaches_the_program(fake_dir):
    async def test() -> None:
        sink = Sink()
        manager = ConsoleManager(Host("web1"), sink)
        assert await manager.attach("web1", "v1", rows=30, cols=100)
        await until(lambda: "fake console of web1" in sink.text("web1"))
        manager.resize("web1", 40, 132)
        await until(lambda: "[size 40x132]" in sink.text("web1"))
        manager.resize("web1", 9999, 9999)  # clamped, not passed on as is
        await until(lambda: "[size 500x1000]" in sink.text("web1"))
        await manager.close_all()

    run(test)


def test_a_console_nobody_types_in_closes_after_the_idle_time(fake_dir):
    async def test() -> None:
        sink = Sink()
        manager = ConsoleManager(Host("web1"), sink, idle_seconds=0.6, watch_seconds=0.05)
        stop = asyncio.Event()
        watch = asyncio.create_task(manager.run(stop))
        assert await manager.attach("web1", "v1")
        await until(lambda: "fake console of web1" in sink.text("web1"))
        [pid] = starts(fake_dir, "web1")
        for _ in range(5):  # typing keeps it open
            await asyncio.sleep(0.2)
            manager.write("web1", b"x")
        assert "web1" in manager.sessions
        await until(lambda: ("web1", "ended", "idle") in sink.events, timeout=5)
        assert "web1" not in manager.sessions
        await manager.drain()
        await until(lambda: not alive(pid))
        assert not manager.write("web1", b"late")
        stop.set()
        await watch

    run(test)


def test_one_session_per_domain_a_second_viewer_joins_it(fake_dir):
    async def test() -> None:
        sink = Sink()
        manager = ConsoleManager(Host("web1"), sink)
        assert all(await asyncio.gather(manager.attach("web1", "tab1"), manager.attach("web1", "tab2")))
        await until(lambda: "fake console of web1" in sink.text("web1"))
        assert len(starts(fake_dir, "web1")) == 1
        assert set(manager.sessions["web1"].viewers) == {"tab1", "tab2"}
        # The program holds xenconsole's lock: another one for the domain is turned away meanwhile.
        other = await asyncio.create_subprocess_exec(
            *Host().console_command("web1"), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await other.communicate()
        assert other.returncode == 1 and b"another one is attached" in out
        # One viewer leaves: the session stays for the other.
        manager.detach("web1", "tab1")
        assert manager.write("web1", b"still here")
        await until(lambda: "still here" in sink.text("web1"))
        await manager.close_all()
        # Closed, the lock is free again: a new session opens a new program.
        assert await manager.attach("web1", "tab3")
        await until(lambda: len(starts(fake_dir, "web1")) == 2)
        await manager.close_all()

    run(test)


def test_the_last_viewer_leaving_closes_the_session_after_the_linger(fake_dir):
    async def test() -> None:
        sink = Sink()
        manager = ConsoleManager(Host("web1"), sink, linger_seconds=0.3, watch_seconds=0.05)
        stop = asyncio.Event()
        watch = asyncio.create_task(manager.run(stop))
        assert await manager.attach("web1", "tab1")
        manager.detach("web1", "tab1")
        assert await manager.attach("web1", "tab2")  # a reload comes back in time: same session
        await until(lambda: len(starts(fake_dir, "web1")) == 1)
        await asyncio.sleep(0.1)
        assert len(starts(fake_dir, "web1")) == 1
        manager.detach("web1", "tab2")
        await until(lambda: ("web1", "ended", "closed") in sink.events, timeout=5)
        stop.set()
        await watch

    run(test)


@pytest.mark.parametrize("name", ["", "-x", "../etc", "a b", "web1;reboot", "$(reboot)", "web1\n", "x" * 49])
def test_bad_names_are_refused_before_anything_runs(fake_dir, name):
    async def test() -> None:
        sink = Sink()
        manager = ConsoleManager(Host("web1", name if name.isalnum() else "web1"), sink)
        assert not await manager.attach(name, "v1")
        assert manager.sessions == {} and sink.events == [] and sink.data == {}
        assert not manager.write(name, b"hostname\r")

    run(test)
    assert list(fake_dir.iterdir()) == []


@pytest.mark.parametrize(
    "name, listed",
    [
        ("web2", None),  # not on this host at all
        ("Domain-0", None),  # dom0's own console: never
        ("web1", "---s--"),  # shutting down
        ("web1", "----c-"),  # crashed
    ],
)
def test_names_that_list_domains_does_not_show_running_are_refused(fake_dir, name, listed):
    async def test() -> None:
        host = Host("web3")
        if listed:
            host.set(name, 7, listed)
        sink = Sink()
        manager = ConsoleManager(host, sink)
        assert not await manager.attach(name, "v1")
        assert sink.events == [(name, "ended", "refused")]
        assert manager.sessions == {}

    run(test)
    assert not (fake_dir / f"{name}.started").exists()


def test_a_reboot_shows_restarting_and_reattaches_to_the_new_domain(fake_dir):
    async def test() -> None:
        host, sink = Host("web1"), Sink()

        async def hint(domain: str) -> str:
            return "reboot"

        manager = ConsoleManager(host, sink, hint=hint, watch_seconds=0.05)
        stop = asyncio.Event()
        watch = asyncio.create_task(manager.run(stop))
        assert await manager.attach("web1", "v1")
        await until(lambda: len(starts(fake_dir, "web1")) == 1)
        [pid] = starts(fake_dir, "web1")
        host.set("web1", None)  # xl destroys the old domain, and its xl console exits ...
        os.kill(pid, 9)
        await until(lambda: ("web1", "restarting", "") in sink.events)
        assert not manager.write("web1", b"lost while down")
        host.set("web1", 2)  # ... and builds it again under a new domid
        await until(lambda: ("web1", "back", "") in sink.events)
        await until(lambda: len(starts(fake_dir, "web1")) == 2)  # a new xl console, once the old one is gone
        assert "another one is attached" not in sink.text("web1")
        assert manager.write("web1", b"after the reboot")
        await until(lambda: "after the reboot" in sink.text("web1"))
        assert "lost while down" not in sink.text("web1")
        stop.set()
        await watch
        await manager.close_all()

    run(test)


@pytest.mark.parametrize("why", ["destroyed", "shutdown", "deleted"])
def test_destroy_shutdown_and_deletion_end_the_session_with_their_reason(fake_dir, why):
    async def test() -> None:
        host, sink = Host("web1"), Sink()

        async def hint(domain: str) -> str:
            return why

        manager = ConsoleManager(host, sink, hint=hint, watch_seconds=0.05)
        stop = asyncio.Event()
        watch = asyncio.create_task(manager.run(stop))
        assert await manager.attach("web1", "v1")
        await until(lambda: len(starts(fake_dir, "web1")) == 1)
        [pid] = starts(fake_dir, "web1")
        os.kill(pid, 9)  # xl console exits when its domain is gone
        host.set("web1", None)
        await until(lambda: ("web1", "ended", why) in sink.events)
        assert ("web1", "restarting", "") not in sink.events
        assert "web1" not in manager.sessions
        stop.set()
        await watch

    run(test)


def test_xl_list_catches_a_domain_change_the_console_program_did_not_notice(fake_dir):
    async def test() -> None:
        host, sink = Host("web1"), Sink()
        manager = ConsoleManager(host, sink, watch_seconds=0.05, poll_seconds=0.3)
        stop = asyncio.Event()
        watch = asyncio.create_task(manager.run(stop))
        assert await manager.attach("web1", "v1")
        await until(lambda: len(starts(fake_dir, "web1")) == 1)
        host.set("web1", 9)  # a new domid under the same name; the old program still runs
        await until(lambda: ("web1", "back", "") in sink.events)
        assert sink.events.index(("web1", "restarting", "")) < sink.events.index(("web1", "back", ""))
        await until(lambda: len(starts(fake_dir, "web1")) == 2)
        stop.set()
        await watch
        await manager.close_all()

    run(test)


def test_a_domain_that_goes_away_for_no_known_reason_ends_as_off(fake_dir):
    async def test() -> None:
        host, sink = Host("web1"), Sink()
        manager = ConsoleManager(host, sink, watch_seconds=0.05, poll_seconds=0.05, gone_seconds=0.3)
        stop = asyncio.Event()
        watch = asyncio.create_task(manager.run(stop))
        assert await manager.attach("web1", "v1")
        host.set("web1", None)  # `poweroff` typed inside the guest
        await until(lambda: ("web1", "ended", "off") in sink.events)
        assert sink.events.index(("web1", "restarting", "")) < sink.events.index(("web1", "ended", "off"))
        stop.set()
        await watch

    run(test)


def test_a_domain_gone_for_no_known_reason_is_waited_for_when_the_panel_then_says_it_comes_back(fake_dir):
    """A reboot typed in the guest that xl could not finish: no panel job when the console went down, so no
    hint; by the time the domain has been gone gone_seconds, the panel is starting it. Asked again, the hint
    says so, and the console waits and reattaches instead of ending as "off"."""

    async def test() -> None:
        host, sink = Host("web1"), Sink()
        answers = ["", "reboot"]  # when it went down; gone_seconds later

        async def hint(domain: str) -> str:
            return answers.pop(0) if answers else "reboot"

        manager = ConsoleManager(
            host, sink, hint=hint, watch_seconds=0.05, poll_seconds=0.05, restart_poll_seconds=0.05, gone_seconds=0.3
        )
        stop = asyncio.Event()
        watch = asyncio.create_task(manager.run(stop))
        assert await manager.attach("web1", "v1")
        await until(lambda: len(starts(fake_dir, "web1")) == 1)
        [pid] = starts(fake_dir, "web1")
        host.set("web1", None)  # the restart failed: the domain is gone
        os.kill(pid, 9)
        await until(lambda: answers == [])  # asked twice
        await asyncio.sleep(0.5)  # well past gone_seconds
        assert ("web1", "ended", "off") not in sink.events
        host.set("web1", 7)  # the panel's start
        await until(lambda: ("web1", "back", "") in sink.events)
        stop.set()
        await watch
        await manager.close_all()

    run(test)


def test_asked_again_with_still_no_reason_it_ends_as_off(fake_dir):
    async def test() -> None:
        host, sink = Host("web1"), Sink()
        asked: list[str] = []

        async def hint(domain: str) -> str:
            asked.append(domain)
            return ""

        manager = ConsoleManager(host, sink, hint=hint, watch_seconds=0.05, poll_seconds=0.05, gone_seconds=0.3)
        stop = asyncio.Event()
        watch = asyncio.create_task(manager.run(stop))
        assert await manager.attach("web1", "v1")
        host.set("web1", None)  # `poweroff` typed inside the guest
        await until(lambda: ("web1", "ended", "off") in sink.events)
        assert asked == ["web1", "web1"]
        stop.set()
        await watch

    run(test)
