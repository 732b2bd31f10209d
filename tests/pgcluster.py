"""A throwaway PostgreSQL 15 cluster (initdb + pg_ctl as the postgres user) for tests that must own the server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, base: Path, port: int) -> None:
        self.base, self.port, self.data = base, port, base / "data"

    def pg_ctl(self, *args: str) -> None:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"), "-w", *args)


def as_postgres(*argv: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=120)


@contextmanager
def cluster(name: str, conf: str = "", hba: str = "", prepare=None) -> Iterator[Cluster]:
    """A started cluster under /tmp (`conf` appended to postgresql.conf, `hba` replacing pg_hba.conf when given;
    `prepare(base)` runs before initdb, as root, e.g. to make certificates); stopped and removed afterwards."""
    if not (PG_BIN / "initdb").exists() or os.geteuid() != 0:
        pytest.skip("needs PostgreSQL 15's server binaries and root (initdb runs as the postgres user)")
    base = Path(f"/tmp/xenpanel-{name}-pg-{os.getpid()}")
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    if prepare is not None:
        prepare(base)
    shutil.chown(base, "postgres")
    c = Cluster(base, free_port())
    as_postgres(str(PG_BIN / "initdb"), "-D", str(c.data), "-A", "trust", "-U", "postgres")
    with open(c.data / "postgresql.conf", "a") as f:
        f.write(f"port = {c.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n{conf}")
    if hba:
        (c.data / "pg_hba.conf").write_text(hba)
    c.pg_ctl("start")
    try:
        yield c
    finally:
        c.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)
