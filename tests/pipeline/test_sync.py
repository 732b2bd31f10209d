"""State sync, health checks, lab expiry and the sync_loop command."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from labs.models import AuditEvent, Guest, Host, Lab, Task
from labs.services import guest_action, lab_action, queueing
from labs.services.upkeep import tick

from .helpers import ROOT, work, worker_env

pytestmark = pytest.mark.django_db(transaction=True)


def _checked_just_now(host: Host) -> None:
    """The host's health was checked a moment ago, so a tick only syncs it."""
    Host.objects.filter(pk=host.pk).update(health_checked_at=timezone.now())


def test_one_xl_list_per_host_per_tick_updates_guests_and_host(running_guest, host, sim):
    _checked_just_now(host)
    sim.crash("net-alice")
    sim.destroy("net-bob")
    sim.clear_history()
    summary = tick()
    assert summary["synced"] == 1 and summary["errors"] == []
    work(host.queue_name)

    # One `xl info` and one list_domains() (`xl list`, plus `xl list -l` as the real host runs it).
    history = sim.history
    assert history.count(["xl", "info"]) == 1 and history.count(["xl", "list"]) == 1
    assert {tuple(argv[:2]) for argv in history if argv[0] != "tail"} == {("xl", "info"), ("xl", "list")}
    # And, for the VM that vanished with nobody asking, one look at its xl log (did a reboot from inside fail?).
    assert [argv for argv in history if argv[0] == "tail"] == [
        ["tail", "-c", "16384", "--", "/var/log/xen/xl-net-bob.log"]
    ]
    alice = Guest.objects.get(domain_name="net-alice")
    bob = Guest.objects.get(domain_name="net-bob")
    assert (alice.observed_state, bob.observed_state) == ("c", "")
    assert alice.observed_at and bob.observed_at
    host.refresh_from_db()
    # Only alice's crashed domain (256 MiB) still holds memory.
    assert (host.total_memory_mb, host.free_memory_mb) == (16384, 16384 - 1024 - 256)
    assert host.xen_version and host.last_seen


def test_sync_jobs_do_not_pile_up_while_the_worker_is_away(running_guest, host, redis_flushed):
    _checked_just_now(host)
    tick()
    assert tick()["synced"] == 0
    assert redis_flushed.llen(f"rq:queue:{host.queue_name}") == 1
    work(host.queue_name)
    assert tick()["synced"] == 1  # done, so the next tick queues a fresh one


def test_health_check(host, sim, sim_dir):
    out = io.StringIO()
    call_command("check_hosts", stdout=out)
    assert "dom0-a: health check queued on dom0-a" in out.getvalue()
    work(host.queue_name)
    host.refresh_from_db()
    assert host.health_ok is True and host.health_checked_at
    assert set(host.health_report) == {"xen", "volume_group", "bridge", "guest_network", "dom0_reserve"}
    assert host.vg_size_mb == 200 * 1024 and host.vg_free_mb == 200 * 1024

    sim.inject("volume_group", "no_vg", times=1)
    call_command("check_hosts", "dom0-a", stdout=out)
    work(host.queue_name)
    host.refresh_from_db()
    assert host.health_ok is False
    assert host.health_report["volume_group"]["ok"] is False
    assert 'Volume group "vg0" not found' in host.health_report["volume_group"]["detail"]
    assert host.health_report["xen"]["ok"] and host.health_report["bridge"]["ok"]


def test_a_dom0_address_on_the_guests_bridge_fails_the_health_check(host, sim):
    call_command("check_hosts", "dom0-a", stdout=io.StringIO())
    work(host.queue_name)
    host.refresh_from_db()
    assert host.health_report["guest_network"] == {"ok": True, "detail": "bridge xenbr0 holds no dom0 address"}
    # The recipe's layout: the dom0's own address on the bridge its guests join.
    sim.assign_address("xenbr0", "192.0.2.10/24")
    call_command("check_hosts", "dom0-a", stdout=io.StringIO())
    work(host.queue_name)
    host.refresh_from_db()
    assert host.health_ok is False
    check = host.health_report["guest_network"]
    assert check["ok"] is False and "xenbr0 holds 192.0.2.10/24: the guests share a network" in check["detail"]


def test_the_sync_loop_checks_the_health_of_hosts_not_checked_lately(host, second_host, sim, redis_flushed):
    _checked_just_now(second_host)
    summary = tick()
    assert summary["health"] == 1 and summary["errors"] == []  # dom0-a was never checked; dom0-b just was
    assert redis_flushed.exists(f"rq:job:{queueing.job_id_prefix(host.queue_name)}health")
    assert not redis_flushed.exists(f"rq:job:{queueing.job_id_prefix(second_host.queue_name)}health")
    assert tick()["health"] == 0  # still waiting for the worker: not queued twice
    work(host.queue_name)
    host.refresh_from_db()
    assert host.health_ok is True and host.health_report["volume_group"]["ok"]
    assert tick()["health"] == 0  # fresh

    # Five minutes later (the default interval) both are due again.
    later = timezone.now() + timedelta(seconds=settings.XENPANEL_HEALTH_INTERVAL + 1)
    assert settings.XENPANEL_HEALTH_INTERVAL == 300
    assert tick(later)["health"] == 2


def test_a_failing_health_check_is_not_queued_again_every_tick(host, sim, monkeypatch):
    def broken(host):
        raise RuntimeError("worker cannot reach the database")

    monkeypatch.setattr("labs.jobs.connect.connect_host", broken)
    assert tick()["health"] == 1
    work(host.queue_name)  # the job fails: nothing is recorded on the host
    assert Host.objects.get(pk=host.pk).health_checked_at is None
    assert tick()["health"] == 0
    # It is tried again once the interval has passed, not on every 5 s tick.
    assert tick(timezone.now() + timedelta(seconds=301))["health"] == 1


def test_health_interval_zero_leaves_health_checks_to_check_hosts(host, settings, redis_flushed):
    settings.XENPANEL_HEALTH_INTERVAL = 0
    assert tick()["health"] == 0
    assert not redis_flushed.exists(f"rq:job:{queueing.job_id_prefix(host.queue_name)}health")


def test_check_hosts_names_unknown_hosts(host):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no such host: nope"):
        call_command("check_hosts", "nope", stdout=io.StringIO())


def test_expired_lab_is_torn_down(running_guest, host, sim):
    lab = running_guest.lab
    Lab.objects.filter(pk=lab.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    summary = tick()
    assert summary["expired"] == 1
    lab.refresh_from_db()
    assert lab.status == "tearing_down"
    event = AuditEvent.objects.get(action="teardown_lab")
    assert event.actor is None and event.message == "The lab expired."
    work(host.queue_name)
    assert tick()["expired"] == 0  # and it closes the lab, now empty
    lab.refresh_from_db()
    assert lab.status == "torn_down"
    assert sim.domains() == {} and sim.volumes() == {}


def test_busy_guests_are_torn_down_after_their_job(running_guest, alice, ivy, host, sim):
    pause = guest_action(alice, running_guest, "pause")
    # A worker has started it (a job still waiting would be canceled by the teardown instead).
    Task.objects.filter(pk=pause.pk).update(status="running")
    tasks = lab_action(ivy, running_guest.lab, "teardown")
    assert [t.target for t in tasks] == ["net-bob"]  # alice's guest is busy pausing
    work(host.queue_name)
    assert Guest.objects.get().domain_name == "net-alice"
    assert tick()["teardowns"] == 1
    work(host.queue_name)
    assert not Guest.objects.exists()
    tick()  # closes the lab, now empty
    assert Lab.objects.get().status == "torn_down"
    assert Task.objects.filter(kind="teardown", status="succeeded").count() == 2


def test_sync_loop_command_once(running_guest, host):
    out = io.StringIO()
    call_command("sync_loop", "--once", "-v", "2", stdout=out)
    assert "'synced': 1" in out.getvalue()
    work(host.queue_name)
    assert Host.objects.get().last_seen is not None


def test_sync_loop_stops_on_sigterm(host, sim_dir):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "sync_loop", "--interval", "0.2"],
        cwd=ROOT,
        env=worker_env(sim_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith("sync_loop: every 0.2 s")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "sync_loop: stopped" in out
