"""A program in a pty: how the console agent runs `xl console <domain>` (see console.py).

No shell: an argv list, resolved on PATH, executed in a new session whose
controlling terminal is the pty, with a minimal environment. Reads and
writes are non-blocking on the master side; the window size is set before
the program starts and changed with TIOCSWINSZ (the program gets SIGWINCH).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import struct
import termios
from collections.abc import Mapping, Sequence

from .errors import Dom0Error

READ_SIZE = 65536
MAX_ROWS, MAX_COLS = 500, 1000


class ConsoleError(Dom0Error):
    """The console program could not be started."""


def winsize(rows: int, cols: int) -> bytes:
    rows = min(max(int(rows), 1), MAX_ROWS)
    cols = min(max(int(cols), 1), MAX_COLS)
    return struct.pack("HHHH", rows, cols, 0, 0)


class PtyProcess:
    """A program in a new pty (its controlling terminal), read and written through the master side."""

    # `xl console` exits when its domain is destroyed (a reboot too: the new domain has a new domid).
    ends_with_domain = True

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, rows: int = 24, cols: int = 80
    ) -> None:
        args = [str(a) for a in argv]
        if not args or not args[0] or any("\x00" in a for a in args):
            raise ConsoleError("empty command or NUL byte in the console command", argv=args)
        path = shutil.which(args[0])
        if path is None:
            raise ConsoleError(f"{args[0]}: command not found", argv=args, rc=127)
        environ = dict(env) if env is not None else {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        environ.setdefault("TERM", "xterm-256color")
        environ.setdefault("LC_ALL", "C.UTF-8")
        self.argv = args
        # forkpty: the child gets the pty as its controlling terminal, so a
        # window size change reaches it as SIGWINCH. It execs at once.
        size = winsize(rows, cols)
        pid, fd = os.forkpty()
        if pid == 0:  # pragma: no cover (the child)
            try:
                # The window size before the program starts: no SIGWINCH for the first one.
                fcntl.ioctl(0, termios.TIOCSWINSZ, size)
                os.execve(path, args, environ)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        os.set_blocking(fd, False)
        self._out = bytearray()
        self._closed = False
        self._size = size

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bytes | None:
        try:
            return os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno == errno.EIO:  # the slave side is closed: the program has ended
                return b""
            raise

    def write(self, data: bytes) -> None:
        self._out += data
        self.flush()

    @property
    def pending(self) -> bool:
        return bool(self._out)

    def flush(self) -> None:
        while self._out and not self._closed:
            try:
                n = os.write(self.fd, self._out)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EIO:
                    self._out.clear()
                    return
                raise
            del self._out[:n]

    def resize(self, rows: int, cols: int) -> None:
        size = winsize(rows, cols)
        if not self._closed and size != self._size:  # the same size again would be a SIGWINCH for nothing
            fcntl.ioctl(self.fd, termios.TIOCSWINSZ, size)
            self._size = size

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._out.clear()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        os.close(self.fd)

    def reap(self, force: bool = False) -> bool:
        if force:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        try:
            pid, _ = os.waitpid(self.pid, 0 if force else os.WNOHANG)
        except ChildProcessError:
            return True
        return pid != 0
