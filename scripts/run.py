"""Run the panel locally: Redis, migrations, demo data, an RQ worker, the state sync loop, gunicorn,
the ASGI process for the browser console and a console agent for each simulated host.

Called by `make run` after setup.sh. Ctrl+C (or SIGTERM) stops everything
this started: each child runs in its own process group, gets SIGTERM, and
after a grace period its whole group is killed, so no gunicorn worker or RQ
work-horse outlives us. A second Ctrl+C skips the grace period. Until then it
supervises: a child that dies (a killed worker, a crashed gunicorn) is logged
and started again after a pause that grows while it keeps dying, so the
panel keeps answering whatever part of it fails.

It runs as production does, with DEBUG off (Django's debug pages would show
any visitor the settings and every URL), on a SECRET_KEY made once into
var/secret_key unless SECRET_KEY is set.

    XENPANEL_BIND      address:port for gunicorn (127.0.0.1:8000)
    WEB_CONCURRENCY    gunicorn workers (3)
    XENPANEL_ASGI_BIND address:port for the console websockets (127.0.0.1:8001); the page
                       reaches it as XENPANEL_CONSOLE_WS_URL, by default :<port>/ws/ on its own host name
"""

from __future__ import annotations

import io
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import ensure_redis
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
GRACE_SECONDS = 10
# Pauses before restarting a child that died: longer each time it dies again soon after starting.
RESTART_PAUSES = (1, 2, 4, 8, 16, 30)
STABLE_SECONDS = 60
SECRET_KEY_FILE = ROOT / "var" / "secret_key"


def processes(
    manage: list[str], queues: list[str], commands: set[str], env: dict, hosts: Sequence[str] = ()
) -> list[tuple[str, list[str]]]:
    """The long-running children, by name. Add yours here."""
    bind = env.get("XENPANEL_BIND", "127.0.0.1:8000")
    asgi_host, _, asgi_port = env.get("XENPANEL_ASGI_BIND", "127.0.0.1:8001").rpartition(":")
    # Each host's worker pool (labs.jobs.pool): as many HostWorkers as its "jobs at a time" in the admin; the
    # first also takes the panel's `default` queue.
    pools = [["default", *queues[:1]], *([q] for q in queues[1:])]
    procs = [
        ("rqworker" if i == 0 else f"rqworker {group[0]}", [*manage, "host_worker", *group])
        for i, group in enumerate(pools)
    ]
    procs += [
        (
            "gunicorn",
            [str(VENV_BIN / "gunicorn"), "xenpanel.wsgi", "--bind", bind]
            + ["--workers", env.get("WEB_CONCURRENCY", "3"), "--access-logfile", "-"]
            # The control socket defaults to one path per user; two panels would fight over it.
            + ["--no-control-socket"],
        ),
        # The console websockets: uvicorn beside gunicorn, as deploy/xenpanel-asgi.service runs it.
        (
            "asgi",
            [str(VENV_BIN / "uvicorn"), "xenpanel.asgi:application", "--host", asgi_host, "--port", asgi_port]
            + ["--lifespan", "off", "--no-server-header"],
        ),
    ]
    # The demo's hosts are simulated: their consoles are the simulated host's, no process is spawned.
    if env.get("XENPANEL_DOM0", "simulated") == "simulated":
        procs += [(f"console_agent {host}", [*manage, "console_agent", "--host", host]) for host in hosts]
    # The state sync loop belongs to the pipeline; run it once it exists.
    if "sync_loop" in commands:
        procs.append(("sync_loop", [*manage, "sync_loop"]))
    else:
        print("run: manage.py sync_loop is not there yet; observed VM states will not refresh", file=sys.stderr)
    return procs


def prepare(env: dict) -> tuple[str, list[str], set[str], list[str]]:
    """Migrate, collect static files and seed the demo: the demo's logins, the host queues, the commands, the hosts.

    Done in this process, so Django starts once here instead of once per step.
    The children are exec'd, not forked, so they inherit none of this state.
    """
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = demo_secret_key()
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xenpanel.settings")
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command, get_commands
    from django.db import connections

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    seeded, queues = io.StringIO(), io.StringIO()
    call_command("seed_demo", stdout=seeded)
    call_command("host_queues", stdout=queues)
    from labs.models import Host

    hosts = list(Host.objects.values_list("name", flat=True))
    connections.close_all()
    return seeded.getvalue(), queues.getvalue().split(), set(get_commands()), hosts


def demo_secret_key(path: Path = SECRET_KEY_FILE) -> str:
    """The demo's SECRET_KEY: made on the first run, kept in `path` (readable by its owner only), reused after.

    Sessions survive a restart, and the key is nobody else's: not a constant
    in the source that anyone could forge a session with.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_text().strip()
        else:
            key = secrets.token_urlsafe(50)
            with os.fdopen(fd, "w") as f:
                f.write(key + "\n")
    except OSError as e:
        raise ImproperlyConfigured(f"cannot keep the demo's SECRET_KEY in {path}: {e}") from None
    if len(key) < 50:
        raise ImproperlyConfigured(f"{path} holds no usable SECRET_KEY: remove it and run again")
    return key


class Child:
    """One supervised process: started again with a growing pause when it dies, until we stop."""

    def __init__(self, name: str, argv: list[str], env: dict) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.failures = 0
        self.restart_at = 0.0

    def start(self) -> None:
        # Its own process group, so it and everything it forked can be stopped together.
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, start_new_session=True)
        self.started = time.monotonic()

    def check(self, now: float) -> None:
        """Notice a death (and schedule the restart), or restart when its pause is over."""
        if self.proc is None:
            if now >= self.restart_at:
                self.start()
                print(f"run: {self.name} restarted", file=sys.stderr, flush=True)
            return
        if self.proc.poll() is None:
            return
        rc = self.proc.returncode
        kill_group(self.proc)  # what it forked (gunicorn's workers, say) must not hold its port
        # One that ran a while starts its pauses over; one that keeps dying waits longer each time.
        if now - self.started >= STABLE_SECONDS:
            self.failures = 0
        pause = RESTART_PAUSES[min(self.failures, len(RESTART_PAUSES) - 1)]
        self.failures += 1
        print(f"run: {self.name} exited with {rc}; restarting in {pause:g} s", file=sys.stderr, flush=True)
        self.proc, self.restart_at = None, now + pause


def kill_group(p: subprocess.Popen) -> None:
    # The leader may be gone while its workers linger; the group goes either way.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def stop_all(children: list[Child], hurry: list[bool]) -> None:
    procs = [c.proc for c in children if c.proc is not None]
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for p in procs:
        while p.poll() is None and time.monotonic() < deadline and not hurry[0]:
            time.sleep(0.1)
    for p in procs:
        kill_group(p)


def main() -> int:
    env = dict(os.environ)
    env.setdefault("XENPANEL_SIM_DELAY", "0.5")
    # The page opens its console socket on the ASGI port of the host name it was loaded from.
    asgi_port = env.setdefault("XENPANEL_ASGI_BIND", "127.0.0.1:8001").rpartition(":")[2]
    env.setdefault("XENPANEL_CONSOLE_WS_URL", f":{asgi_port}/ws/")
    try:
        redis_url, private_redis = ensure_redis.ensure()
    except ensure_redis.RedisUnavailable as e:
        print(f"run: {e}", file=sys.stderr)
        return 1
    env["REDIS_URL"] = redis_url
    children: list[Child] = []
    stopping = [False]
    hurry = [False]

    def on_signal(*_) -> None:
        hurry[0] = stopping[0]
        stopping[0] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        seeded, queues, commands, hosts = prepare(env)
        manage = [sys.executable, str(ROOT / "manage.py")]
        if stopping[0]:
            return 0
        for name, argv in processes(manage, queues, commands, env, hosts):
            child = Child(name, argv, env)
            child.start()
            children.append(child)
        bind = env.get("XENPANEL_BIND", "127.0.0.1:8000")
        print(f"\nxenpanel is running at http://{bind}/  (Redis: {ensure_redis.redacted(redis_url)})")
        print(f"Console websockets on {env.get('XENPANEL_ASGI_BIND', '127.0.0.1:8001')}")
        print(seeded.strip())
        print("Press Ctrl+C to stop.\n", flush=True)
        # Supervise: a child that dies (a killed worker, a crashed gunicorn) is started again;
        # only Ctrl+C or SIGTERM stops them all.
        while not stopping[0]:
            now = time.monotonic()
            for child in children:
                child.check(now)
            time.sleep(0.2)
        return 0
    except ImproperlyConfigured as e:  # a bad setting: the message says which and why
        print(f"run: {e}", file=sys.stderr)
        return 1
    finally:
        stop_all(children, hurry)
        ensure_redis.stop(private_redis)
        print("run: stopped", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
