"""A student's SSH keys reach /root/.ssh/authorized_keys of their guest, through real RQ workers on the simulated dom0.

They are read when the job runs: at provisioning and at reset, with /root/.ssh
0700 and the file 0600 (as sshd's StrictModes wants). Keys changed in between
do not touch the existing guest. On PostgreSQL, a dom0's own database role
reads the keys of its own guests' students and nobody else's.
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from labs.models import Guest, SshKey
from labs.services import create_lab_batch, credentials, guest_action, ssh_keys

from .helpers import finish_worker, roster, start_worker, work

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = "/root/.ssh/authorized_keys"


def guest_files(sim, guest: Guest) -> tuple[dict[str, str], dict[str, int]]:
    vol = sim.volumes()[guest.root_lv]
    return vol["files"], vol["modes"]


def test_keys_are_written_at_provisioning_by_a_worker_process(
    ivy, alice, bob, host, template, pool, sim, sim_dir, new_ssh_key
):
    first = ssh_keys.add_key(alice, new_ssh_key("alice@laptop")[0])
    second = ssh_keys.add_key(alice, new_ssh_key("alice@desk", "ecdsa", "-b", "384")[0])
    create_lab_batch(ivy, template, pool, roster("alice", "bob"), memory_mb=256, slug="net")
    # A worker in its own process, as on a dom0, reads the keys from the database.
    finish_worker(start_worker(sim_dir, host.queue_name))
    alice_guest = Guest.objects.get(domain_name="net-alice")
    assert alice_guest.status == "ready", alice_guest.last_error
    files, modes = guest_files(sim, alice_guest)
    assert files[KEYS] == f"{first.authorized_keys_line}\n{second.authorized_keys_line}\n"
    assert (modes["/root/.ssh"], modes[KEYS]) == (0o700, 0o600)
    assert "2 SSH key(s) in /root/.ssh/authorized_keys" in alice_guest.tasks.get(kind="provision").log
    # bob has no key: his guest gets no authorized_keys at all.
    bob_files, _ = guest_files(sim, Guest.objects.get(domain_name="net-bob"))
    assert KEYS not in bob_files


def test_reset_writes_the_keys_of_the_moment_and_nothing_changes_before(running_guest, alice, sim, new_ssh_key):
    g = running_guest
    assert KEYS not in guest_files(sim, g)[0]  # provisioned before alice had a key
    old = ssh_keys.add_key(alice, new_ssh_key("alice@old")[0])
    assert KEYS not in guest_files(sim, g)[0]  # adding a key leaves the existing guest alone

    guest_action(alice, g, "reset")
    work(g.host.queue_name)
    g.refresh_from_db()
    assert g.status == "ready" and g.observed_state in ("r", "b"), g.last_error
    files, modes = guest_files(sim, g)
    assert files[KEYS] == old.authorized_keys_line + "\n"
    assert (modes["/root/.ssh"], modes[KEYS]) == (0o700, 0o600)

    # A key deleted and another added: the guest keeps the old one until the next reset.
    ssh_keys.delete_key(alice, old)
    new = ssh_keys.add_key(alice, new_ssh_key("alice@new", "rsa", "-b", "3072")[0])
    assert guest_files(sim, g)[0][KEYS] == old.authorized_keys_line + "\n"
    guest_action(alice, g, "reset")
    work(g.host.queue_name)
    assert guest_files(sim, g)[0][KEYS] == new.authorized_keys_line + "\n"

    # Every key deleted: a reset leaves no authorized_keys behind (the root volume is new).
    ssh_keys.delete_key(alice, new)
    guest_action(alice, g, "reset")
    work(g.host.queue_name)
    assert KEYS not in guest_files(sim, g)[0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="database roles and row security are PostgreSQL's")
def test_a_dom0_reads_only_its_own_students_keys(
    ivy, alice, bob, charlie, host, second_host, template, pool, sim, sim_dir, new_ssh_key
):
    keys = {u.username: ssh_keys.add_key(u, new_ssh_key(f"{u.username}@laptop")[0]) for u in (alice, bob, charlie)}
    create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=256, hosts=[host], slug="laba")
    create_lab_batch(ivy, template, pool, roster("bob"), memory_mb=256, hosts=[second_host], slug="labb")
    creds = credentials.provision(host)
    try:
        url = creds.database_url.replace("postgres://", "postgresql://")
        with psycopg.connect(url, autocommit=True) as db:
            seen = [r[0] for r in db.execute(f"SELECT fingerprint FROM {SshKey._meta.db_table}")]
        assert seen == [keys["alice"].fingerprint]  # not bob's (dom0-b), not charlie's (no guest)
        # The worker on dom0-a's own credentials provisions alice's guest with her key.
        env = {"DATABASE_URL": creds.database_url, "REDIS_URL": creds.redis_url}
        finish_worker(start_worker(sim_dir, host.queue_name, env=env))
    finally:
        credentials.revoke(host)
    guest = Guest.objects.get(host=host)
    assert guest.status == "ready", guest.last_error
    assert guest_files(sim, guest)[0][KEYS] == keys["alice"].authorized_keys_line + "\n"
