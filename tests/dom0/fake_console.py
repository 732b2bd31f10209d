#!/usr/bin/env python3
"""A stand-in for `xl console <domain>` in the console tests and benchmark: an echo, no shell.

    fake_console.py <domain> <dir>      (dir: where it keeps its lock and its start log)

Like xenconsole it takes a lock per domain and refuses to run while another
one holds it; it records each start in <dir>/<domain>.started, puts its
terminal in raw mode, prints one banner line, then echoes every byte it
reads, unchanged and in order. On SIGWINCH it prints the new window size as
"[size ROWSxCOLS]". It exits when its terminal closes.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import sys
import termios
import tty


def main() -> int:
    name = sys.argv[1]
    state = sys.argv[2]
    lock = open(os.path.join(state, f"{name}.lock"), "w")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.write(1, b"xenconsole: Could not lock the console: another one is attached\r\n")
        return 1
    with open(os.path.join(state, f"{name}.started"), "a") as f:
        f.write(f"{os.getpid()}\n")
    tty.setraw(0)

    def winch(*_args: object) -> None:
        rows, cols = struct.unpack("HHHH", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))[:2]
        os.write(1, f"[size {rows}x{cols}]".encode())

    signal.signal(signal.SIGWINCH, winch)
    os.write(1, f"fake console of {name}\r\n".encode())
    while True:
        try:
            data = os.read(0, 65536)
        except OSError:
            return 0
        if not data:
            return 0
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]


if __name__ == "__main__":
    sys.exit(main())
