"""A dom0's Redis user outlives a restart of Redis: saved where Redis reads its users at start-up."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis

from labs.services.credentials import persist_redis_users
from tests.core.test_tls_links import _free_port


def _start(argv: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return proc
        except redis.exceptions.ConnectionError:
            assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
            time.sleep(0.05)


@pytest.mark.parametrize("with_aclfile", [False, True])
def test_a_user_survives_a_restart(tmp_path, with_aclfile):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = _free_port()
    conf = tmp_path / "redis.conf"
    lines = [f"port {port}", "bind 127.0.0.1", f"dir {tmp_path}", 'save ""']
    if with_aclfile:
        (tmp_path / "users.acl").write_text("user default on nopass ~* &* +@all\n")
        lines.append(f"aclfile {tmp_path / 'users.acl'}")
    conf.write_text("\n".join(lines) + "\n")
    proc = _start([str(conf)], port)
    try:
        conn = redis.Redis(port=port)
        conn.execute_command("ACL", "SETUSER", "xenpanel-dom0-a", "on", ">pw", "~rq:queue:dom0-a", "+@all")
        assert persist_redis_users(conn) == ("aclfile" if with_aclfile else "config")
    finally:
        proc.terminate()
        proc.wait(10)
    proc = _start([str(conf)], port)
    try:
        assert redis.Redis(port=port, username="xenpanel-dom0-a", password="pw").ping()
    finally:
        proc.terminate()
        proc.wait(10)


def test_without_a_file_nothing_can_be_saved(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = _start(["--port", str(port), "--save", "", "--dir", str(tmp_path)], port)
    try:
        conn = redis.Redis(port=port)
        assert persist_redis_users(conn) == ""
    finally:
        proc.terminate()
        proc.wait(10)
