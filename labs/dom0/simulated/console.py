"""The simulated dom0's serial console: a pretend login shell that runs nothing.

`open_console(name)` is what `xl console <name>` is on a real host: a
`labs.dom0.console.Backend` the console agent reads and writes. It prints a
login banner (kernel lines first when the domain has just booted), echoes
what is typed with a line editor (backspace, Ctrl+C, Ctrl+U, Ctrl+L,
Ctrl+D), and answers a handful of commands from the guest's state as the
simulated host keeps it: `hostname` from the guest's /etc/hostname,
`ip addr` from its /etc/network/interfaces and the MAC in its config, plus
`uname`, `whoami`, `id`, `pwd`, `echo`, `stty size`, `clear` and `exit`;
`reboot` and `poweroff` (or `halt`, `shutdown`) act on the simulated domain
as the guest's own would, so the panel sees it go (and come back).
Anything else is "command not found". No command runs and no process is
started: the output goes through a pipe so the agent can wait on it like a
pty.
"""

from __future__ import annotations

import codecs
import contextlib
import ipaddress
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import names
from ..pty import ConsoleError
from .state import Record, SimulatedBase, State

KERNEL = "6.1.0-28-amd64"
KERNEL_BUILD = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)"
# A domain that booted this recently shows its last kernel lines before the login prompt.
FRESH_BOOT_SECONDS = 30.0
CLEAR = "\x1b[H\x1b[2J"


@dataclass(frozen=True)
class GuestView:
    """What the console shows of the guest: its names and its first NIC."""

    domain: str
    domid: int
    hostname: str
    fqdn: str
    address: str  # "" when the guest's files do not say
    prefix: int
    broadcast: str
    mac: str
    fresh: bool  # booted a moment ago


def guest_view(state: State, name: str, now: float) -> GuestView | None:
    """The guest as its root filesystem and config describe it; None when there is no such domain."""
    d: Record | None = state["domains"].get(name)
    if d is None:
        return None
    vol = state["volumes"].get(d.get("root_volume") or "") or {}
    files: dict[str, str] = vol.get("files") or {}
    hostname = (files.get("/etc/hostname") or name).strip() or name
    fqdn = hostname
    for line in (files.get("/etc/hosts") or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith(("#", "127.", "::", "ff02")):
            fqdn = parts[1]
            break
    # The first "iface ... static" stanza's address lines: the guest's eth0.
    nic: dict[str, str] = {}
    for line in (files.get("/etc/network/interfaces") or "").splitlines():
        key, _, value = line.strip().partition(" ")
        if key in ("address", "netmask", "broadcast"):
            nic.setdefault(key, value.strip())
    prefix = 24
    with contextlib.suppress(ValueError):
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{nic['netmask']}").prefixlen if "netmask" in nic else prefix
    spec = (state["configs"].get(name) or {}).get("spec") or {}
    fresh = d.get("boots", 1) > 1 or now - float(d.get("started_at") or 0) < FRESH_BOOT_SECONDS
    return GuestView(
        domain=name,
        domid=d["domid"],
        hostname=hostname,
        fqdn=fqdn,
        address=nic.get("address", ""),
        prefix=prefix,
        broadcast=nic.get("broadcast", ""),
        mac=spec.get("mac") or "",
        fresh=fresh,
    )


class SimulatedConsole:
    """One attached console of a simulated guest (a `labs.dom0.console.Backend`)."""

    # Nothing here notices the domain going: the agent's `xl list` does.
    ends_with_domain = False

    def __init__(self, guest: GuestView, power: Callable[[str], None] | None = None) -> None:
        self.guest = guest
        self._power = power  # "reboot" / "poweroff" typed in the guest, acted on by the simulated host
        self.rows, self.cols = 24, 80
        self._line = ""
        self._escape = ""  # an escape sequence being skipped (arrow keys and the like)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._closed = False
        if guest.fresh:
            self._out(self._boot_lines())
        self._out(self._login())

    # ------------------------------------------------------------ Backend
    def fileno(self) -> int:
        return self._r

    def read(self) -> bytes | None:
        if self._closed:
            return b""
        try:
            return os.read(self._r, 65536)
        except BlockingIOError:
            return None

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        for char in self._decoder.decode(data):
            self._key(char)

    @property
    def pending(self) -> bool:
        return False

    def flush(self) -> None:
        return None

    def resize(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._r)
            os.close(self._w)

    def reap(self, force: bool = False) -> bool:
        return True

    # ------------------------------------------------------------ the pretend guest
    def _out(self, text: str) -> None:
        if self._closed:
            return
        with contextlib.suppress(BlockingIOError):  # nobody reads: a real console drops output too
            os.write(self._w, text.encode())

    @property
    def prompt(self) -> str:
        return f"root@{self.guest.hostname}:~# "

    def _boot_lines(self) -> str:
        lines = [
            f"[    0.000000] Linux version {KERNEL} (debian-kernel@lists.debian.org) {KERNEL_BUILD}",
            "[    0.000000] Xen: using vcpuop timer interface",
            "[    1.204711] EXT4-fs (xvda1): mounted filesystem with ordered data mode.",
            "[    2.581032] systemd[1]: Detected virtualization xen.",
        ]
        return "\r\n".join(lines) + "\r\n"

    def _login(self) -> str:
        host = self.guest.hostname
        return (
            f"\r\nDebian GNU/Linux 12 {host} hvc0\r\n\r\n"
            f"{host} login: root (automatic login)\r\n\r\n"
            f"Linux {host} {KERNEL} {KERNEL_BUILD} x86_64\r\n\r\n"
            "This is xenpanel's simulated console: it knows hostname, ip addr, uname, whoami, echo, clear "
            "and exit.\r\n"
            f"{self.prompt}"
        )

    def _key(self, char: str) -> None:
        if self._escape or char == "\x1b":
            self._skip_escape(char)
        elif char in self._CONTROL:
            getattr(self, self._CONTROL[char])()
        elif char == "\t" or ord(char) < 32:
            self._out("\x07")
        elif len(self._line) < 4096:
            self._line += char
            self._out(char)

    # Control keys and what they do, as bash's line editor does them.
    _CONTROL = {
        "\r": "_enter",
        "\n": "_enter",
        "\x7f": "_backspace",
        "\x08": "_backspace",
        "\x03": "_interrupt",
        "\x04": "_end_of_file",
        "\x15": "_kill_line",
        "\x0c": "_redraw",
    }

    def _enter(self) -> None:
        line, self._line = self._line, ""
        self._out("\r\n" + self._run(line))

    def _backspace(self) -> None:
        if self._line:
            self._line = self._line[:-1]
            self._out("\b \b")

    def _interrupt(self) -> None:
        self._line = ""
        self._out("^C\r\n" + self.prompt)

    def _end_of_file(self) -> None:
        if not self._line:
            self._out("logout\r\n" + self._login())

    def _kill_line(self) -> None:
        self._out("\b \b" * len(self._line))
        self._line = ""

    def _redraw(self) -> None:
        self._out(CLEAR + self.prompt + self._line)

    def _skip_escape(self, char: str) -> None:
        """Swallow ESC [ ... final and ESC O x: arrow and function keys do nothing here."""
        self._escape += char
        seq = self._escape
        if len(seq) == 1:
            return
        if seq[1] not in "[O" or (seq[1] == "O" and len(seq) == 3) or (len(seq) > 2 and "@" <= char <= "~"):
            self._escape = ""
        elif len(seq) > 32:
            self._escape = ""

    def _run(self, line: str) -> str:
        """What the pretend shell prints for one line, prompt included."""
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        if not words:
            return self.prompt
        command, args = words[0], words[1:]
        if command in ("exit", "logout"):
            return "logout\r\n" + self._login()
        if command == "clear":
            return CLEAR + self.prompt
        answer = self._answer(command, args)
        if answer is None:
            answer = f"-bash: {command}: command not found"
        return (answer + "\r\n" if answer else "") + self.prompt

    def _answer(self, command: str, args: list[str]) -> str | None:
        fixed = {
            "whoami": "root",
            "id": "uid=0(root) gid=0(root) groups=0(root)",
            "pwd": "/root",
            "echo": " ".join(args),
        }
        if command in fixed:
            return fixed[command]
        if command in ("reboot", "poweroff", "halt", "shutdown"):
            what = "reboot" if command == "reboot" or "-r" in args else "poweroff"
            if self._power is None:
                return "This simulated guest cannot do that itself: use the panel's buttons."
            self._power(what)
            # The kernel's last line; the agent sees the domain go (and come back) through `xl list`.
            return "reboot: Restarting system" if what == "reboot" else "reboot: Power down"
        if command == "stty" and args == ["size"]:
            return f"{self.rows} {self.cols}"
        handler = {"hostname": self._hostname, "ip": self._ip, "uname": self._uname}.get(command)
        return handler(args) if handler is not None else None

    def _hostname(self, args: list[str]) -> str:
        g = self.guest
        if args[:1] == ["-f"]:
            return g.fqdn
        if args[:1] in (["-I"], ["-i"]):
            return g.address
        return g.hostname

    def _ip(self, args: list[str]) -> str:
        if any(word in ("a", "ad", "addr", "address") for word in args):
            return self._ip_addr()
        return "Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }\r\nwhere  OBJECT := { address | link | route }"

    def _uname(self, args: list[str]) -> str:
        g = self.guest
        if "-a" in args:
            return f"Linux {g.hostname} {KERNEL} {KERNEL_BUILD} x86_64 GNU/Linux"
        if "-r" in args:
            return KERNEL
        if "-n" in args:
            return g.hostname
        return "Linux"

    def _ip_addr(self) -> str:
        g = self.guest
        lines = [
            "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000",
            "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00",
            "    inet 127.0.0.1/8 scope host lo",
            "       valid_lft forever preferred_lft forever",
            "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP group default qlen 1000",
            f"    link/ether {g.mac or '00:16:3e:00:00:00'} brd ff:ff:ff:ff:ff:ff",
        ]
        if g.address:
            brd = f" brd {g.broadcast}" if g.broadcast else ""
            lines += [
                f"    inet {g.address}/{g.prefix}{brd} scope global eth0",
                "       valid_lft forever preferred_lft forever",
            ]
        return "\r\n".join(lines)


class ConsoleMixin(SimulatedBase):
    """`open_console(name)`: the simulated `xl console <name>`."""

    def open_console(self, name: str) -> SimulatedConsole:
        names.domain_name(name)
        argv = [self.toolstack, "console", name]
        with self._locked(readonly=True) as state:
            self._log([argv])
            guest = guest_view(state, name, time.time())
        if guest is None:
            raise ConsoleError(f"{name} is an invalid domain identifier", argv=argv, rc=1)
        return SimulatedConsole(guest, power=lambda what: self._from_inside(name, what))

    if TYPE_CHECKING:  # ToolstackMixin's, on the composed SimulatedHost

        def _from_inside(self, name: str, what: str, restart_fails: bool = False) -> None: ...
