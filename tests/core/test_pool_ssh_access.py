"""An IP pool says how students reach its guests by SSH: from campus directly, or through a checked jump host.

The admin edits both; SSH keys are read-only there.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from labs.models import AuditEvent, IpPool, SshKey
from labs.validators import validate_jump_host


@pytest.mark.parametrize(
    "value",
    ["gw.example.edu", "student@gw.example.edu", "gw.example.edu:2222", "lab_user@10.0.0.1:22", "gw", "a@b:65535"],
)
def test_good_jump_hosts_pass(value):
    validate_jump_host(value)


@pytest.mark.parametrize(
    "value",
    [
        "-oProxyCommand=sh",  # an option
        "gw.example.edu -oProxyCommand=sh",
        "gw.example.edu;reboot",
        "ssh://gw.example.edu",
        "gw1.example.edu,gw2.example.edu",  # a second hop
        "a@b@gw.example.edu",
        "GW.example.edu",
        "gw.example.edu:0",
        "gw.example.edu:65536",
        "gw.example.edu:",
        "@gw.example.edu",
        "-gw.example.edu",
        "gw.example.edu\n",
        "[::1]:22",
        "x" * 201,
    ],
)
def test_bad_jump_hosts_are_refused(value):
    with pytest.raises(ValidationError, match="host, user@host or host:port"):
        validate_jump_host(value)


def test_a_new_pool_is_not_reachable_and_has_no_jump_host(pool):
    assert (pool.reachable_from_campus, pool.jump_host) == (False, "")


def test_the_admin_edits_reachability_and_the_jump_host(client, admin_user, pool, admin_form):
    client.force_login(admin_user)
    page = reverse("admin:labs_ippool_change", args=[pool.pk])
    data = admin_form(client.get(page), "ippool_form")
    data["reachable_from_campus"] = ["on"]
    data["jump_host"] = ["gw.example.edu -oProxyCommand=sh"]
    r = client.post(page, data)
    assert r.status_code == 200 and "jump_host" in r.context["adminform"].form.errors
    data["jump_host"] = ["student@gw.example.edu:2222"]
    assert client.post(page, data).status_code == 302
    pool = IpPool.objects.get(pk=pool.pk)
    assert (pool.reachable_from_campus, pool.jump_host) == (True, "student@gw.example.edu:2222")
    assert "student@gw.example.edu:2222" in client.get(reverse("admin:labs_ippool_changelist")).content.decode()


def test_ssh_keys_are_read_only_in_the_admin(client, admin_user, alice):
    key = SshKey.objects.create(
        user=alice, key_type="ssh-ed25519", body="AAAA", bits=256, comment="alice@laptop", fingerprint="SHA256:x"
    )
    client.force_login(admin_user)
    page = client.get(reverse("admin:labs_sshkey_change", args=[key.pk])).content.decode()
    assert "alice@laptop" in page and 'name="comment"' not in page
    assert client.get(reverse("admin:labs_sshkey_add")).status_code == 403
    assert client.get(reverse("admin:labs_sshkey_delete", args=[key.pk])).status_code == 403
    # Deleting is the user's own, audited act.
    assert SshKey.objects.filter(pk=key.pk).exists() and not AuditEvent.objects.exists()
