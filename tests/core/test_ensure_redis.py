"""scripts/ensure_redis.py: use REDIS_URL, else 127.0.0.1:6379, else start (and later stop) a private server."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ensure_redis.py"


def _load():
    spec = importlib.util.spec_from_file_location("ensure_redis_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nothing_on_default(monkeypatch, tmp_path):
    """The script, believing the usual 127.0.0.1:6379 is a port where nothing listens."""
    er = _load()
    monkeypatch.setattr(er, "DEFAULT_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(er, "VAR", tmp_path / "redis")
    monkeypatch.delenv("REDIS_URL", raising=False)
    return er


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dead_redis_url_exits_1_with_a_message():
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    r = cli(REDIS_URL=url)
    assert r.returncode == 1
    assert r.stdout == ""
    assert "REDIS_URL=redis://:***@127.0.0.1" in r.stderr
    assert "does not answer PING" in r.stderr
    assert "s3cret" not in r.stderr


def test_live_redis_url_is_printed_as_is():
    url = os.environ["REDIS_URL"]  # the suite's own Redis
    r = cli(REDIS_URL=url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == url


def test_nothing_listening_starts_a_private_server_and_stop_ends_it(nothing_on_default):
    er = nothing_on_default
    url, proc = er.ensure()
    try:
        assert proc is not None
        assert url.startswith("redis://127.0.0.1:") and url != er.DEFAULT_URL
        assert er.probe(url) is None
        assert (er.VAR / f"redis-{urlport(url)}.log").exists()
    finally:
        er.stop(proc)
    assert proc.poll() is not None
    assert er.probe(url) is not None


def test_no_redis_server_installed_says_what_to_install(nothing_on_default, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert nothing_on_default.main([]) == 1
    err = capsys.readouterr().err
    assert "redis-server is not installed" in err
    assert "apt-get install redis-server" in err


def test_run_gives_the_command_a_database_and_stops_the_private_server(nothing_on_default, capfd):
    er = nothing_on_default
    child = "import os, sys; print('child got', os.environ['REDIS_URL']); sys.exit(3)"
    assert er.main(["--db", "7", "--run", sys.executable, "-c", child]) == 3
    out, err = capfd.readouterr()
    started = err.split("started a private redis-server at ")[1].split()[0]
    assert f"child got {started[: -len('/0')]}/7" in out
    assert er.probe(started) is not None, "the private server outlived --run"


def test_run_with_an_existing_server_leaves_it_running(capfd):
    er = _load()
    assert er.main(["--run", sys.executable, "-c", "import os; print(os.environ['REDIS_URL'])"]) == 0
    assert capfd.readouterr().out.strip() == os.environ["REDIS_URL"]
    assert er.probe(os.environ["REDIS_URL"]) is None


def test_with_db_rewrites_tcp_and_unix_urls():
    er = _load()
    assert er.with_db("redis://127.0.0.1:6379/0", 13) == "redis://127.0.0.1:6379/13"
    assert er.with_db("redis://:pw@cache:6380", 2) == "redis://:pw@cache:6380/2"
    assert er.with_db("unix:///run/redis.sock?db=1", 13) == "unix:///run/redis.sock?db=13"


def urlport(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])
