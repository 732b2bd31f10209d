"""Run the panel locally: Redis, migrations, demo data, an RQ worker, the state sync loop, gunicorn,
the ASGI process for the browser console and a console agent for each simulated host.

Called by `make run` after setup.sh. Ctrl+C (or SIGTERM) stops everything
this started: each child runs in its own process group, gets SIGTERM, and
after a grace period its whole group is killed, so no gunicorn worker or RQ
work-horse outlives us. A second Ctrl+C skips the grace period.

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
SECRET_KEY_FILE = ROOT / "var" / "secret_key"


def processes(
    manage: list[str], queues: list[str], commands: set[str], env: dict, hosts: Sequence[str] = ()
) -> list[tuple[str, list[str]]]:
    """The long-running children, by name. Add yours here."""
    bind = env.get("XENPANEL_BIND", "127.0.0.1:8000")
    asgi_host, _, asgi_port = env.get("XENPANEL_ASGI_BIND", "127.0.0.1:8001").rpartition(":")
    procs = [
        # labs.jobs.HostWorker: no fork per job, rq's short heartbeat (see its docstring).
        (
            "rqworker",
            [*manage, "rqworker", "--worker-class", "labs.jobs.HostWorker", "default", *queues, "--with-scheduler"],
        ),
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


def stop_all(children: list[subprocess.Popen], hurry: list[bool]) -> None:
    for p in children:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for p in children:
        while p.poll() is None and time.monotonic() < deadline and not hurry[0]:
            time.sleep(0.1)
    for p in children:
        # The leader may be gone while its workers linger; the group goes either way.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


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
    children: list[subprocess.Popen] = []
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
        names = {}
        for name, argv in processes(manage, queues, commands, env, hosts):
            child = subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True)
            children.append(child)
            names[child.pid] = name
        bind = env.get("XENPANEL_BIND", "127.0.0.1:8000")
        print(f"\nxenpanel is running at http://{bind}/  (Redis: {ensure_redis.redacted(redis_url)})")
        print(f"Console websockets on {env.get('XENPANEL_ASGI_BIND', '127.0.0.1:8001')}")
        print(seeded.strip())
        print("Press Ctrl+C to stop.\n", flush=True)
        while not stopping[0]:
            for child in children:
                if child.poll() is not None:
                    print(f"run: {names[child.pid]} exited with {child.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.3)
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
