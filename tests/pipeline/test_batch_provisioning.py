"""A batch of N students ends with N running guests, unique addresses and names, and a full record."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from labs.models import AuditEvent, Guest, Lab, Task
from labs.services import create_lab_batch, lab_progress

from .helpers import roster, work

pytestmark = pytest.mark.django_db(transaction=True)


def test_batch_of_six_ends_running_with_unique_allocations(ivy, alice, host, template, pool, sim):
    students = ("alice", "bruno", "carla", "dario", "elena", "fabio")
    result = create_lab_batch(ivy, template, pool, roster(*students), memory_mb=256, slug="redes")

    assert [g.status for g in result.guests] == ["pending"] * 6
    assert Task.objects.filter(kind="provision", status="queued").count() == 6
    work(host.queue_name)

    guests = list(Guest.objects.filter(lab=result.lab))
    assert len(guests) == 6
    assert {g.status for g in guests} == {"ready"}
    assert {g.observed_state for g in guests} <= {"r", "b"}
    assert {g.busy_with for g in guests} == {""}
    assert len({g.ip for g in guests}) == 6
    assert len({g.mac for g in guests}) == 6
    assert len({g.domain_name for g in guests}) == 6
    # Lowest free addresses first; the pool starts at .1, which is the gateway.
    assert sorted(g.ip for g in guests) == [f"10.10.0.{n}" for n in range(2, 8)]
    assert all(g.mac.startswith("00:16:3e:") for g in guests)
    assert {g.domain_name for g in guests} == {f"redes-{s}" for s in students}

    # The simulated dom0 holds exactly one running domain and two volumes per guest.
    domains = sim.domains()
    assert set(domains) == {g.domain_name for g in guests}
    assert all(d["state"] == "-b----" for d in domains.values())
    assert set(sim.volumes()) == {f"vm-redes-{s}.{kind}" for s in students for kind in ("raiz", "swap")}
    cfg = sim.configs()["redes-alice"]["spec"]
    alice_guest = Guest.objects.get(domain_name="redes-alice")
    assert cfg["mac"] == alice_guest.mac and cfg["memory_mb"] == 256
    files = sim.volumes()["vm-redes-alice.raiz"]["files"]
    assert files["/etc/hostname"] == "redes-alice\n"
    assert alice_guest.ip in files["/etc/network/interfaces"]
    assert files["/etc/shadow"].startswith("root:$6$")
    assert alice_guest.initial_password and alice_guest.initial_password not in files["/etc/shadow"]

    # Every task recorded its five steps, a log and the time spent in dom0.
    for task in Task.objects.filter(lab=result.lab):
        assert task.status == "succeeded", task.log
        assert (task.steps_done, task.steps_total) == (5, 5)
        assert "step clone" in task.log and "xl create" in task.log
        assert task.dom0_seconds > 0
        assert task.started_at and task.finished_at

    # One audit event per action: the lab, five new accounts, six provisionings.
    events = AuditEvent.objects.filter(lab=result.lab)
    assert events.filter(action="create_lab").count() == 1
    assert events.filter(action="create_account").count() == 5
    provisions = events.filter(action="provision")
    assert provisions.count() == 6
    assert set(provisions.values_list("result", flat=True)) == {"succeeded"}

    progress = lab_progress(result.lab)
    assert progress["total"] == progress["done"] == progress["running"] == 6
    assert progress["failed"] == progress["provisioning"] == 0
    assert progress["percent"] == 100


def test_new_accounts_get_a_one_time_password_that_is_not_stored(ivy, alice, host, template, pool, sim):
    result = create_lab_batch(ivy, template, pool, roster("alice", "newbie"), memory_mb=256)

    assert [name for name, _ in result.new_accounts] == ["newbie"]
    password = result.new_accounts[0][1]
    newbie = User.objects.get(username="newbie")
    assert newbie.email == "newbie@example.edu"
    assert newbie.check_password(password)
    assert password not in newbie.password
    # The existing account is untouched.
    alice.refresh_from_db()
    assert alice.check_password("correct horse battery staple")


def test_guests_spread_over_hosts_by_free_memory(ivy, host, second_host, template, pool, sim):
    # dom0-a: 16384 - 1024 reserve = 15360 MiB free; dom0-b: 8192 - 1024 = 7168.
    result = create_lab_batch(ivy, template, pool, roster(*(f"s{i}" for i in range(10))), memory_mb=1024)
    placed = [g.host.name for g in result.guests]
    # Most free first: a takes guests until it has no more free memory than b
    # (8 guests), wins the tie (the 9th), then b has more free (the 10th).
    assert placed == ["dom0-a"] * 9 + ["dom0-b"]
    assert Lab.objects.get().status == "active"


def test_initial_password_hash_is_cheap_and_upgraded_at_first_login(ivy, host, template, pool, sim_dir, settings):
    # The suite's fast MD5 hasher is swapped back for Django's defaults here.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    ]
    from django.contrib.auth import authenticate
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    [(username, password)] = create_lab_batch(ivy, template, pool, roster("newbie"), memory_mb=64).new_accounts
    stored = User.objects.get(username=username).password
    assert stored.startswith("pbkdf2_sha256$1000$")
    assert authenticate(username=username, password=password) is not None
    upgraded = User.objects.get(username=username).password
    assert upgraded.startswith(f"pbkdf2_sha256${PBKDF2PasswordHasher.iterations}$")
