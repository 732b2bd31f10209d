"""The one place commands run.

Every command is an argv list (never a shell string), runs with a timeout,
stdin from /dev/null unless the caller passes data, and captured output. A
non-zero exit becomes a `CommandFailed` that carries argv, rc and stderr.

`LocalRunner` runs on this machine (the worker on dom0). `SshRunner` runs on
another machine over ssh; it exists for the testbed and benchmarks, and
quotes each argument with shlex.quote so the remote shell sees the same argv.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .errors import CommandFailed, CommandTimeout

DEFAULT_TIMEOUT = 300.0
# LVM warns about inherited descriptors unless told not to.
BASE_ENV = {"LVM_SUPPRESS_FD_WARNINGS": "1", "LC_ALL": "C"}


@dataclass(frozen=True)
class Result:
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float


class Runner(Protocol):
    # Total seconds spent waiting for commands; jobs read it to split host
    # work from the panel's own overhead.
    busy_seconds: float

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result: ...

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None: ...

    def read_file(self, path: str) -> bytes: ...


def _check_argv(argv: Sequence[str]) -> list[str]:
    argv = [str(a) for a in argv]
    if not argv or not argv[0]:
        raise ValueError("empty command")
    if any("\x00" in a for a in argv):
        raise ValueError("NUL byte in a command argument")
    return argv


class LocalRunner:
    def __init__(self, env: Mapping[str, str] | None = None, prefix: Sequence[str] = ()) -> None:
        self.env = {**os.environ, **BASE_ENV, **(env or {})}
        # A prefix such as ["nsenter", ...] or ["sudo", "-n"]; empty by default.
        self.prefix = list(prefix)
        self.busy_seconds = 0.0
        self.history: list[Result] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        # The bookkeeping and the errors live here once; `_execute` is only
        # how the command runs (here, or over ssh in `SshRunner`).
        argv = self.prefix + _check_argv(argv)
        started = time.monotonic()
        try:
            rc, out, err = self._execute(argv, timeout=timeout, input=input, env=env)
        except _TimedOut as e:
            self.busy_seconds += e.stopped - started
            raise CommandTimeout(
                f"{argv[0]} did not finish within {timeout:g} s", argv=argv, stderr=e.stderr
            ) from None
        seconds = time.monotonic() - started
        self.busy_seconds += seconds
        result = Result(argv, rc, out.decode(errors="replace"), err.decode(errors="replace"), seconds)
        self.history.append(result)
        self._refuse(result)
        if check and rc != 0:
            raise CommandFailed(
                f"{os.path.basename(argv[0])} failed (exit {rc}): {_last_line(result.stderr)}",
                argv=argv,
                rc=rc,
                stderr=result.stderr,
            )
        return result

    def _execute(
        self, argv: list[str], *, timeout: float, input: bytes | None, env: Mapping[str, str] | None
    ) -> tuple[int, bytes, bytes]:
        """Run argv here and return (rc, stdout, stderr); raise `_TimedOut` when it overran."""
        try:
            # Its own process group, so a timeout kills what the command
            # started too (hotplug scripts, `sh -c` children), not only it.
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**self.env, **(env or {})},
                close_fds=True,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise CommandFailed(f"{argv[0]}: command not found", argv=argv, rc=127) from None
        with p:
            try:
                out, err = p.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(p)
                # Busy time ends at the kill, not after collecting its stderr.
                stopped = time.monotonic()
                raise _TimedOut(_drain_stderr(p), stopped) from None
            except BaseException:
                # Interrupted (e.g. the job was cancelled): leave nothing running.
                _kill_group(p)
                raise
        return p.returncode, out, err

    def _refuse(self, result: Result) -> None:
        """Raise for a result that is an error whatever `check` says; locally none is."""

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write atomically: a temp file in the same directory, fsync, rename."""
        directory = os.path.dirname(path) or "."
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".xenpanel-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        # The rename itself must reach the disk too, or a crash right after
        # could bring back the old file (or none).
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()


class SshRunner(LocalRunner):
    """Run commands on another host: `ssh ... root@host -- <quoted argv>`."""

    def __init__(self, target: str, port: int = 22, key: str | None = None, options: Sequence[str] = ()) -> None:
        ssh = [
            "ssh",
            "-p",
            str(port),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            *options,
        ]
        if key:
            ssh += ["-i", key]
        super().__init__()
        self.ssh = [*ssh, target, "--"]

    def _execute(
        self, argv: list[str], *, timeout: float, input: bytes | None, env: Mapping[str, str] | None
    ) -> tuple[int, bytes, bytes]:
        remote_env = [f"{k}={v}" for k, v in {**BASE_ENV, **(env or {})}.items()]
        remote = shlex.join(["env", *remote_env, *argv])
        try:
            p = subprocess.run(
                [*self.ssh, remote],
                input=input,
                stdin=subprocess.DEVNULL if input is None else None,
                capture_output=True,
                timeout=timeout,
                close_fds=True,
            )
        except subprocess.TimeoutExpired as e:
            raise _TimedOut((e.stderr or b"").decode(errors="replace"), time.monotonic()) from None
        return p.returncode, p.stdout, p.stderr

    def _refuse(self, result: Result) -> None:
        # 255 with no output is ssh's own failure, not the command's.
        if result.rc == 255 and not result.stdout:
            raise CommandFailed(
                f"ssh could not reach the host: {_last_line(result.stderr)}",
                argv=result.argv,
                rc=255,
                stderr=result.stderr,
            )

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        directory = os.path.dirname(path) or "."
        tmp = f"{directory}/.xenpanel-{os.getpid()}-{time.monotonic_ns()}"
        self.run(
            [
                "sh",
                "-c",
                # -T: never move the temp file *into* a directory named like the
                # target; on any failure the temp file is removed, not left behind.
                'umask 077 && { cat > "$1" && chmod "$2" "$1" && sync "$1" && mv -fT "$1" "$3" && sync "$4"; }'
                ' || { rc=$?; rm -f "$1"; exit $rc; }',
                "write_file",
                tmp,
                f"{mode:o}",
                path,
                directory,
            ],
            input=data,
        )

    def read_file(self, path: str) -> bytes:
        return self.run(["cat", "--", path]).stdout.encode()


class _TimedOut(Exception):
    """From `_execute`: the command overran and was stopped at `stopped` (time.monotonic)."""

    def __init__(self, stderr: str, stopped: float) -> None:
        super().__init__(stderr)
        self.stderr = stderr
        self.stopped = stopped


def _kill_group(p: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it ended on its own just now


def _drain_stderr(p: subprocess.Popen[bytes]) -> str:
    """What the killed command had written to stderr; never waits long for it."""
    try:
        _, err = p.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        # A process that left the group still holds the pipe: give up on it.
        p.kill()
        err = b""
    return (err or b"").decode(errors="replace")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"
