"""No request path starts a process: views read the database and queue jobs, nothing else.

A Python audit hook (PEP 578) sees every spawn, however it is made
(subprocess, os.system, exec*, fork, posix_spawn). It is installed once per
test process and records only while `_recording` is set.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.urls import reverse

from labs.models import Lab, Task
from tests.ui.batch_helpers import create_via_form
from tests.ui.conftest import set_state

SPAWN_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty", "os.spawn")
_recording: list[list[str]] = []


def _hook(event: str, args: tuple) -> None:
    if _recording and event in SPAWN_EVENTS:
        _recording[-1].append(f"{event} {args!r:.120}")


_installed = False


@pytest.fixture
def spawns():
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    seen: list[str] = []
    _recording.append(seen)
    yield seen
    _recording.pop()


def test_the_hook_sees_a_spawn(spawns):
    subprocess.run(["true"], check=True)
    assert any(s.startswith("subprocess.Popen") for s in spawns)


def test_pages_and_actions_start_no_process(client, spawns, alice, ivy, admin_user, alice_guest, bob_guest, lab, host):
    set_state(alice_guest, "r")
    set_state(bob_guest, "")
    pages = [
        reverse("home"),
        reverse("whoami"),
        reverse("my_vms"),
        reverse("guest_detail", args=[alice_guest.pk]),
        reverse("guest_live", args=[alice_guest.pk]),
        reverse("guest_confirm", args=[alice_guest.pk, "destroy"]),
        reverse("lab_list"),
        reverse("lab_create"),
        reverse("lab_detail", args=[lab.pk]),
        reverse("lab_live", args=[lab.pk]),
        reverse("lab_confirm_teardown", args=[lab.pk]),
        reverse("host_list"),
        reverse("host_detail", args=[host.pk]),
    ]
    for user in (alice, ivy, admin_user):
        client.force_login(user)
        for url in pages:
            assert client.get(url).status_code in (200, 302, 404), url
    client.force_login(alice)
    client.post(reverse("guest_action", args=[alice_guest.pk, "reboot"]))
    client.post(reverse("guest_action", args=[alice_guest.pk, "mem_set"]), {"memory_mb": "512"})
    client.force_login(ivy)
    client.post(reverse("guest_action", args=[bob_guest.pk, "start"]))
    client.post(reverse("lab_action", args=[lab.pk, "retry_failed"]))
    create_via_form(
        client,
        {
            "name": "Spawn check",
            "template": lab.template.pk,
            "pool": lab.pool.pk,
            "memory_mb": "64",
            "roster_text": "newbie,New Student,newbie@example.edu\n",
        },
    )
    client.post(reverse("lab_action", args=[lab.pk, "teardown"]), {"confirm": "on"})
    # The actions really ran through the service layer.
    assert Lab.objects.filter(name="Spawn check").exists()
    assert set(Task.objects.values_list("kind", flat=True)) >= {"reboot", "start", "provision"}
    lab.refresh_from_db()
    assert lab.status == Lab.Status.TEARING_DOWN
    assert spawns == []
