"""The README's curl session, run as written against a live panel with a real worker on the simulated dom0."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from labs.models import Guest, Lab, Task
from labs.services import api_tokens

from .helpers import finish_worker, start_worker

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]


def readme_session() -> str:
    section = (ROOT / "README.md").read_text().split("### The API from a script", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_readme_session_creates_a_batch_polls_it_and_reboots_a_vm(
    live_server, ivy, host, template, pool, tmp_path
):
    pool.name = "lab-net"
    pool.save()
    script = readme_session()
    assert len(script.splitlines()) <= 10
    script = re.sub(r"^API=\S+;", f"API={live_server.url}/api/v1;", script, count=1)
    worker = start_worker(tmp_path / "sim", "default", host.queue_name, burst=False)
    try:
        token = api_tokens.create_token(ivy, "readme", 1)[1]
        env = {**os.environ, "TOKEN": token}
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        worker.terminate()
        finish_worker(worker)
    assert run.returncode == 0, run.stderr
    lab = Lab.objects.get(slug="net2")
    assert sorted(lab.guests.values_list("student__username", flat=True)) == ["ana", "beto"]
    reboot = Task.objects.get(kind="reboot")
    assert reboot.status == "succeeded" and reboot.actor == ivy
    assert Guest.objects.get(pk=reboot.guest_id).observed_state in ("r", "b")
    assert '"name": "net2-' in run.stdout and '"reboot"' in run.stdout
