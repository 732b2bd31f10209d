"""Helpers for the pipeline tests: rosters, in-process and subprocess RQ workers, API scripts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import django_rq
from django.conf import settings
from django.db import connections

from labs.jobs import HostWorker
from labs.models import Task
from labs.roster import RosterEntry
from labs.services import api_tokens

ROOT = Path(__file__).resolve().parents[2]


def roster(*usernames: str) -> list[RosterEntry]:
    return [RosterEntry(i, u, u.title(), f"{u}@example.edu") for i, u in enumerate(usernames, 1)]


class InProcessWorker(HostWorker):
    """The production worker class without the pub/sub listener thread (nobody sends it commands in a
    test, and joining it costs 0.2 s per burst)."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


def work(*queues: str) -> None:
    """Run every queued job to the end in this process (django-rq's usual test pattern)."""
    django_rq.get_worker(*(queues or ("default",)), worker_class=InProcessWorker).work(burst=True)


def worker_env(sim_dir: Path, delay: float = 0.0) -> dict[str, str]:
    """The environment of a worker subprocess, as a dom0 has it: the test database, this Redis, this simulated host."""
    db = connections["default"].settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        url = f"sqlite:///{db['NAME']}"
    else:
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = dict(os.environ)
    # As on a dom0: its own settings profile, and none of the panel's secrets.
    env.pop("SECRET_KEY", None)
    env.update(
        DJANGO_SETTINGS_MODULE="xenpanel.settings_dom0",
        DATABASE_URL=url,
        REDIS_URL=settings.REDIS_URL,
        XENPANEL_DOM0="simulated",
        XENPANEL_SIM_DIR=str(sim_dir),
        XENPANEL_SIM_DELAY=str(delay),
        LOG_LEVEL="WARNING",
    )
    return env


def start_worker(
    sim_dir: Path, *queues: str, delay: float = 0.0, burst: bool = True, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """`manage.py rqworker` in its own process group (so a test can kill it and its work-horse).

    `env` overrides the worker's environment (a dom0's own credentials, say).
    """
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "rqworker",
            "--worker-class",
            "labs.jobs.HostWorker",
            *(["--burst"] if burst else []),
            *queues,
        ],
        cwd=ROOT,
        env={**worker_env(sim_dir, delay), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_pool(sim_dir: Path, *queues: str, delay: float = 0.0, burst: bool = True) -> subprocess.Popen:
    """`manage.py host_worker`: as many HostWorkers as the host's jobs at a time, in its own process group."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "host_worker", *(["--burst"] if burst else []), *queues],
        cwd=ROOT,
        env=worker_env(sim_dir, delay),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finish_worker(proc: subprocess.Popen, timeout: float = 60) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"worker did not finish within {timeout} s:\n{out.decode(errors='replace')}") from None
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    return text


def wait_for(predicate, timeout: float = 20, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


class Script:
    """A script with a user's API token."""

    def __init__(self, client, user) -> None:
        self.client = client
        self.token = api_tokens.create_token(user, "script", 1)[1]

    def get(self, url: str):
        return self.client.get(url, HTTP_AUTHORIZATION=f"Bearer {self.token}")

    def post(self, url: str, body: object = None):
        data = json.dumps({} if body is None else body)
        return self.client.post(url, data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {self.token}")


def finished(script: Script, task: dict) -> dict:
    """Run the queued jobs, then poll the task as a script would."""
    work(Task.objects.get(pk=task["id"]).host.queue_name)
    polled = script.get(task["url"]).json()
    assert polled["status"] == "succeeded", polled
    return polled
