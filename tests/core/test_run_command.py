"""`make run`'s script: it serves the panel over HTTP with the demo logins, and SIGINT stops every child."""

from __future__ import annotations

import http.cookiejar
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def with_db(url: str, db: int) -> str:
    spec = importlib.util.spec_from_file_location("ensure_redis_for_run", ROOT / "scripts" / "ensure_redis.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.with_db(url, db)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid`, with its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = cmdline(child)
                frontier.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited; only its parent's wait() is left


def stop_tree(proc: subprocess.Popen) -> None:
    """Kill run.py and everything below it: a failed test must leave no worker behind to take the next one's jobs."""
    if proc.poll() is not None:
        return
    below = descendants(proc.pid)
    proc.kill()
    proc.wait()
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"run.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise AssertionError(f"{url} never answered:\n{log.read_text()[-3000:]}")


def wait_for_agent(redis_url: str, queue: str, timeout: float = 30) -> bool:
    """Whether the host's console agent keeps its heartbeat key in Redis (labs.services.console.agent_key)."""
    import redis

    conn = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.exists(f"xenpanel:console:{queue}:agent"):
            return True
        time.sleep(0.3)
    return False


def log_in(base: str, username: str, password: str) -> tuple[int, str]:
    """Log in through the real login form, CSRF cookie and all; the status and where it led."""
    jar = http.cookiejar.CookieJar()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    page = opener.open(f"{base}/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": username, "password": password})
    request = urllib.request.Request(f"{base}/login/", data=body.encode(), headers={"Referer": f"{base}/login/"})
    try:
        r = opener.open(request, timeout=10)
        return r.status, ""
    except urllib.error.HTTPError as e:  # the 302 comes back as an "error" without redirects
        return e.code, e.headers.get("Location", "")


def run_env(tmp_path: Path) -> tuple[dict[str, str], int, int, str]:
    """make run's environment for a test: its own ports, database, simulated host and Redis database."""
    port, asgi_port = free_port(), free_port()
    redis_url = with_db(os.environ["REDIS_URL"], int(os.environ.get("XENPANEL_TEST_RUN_REDIS_DB", "12")))
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        XENPANEL_BIND=f"127.0.0.1:{port}",
        XENPANEL_ASGI_BIND=f"127.0.0.1:{asgi_port}",
        XENPANEL_SIM_DIR=str(tmp_path / "simdom0"),
        WEB_CONCURRENCY="2",
        # Its own Redis database: this worker must not take jobs queued by other tests
        # (XENPANEL_TEST_RUN_REDIS_DB picks another one, for a machine where 12 is someone else's).
        REDIS_URL=redis_url,
    )
    # run.py's defaults apply: DEBUG off, the SECRET_KEY made once into var/.
    env.pop("DEBUG", None)
    env.pop("SECRET_KEY", None)
    return env, port, asgi_port, redis_url


def test_run_serves_the_panel_and_sigint_stops_every_child(tmp_path):
    env, port, asgi_port, redis_url = run_env(tmp_path)
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run.py")], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        page = wait_for_http(f"{base}/login/", proc, log)
        assert b'name="username"' in page and b'name="password"' in page
        output = log.read_text()
        assert f"xenpanel is running at http://127.0.0.1:{port}/" in output
        for login in ("admin", "instructor", "student1", "student2", "student3"):
            assert login in output
        # The demo data is really there: the seeded admin logs in with the printed password.
        password = re.search(r"password for all: (\S+)\)", output).group(1)
        assert log_in(base, "admin", password)[0] == 302
        assert log_in(base, "admin", "wrong")[0] == 200
        # DEBUG is off: a 404 is the panel's page, not Django's list of every URL; static files are still served.
        try:
            urllib.request.urlopen(f"{base}/no-such-page/", timeout=10)
            raise AssertionError("no 404")
        except urllib.error.HTTPError as e:
            assert e.code == 404
            body = e.read().decode()
        assert "Page not found" in body and "URLconf" not in body and "DEBUG" not in body
        with urllib.request.urlopen(f"{base}/static/css/xenpanel.css", timeout=10) as r:
            assert r.status == 200
        key_file = ROOT / "var" / "secret_key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert key_file.read_text().strip() not in output

        children = descendants(proc.pid)
        commands = " | ".join(children.values())
        assert "gunicorn" in commands and "host_worker default dom0-sim" in commands, commands
        # The demo host's worker pool runs its default two jobs at a time: two workers beside the pool.
        [pool] = [pid for pid, cmd in children.items() if " host_worker " in cmd and _parent(pid) == proc.pid]
        assert wait_for_children(pool, 2), descendants(proc.pid)
        gunicorns = [pid for pid, cmd in children.items() if "gunicorn" in cmd]
        assert len(gunicorns) == 3, commands  # the master and WEB_CONCURRENCY workers
        # The browser console: uvicorn on the ASGI port, and an agent for the demo's simulated host that
        # has checked in with Redis; the pages open their socket on that port of their own host name.
        assert "uvicorn xenpanel.asgi:application" in commands, commands
        assert "console_agent --host sim-dom0" in commands, commands
        with urllib.request.urlopen(f"http://127.0.0.1:{asgi_port}/ws/healthz", timeout=10) as r:
            assert r.read() == b"ok\n"
        assert wait_for_agent(redis_url, "dom0-sim")
        environ = Path(f"/proc/{gunicorns[0]}/environ").read_bytes().split(b"\0")
        assert f"XENPANEL_CONSOLE_WS_URL=:{asgi_port}/ws/".encode() in environ

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        stop_tree(proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.2)
    left = {pid: cmd for pid, cmd in children.items() if alive(pid) and cmd == cmdline(pid)}
    assert not left, f"still running after SIGINT: {left}"
    for open_port in (port, asgi_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", open_port)) != 0, f"port {open_port} still accepts connections"
    assert "run: stopped" in log.read_text()


def test_the_demo_secret_key_is_made_once_and_kept_private(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location("run_for_key", ROOT / "scripts" / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    path = tmp_path / "var" / "secret_key"
    key = run.demo_secret_key(path)
    assert len(key) >= 50 and path.stat().st_mode & 0o777 == 0o600
    assert run.demo_secret_key(path) == key  # the same on every run: sessions survive a restart
    assert run.demo_secret_key(tmp_path / "other") != key
    path.write_text("short\n")
    with pytest.raises(run.ImproperlyConfigured, match="holds no usable SECRET_KEY"):
        run.demo_secret_key(path)


BATCH = """
from django.contrib.auth.models import User
from labs.models import IpPool, LabTemplate
from labs.roster import RosterEntry
from labs.services import create_lab_batch
roster = [RosterEntry(i, f"sup{i}", f"Student {i}", f"sup{i}@example.edu") for i in range(1, 5)]
create_lab_batch(User.objects.get(username="instructor"), LabTemplate.objects.get(name="debian-12"),
                 IpPool.objects.get(name="lab-net"), roster, 256, slug="sup")
"""


def create_batch(env: dict[str, str]) -> None:
    """BATCH, through manage.py shell with make run's environment (its database and Redis)."""
    made = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", BATCH],
        cwd=ROOT,
        env={**env, "DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr[-3000:]


def _rows(db: Path, sql: str) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(db, timeout=20) as conn:
        return conn.execute(sql).fetchall()


def _worker_pids(run_pid: int) -> set[int]:
    """run.py's worker pools (not the workers each forks)."""
    return {pid for pid, cmd in descendants(run_pid).items() if " host_worker " in cmd and _parent(pid) == run_pid}


def wait_for_children(pid: int, n: int, timeout: float = 30) -> bool:
    """Until `pid` has `n` children (a pool's workers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(_parent(child) == pid for child in descendants(pid)) == n:
            return True
        time.sleep(0.2)
    return False


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def test_a_killed_worker_is_replaced_and_its_batch_ends_ready(tmp_path):
    """SIGKILL the worker in the middle of a batch: the panel keeps answering, a new worker takes over
    within 5 s, and the batch ends with every guest ready and nothing leaked."""
    env, port, _asgi_port, redis_url = run_env(tmp_path)
    base = f"http://127.0.0.1:{port}"
    db = tmp_path / "demo.sqlite3"
    log = tmp_path / "run.log"
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # no jobs from another run
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run.py")], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        wait_for_http(f"{base}/login/", proc, log)
        deadline = time.monotonic() + 60  # the sync loop's first tick reports the host's memory
        while _rows(db, "SELECT total_memory_mb FROM labs_host") in ([], [(None,)]):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        create_batch(env)
        # The worker is in the middle of the batch (each simulated step takes 0.5 s under make run).
        deadline = time.monotonic() + 60
        while not _rows(db, "SELECT 1 FROM labs_task WHERE status = 'running'"):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        [old] = _worker_pids(proc.pid)
        os.kill(old, signal.SIGKILL)
        killed = time.monotonic()
        while not (_worker_pids(proc.pid) - {old}):
            assert time.monotonic() - killed < 5, f"no new worker within 5 s:\n{log.read_text()[-3000:]}"
            # The panel keeps answering meanwhile.
            with urllib.request.urlopen(f"{base}/login/", timeout=5) as r:
                assert r.status == 200
            time.sleep(0.1)
        assert "run: rqworker exited with -9; restarting in 1 s" in log.read_text()
        # The lost jobs (the pool ran two at a time) are found (their heartbeats lapse) and queued again by
        # themselves: every guest ends ready.
        deadline = time.monotonic() + 120
        while _rows(db, "SELECT count(*) FROM labs_guest WHERE status = 'ready'") != [(4,)]:
            assert time.monotonic() < deadline, _rows(db, "SELECT domain_name, status, last_error FROM labs_guest")
            time.sleep(0.5)
        tasks = _rows(db, "SELECT id, status, args FROM labs_task ORDER BY id")
        lost = [i for i, status, _ in tasks if status == "failed"]
        retries = [json.loads(args).get("retry_of") for _, status, args in tasks if status == "succeeded"]
        # Each lost one retried once, and only they: four guests built, no task failed for good.
        assert 1 <= len(lost) <= 2 and sorted(r for r in retries if r) == lost and len(retries) == 4, tasks
        # Nothing leaked: two volumes and one domain per guest, no more.
        from labs.dom0.base import HostConfig
        from labs.dom0.simulated import SimulatedHost

        sim = SimulatedHost(HostConfig(name="sim-dom0", volume_group="vg0", sim_dir=str(tmp_path / "simdom0")))
        assert sorted(sim.domains()) == [f"sup-sup{i}" for i in range(1, 5)]
        assert len(sim.volumes()) == 8 and len(sim.configs()) == 4
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        stop_tree(proc)
