"""Run the panel locally: migrate, seed the demo, start an RQ worker per queue and gunicorn.

Ctrl+C stops everything this started. Called by `make run` after setup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DEBUG", "true")
    env.setdefault("XENPANEL_SIM_DELAY", "0.5")
    redis_url = subprocess.run(
        [PY, str(ROOT / "scripts" / "ensure_redis.py")], env=env, capture_output=True, text=True
    )
    if redis_url.returncode != 0:
        sys.stderr.write(redis_url.stderr)
        return 1
    env["REDIS_URL"] = redis_url.stdout.strip()
    manage = [PY, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)
    subprocess.run([*manage, "collectstatic", "--noinput", "-v", "0"], env=env, check=True)
    seeded = subprocess.run([*manage, "seed_demo"], env=env, check=True, capture_output=True, text=True)
    queues = subprocess.run(
        [*manage, "host_queues"], env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    bind = env.get("XENPANEL_BIND", "127.0.0.1:8000")
    procs = [
        subprocess.Popen([*manage, "rqworker", "default", *queues, "--with-scheduler"], env=env),
        subprocess.Popen([*manage, "sync_loop"], env=env),
        subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "gunicorn"),
                "xenpanel.wsgi",
                "--bind",
                bind,
                "--workers",
                env.get("WEB_CONCURRENCY", "3"),
                "--access-logfile",
                "-",
            ],
            env=env,
            cwd=ROOT,
        ),
    ]
    print(f"\nxenpanel is running at http://{bind}/  (Redis: {env['REDIS_URL']})")
    print(seeded.stdout.strip())
    print("Press Ctrl+C to stop.\n", flush=True)
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop and all(p.poll() is None for p in procs):
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
