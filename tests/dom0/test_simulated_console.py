"""The simulated dom0's console: a plausible login shell from the guest's state, and never a process.

No Django here (the simulator is part of labs.dom0). A Python audit hook
(PEP 578) sees every spawn, however it is made; it records only while a
test's `spawns` list is set.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from labs.dom0.base import DomainSpec, GuestFiles, HostConfig
from labs.dom0.console import ConsoleManager
from labs.dom0.errors import InvalidName
from labs.dom0.pty import ConsoleError
from labs.dom0.simulated import SimulatedHost

SPAWN_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty", "os.spawn")
_recording: list[list[str]] = []
_installed = False


def _hook(event: str, args: tuple) -> None:
    if _recording and event in SPAWN_EVENTS:
        _recording[-1].append(f"{event} {args!r:.120}")


@pytest.fixture
def spawns():
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    seen: list[str] = []
    _recording.append(seen)
    yield seen
    _recording.pop()


@pytest.fixture
def sim(tmp_path) -> SimulatedHost:
    host = SimulatedHost(HostConfig(name="dom0-sim", volume_group="vg0", sim_dir=str(tmp_path / "sim")))
    root = host.create_volume("vm-net101-alice.raiz", 256)
    host.clone_template("/modelo", root.path, "ext4", "mkfs")
    files = GuestFiles(
        hostname="net101-alice",
        fqdn="net101-alice.lab.example.edu",
        address="10.10.0.11",
        netmask="255.255.255.0",
        gateway="10.10.0.1",
        broadcast="10.10.0.255",
    )
    host.customize_rootfs(root.path, files)
    host.write_config(
        DomainSpec(
            name="net101-alice",
            kernel="/boot/vmlinuz",
            memory_mb=256,
            root_target=root.path,
            mac="00:16:3e:0a:0b:0c",
        )
    )
    host.create("net101-alice")
    return host


def typed(console, keys: bytes) -> str:
    """Type, then read what the console printed since the last read."""
    console.write(keys)
    out = b""
    while (chunk := console.read()) not in (None, b""):
        out += chunk
    return out.decode()


def test_the_banner_and_hostname_come_from_the_guest(sim, spawns):
    console = sim.open_console("net101-alice")
    banner = typed(console, b"")
    assert "Debian GNU/Linux 12 net101-alice hvc0" in banner
    assert banner.endswith("root@net101-alice:~# ")
    assert typed(console, b"hostname\r") == "hostname\r\nnet101-alice\r\nroot@net101-alice:~# "
    assert "net101-alice.lab.example.edu" in typed(console, b"hostname -f\r")
    assert "Linux net101-alice " in typed(console, b"uname -a\r")
    console.close()
    assert spawns == []


def test_ip_addr_shows_the_guests_address_netmask_and_mac(sim, spawns):
    console = sim.open_console("net101-alice")
    typed(console, b"")
    out = typed(console, b"ip addr\r")
    assert "inet 127.0.0.1/8 scope host lo" in out
    assert "inet 10.10.0.11/24 brd 10.10.0.255 scope global eth0" in out
    assert "link/ether 00:16:3e:0a:0b:0c" in out
    short = typed(console, b"ip a\r").split("\r\n", 1)[1]
    assert typed(console, b"ip address show\r").split("\r\n", 1)[1] == short == out.split("\r\n", 1)[1]
    console.close()
    assert spawns == []


def test_it_echoes_edits_and_answers_the_rest_plausibly(sim, spawns):
    console = sim.open_console("net101-alice")
    typed(console, b"")
    assert typed(console, b"rm -rf /\r").startswith("rm -rf /\r\n-bash: rm: command not found\r\n")
    # Backspace edits the line; arrow keys are swallowed; Ctrl+C abandons it.
    assert typed(console, b"hostnamx\x7fe\x1b[A\r") == "hostnamx\b \be\r\nnet101-alice\r\nroot@net101-alice:~# "
    assert typed(console, b"sleep 100\x03") == "sleep 100^C\r\nroot@net101-alice:~# "
    assert typed(console, b"echo 'two  words' $HOME `id`\r").splitlines()[1] == "two  words $HOME `id`"
    console.resize(40, 120)
    assert "40 120" in typed(console, b"stty size\r")
    assert "login:" in typed(console, b"exit\r")
    console.close()
    assert spawns == []


def test_no_such_domain_and_bad_names_are_refused(sim):
    with pytest.raises(ConsoleError):
        sim.open_console("net101-bob")
    for name in ("../x", "-h", "a b", "x;id"):
        with pytest.raises(InvalidName):
            sim.open_console(name)
    assert sim.history[-1] == ["xl", "console", "net101-bob"]


def test_the_agent_path_on_the_simulated_host_starts_no_process(sim, spawns):
    """The pump with the simulated console, as `console_agent` runs it under XENPANEL_DOM0=simulated."""

    class Sink:
        def __init__(self) -> None:
            self.out = bytearray()
            self.events: list[tuple[str, str]] = []

        async def output(self, domain: str, data: bytes) -> None:
            self.out += data

        async def event(self, domain: str, name: str, detail: str = "") -> None:
            self.events.append((name, detail))

    why = ["reboot"]  # what the panel would say: the job running on the guest

    async def hint(domain: str) -> str:
        return why[0]

    async def test() -> None:
        sink = Sink()
        manager = ConsoleManager(sim, sink, spawn=sim.open_console, hint=hint, watch_seconds=0.05)
        stop = asyncio.Event()
        watch = asyncio.create_task(manager.run(stop))
        assert await manager.attach("net101-alice", "tab")
        assert manager.write("net101-alice", b"hostname\r")
        deadline = time.monotonic() + 10
        while b"\r\nnet101-alice\r\n" not in sink.out:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        sim.reboot("net101-alice")  # comes back at once under a new domid (no step delay)
        while ("back", "") not in sink.events:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert ("restarting", "") in sink.events
        why[0] = "destroyed"
        sim.destroy("net101-alice")
        while ("ended", "destroyed") not in sink.events:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        stop.set()
        await watch
        await manager.close_all()

    asyncio.run(test())
    assert spawns == []  # asyncio.to_thread (xl list) starts threads, not processes


def test_the_hook_sees_a_spawn(spawns):
    subprocess.run(["true"], check=True)
    assert any(s.startswith("subprocess.Popen") for s in spawns)


def test_reboot_and_poweroff_typed_in_the_guest_act_on_the_domain(sim, spawns):
    """As the guest's own would: the domain restarts as a new one (on_reboot="restart"), or is gone."""
    first = sim.domains()["net101-alice"]["domid"]
    console = sim.open_console("net101-alice")
    typed(console, b"")
    assert "reboot: Restarting system" in typed(console, b"reboot\r")
    assert sim.domains()["net101-alice"]["domid"] > first  # no step delay here: at once
    assert sim.restart_failure("net101-alice") == ""
    console.close()

    console = sim.open_console("net101-alice")
    typed(console, b"")
    assert "reboot: Power down" in typed(console, b"poweroff\r")
    assert "net101-alice" not in sim.domains()
    assert sim.restart_failure("net101-alice") == ""  # a stop, not a failed reboot
    console.close()
    assert spawns == []
