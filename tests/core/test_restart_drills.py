"""Drills under `make run`: PostgreSQL, then Redis with `appendonly yes`, restarted in the middle of a batch.

The workers and the sync loop reconnect by themselves, no job is lost, and every guest ends ready with no
manual retry. Each drill owns its server (a throwaway PostgreSQL cluster, a private redis-server), so
restarting it disturbs nothing else on the machine.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import redis

from tests.core.test_run_command import ROOT, create_batch, free_port, run_env, stop_tree, wait_for_http
from tests.pgcluster import cluster

GUESTS = 4


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run.py")], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def _until(check: Callable[[], bool], what: str | Callable[[], object], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (psycopg.OperationalError, redis.ConnectionError):
            pass  # the server is restarting
        assert time.monotonic() < deadline, f"{what() if callable(what) else what}:\n{log.read_text()[-4000:]}"
        time.sleep(0.3)


def _drill(tmp_path: Path, env: dict[str, str], rows: Callable[[str], list[tuple]], restart: Callable[[], None]):
    """make run, a 4-guest batch, `restart` once a job runs; every guest ready, each job ran to the end once."""
    log = tmp_path / "run.log"
    proc = _start(env, log)
    try:
        wait_for_http(f"http://{env['XENPANEL_BIND']}/login/", proc, log)
        _until(lambda: rows("SELECT total_memory_mb FROM labs_host") not in ([], [(None,)]), "no sync tick", log, 60)
        create_batch(env)
        _until(lambda: bool(rows("SELECT 1 FROM labs_task WHERE status = 'running'")), "no job started", log, 60)
        restart()
        ready = "SELECT count(*) FROM labs_guest WHERE status = 'ready' AND busy_with = ''"
        _until(lambda: rows(ready) == [(GUESTS,)], lambda: f"not every guest ready: {_safe(rows)}", log, 240)
        # The panel answers again, and the workers and the sync loop carry on (a host seen after the restart).
        with urllib.request.urlopen(f"http://{env['XENPANEL_BIND']}/login/", timeout=10) as r:
            assert r.status == 200
        provisions = rows("SELECT status FROM labs_task WHERE kind = 'provision' ORDER BY id")
        # No job lost: each guest's provision succeeded. Only the jobs running at the restart (two at a time
        # on the demo's host) may have been cut short and retried by themselves; the queued ones waited.
        assert [s for (s,) in provisions].count("succeeded") == GUESTS, provisions
        assert len(provisions) <= GUESTS + 2, provisions
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        stop_tree(proc)


def _safe(rows: Callable[[str], list[tuple]]) -> object:
    try:
        return rows("SELECT domain_name, status, busy_with, last_error FROM labs_guest ORDER BY id")
    except (psycopg.OperationalError, redis.ConnectionError) as e:
        return e


@pytest.mark.timeout(600)
def test_a_postgresql_restart_in_the_middle_of_a_batch(tmp_path):
    with cluster("drill") as pg:
        env, _port, _asgi, redis_url = run_env(tmp_path)
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{pg.port}/postgres"
        redis.Redis.from_url(redis_url).flushdb()

        def rows(sql: str) -> list[tuple]:
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/postgres", connect_timeout=5) as conn:
                return conn.execute(sql).fetchall()

        def restart() -> None:
            # -m fast ends every session at once, as a crash or a package upgrade's restart would.
            pg.pg_ctl("-m", "fast", "restart")

        _drill(tmp_path, env, rows, restart)


@pytest.mark.timeout(600)
def test_a_redis_restart_with_appendonly_in_the_middle_of_a_batch(tmp_path):
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    argv += ["--appendonly", "yes", "--appendfsync", "always", "--logfile", str(tmp_path / "redis.log")]
    server = [subprocess.Popen(argv, start_new_session=True)]
    env, _port, _asgi, _redis = run_env(tmp_path)
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    db = tmp_path / "demo.sqlite3"

    def rows(sql: str) -> list[tuple]:
        import sqlite3

        with sqlite3.connect(db, timeout=20) as conn:
            return conn.execute(sql).fetchall()

    def restart() -> None:
        # SIGKILL: nothing is written at exit; what survives is what appendfsync always put on disk.
        server[0].kill()
        server[0].wait()
        server[0] = subprocess.Popen(argv, start_new_session=True)

    try:
        _until(lambda: redis.Redis(port=port).ping(), "redis-server did not start", tmp_path / "redis.log", 30)
        _drill(tmp_path, env, rows, restart)
        assert redis.Redis(port=port).info("persistence")["aof_enabled"] == 1
    finally:
        server[0].kill()
        server[0].wait()
