"""The guest page's SSH card: the exact ssh line the VM's pool allows (direct, through a jump host, or none).

The `xl console` command on dom0 is shown to admins only: nobody else has a shell there.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse


def ssh_lines(body: str) -> list[str]:
    return re.findall(r'<code class="ssh-cmd">([^<]*)</code>', body)


def page(client, user, guest, **headers) -> str:
    client.force_login(user)
    return client.get(reverse("guest_detail", args=[guest.pk]), **headers).content.decode()


@pytest.mark.parametrize(
    ("reachable", "jump", "line"),
    [
        (True, "", "ssh root@10.10.0.11"),
        (False, "student@gw.example.edu", "ssh -J student@gw.example.edu root@10.10.0.11"),
        # A jump host wins: the pool's owner set it because the direct path is not the way in.
        (True, "gw.example.edu:2222", "ssh -J gw.example.edu:2222 root@10.10.0.11"),
    ],
)
def test_the_ssh_line_follows_the_pool(client, alice, ivy, admin_user, alice_guest, pool, reachable, jump, line):
    pool.reachable_from_campus, pool.jump_host = reachable, jump
    pool.save()
    for user in (alice, ivy, admin_user):
        assert ssh_lines(page(client, user, alice_guest)) == [line]
    body = page(client, alice, alice_guest)
    assert ("Through the lab's jump host:" in body) == bool(jump)


def test_no_ssh_line_when_the_pool_is_not_reachable(client, alice, alice_guest):
    body = page(client, alice, alice_guest)
    assert ssh_lines(body) == []
    assert "cannot be reached by SSH from outside the lab" in body


def test_the_owner_is_pointed_to_their_keys(client, alice, ivy, alice_guest):
    body = page(client, alice, alice_guest)
    assert f'Your <a href="{reverse("ssh_keys")}">SSH keys</a> are written into root' in body
    assert "apply at the next reset" in body
    body = page(client, ivy, alice_guest)
    assert "The student's SSH keys are written into root's authorized_keys" in body


def test_only_admins_see_the_dom0_console_command(client, alice, ivy, admin_user, alice_guest, host):
    host.console_ssh = "student@dom0.example.edu"
    host.save()
    for user in (alice, ivy):
        body = page(client, user, alice_guest)
        assert "xl console" not in body and "dom0.example.edu" not in body
        assert "to leave the console; the VM keeps running" not in body  # xl console's Ctrl+]
    body = page(client, admin_user, alice_guest)
    assert f"xl console {alice_guest.domain_name}" in body and "ssh student@dom0.example.edu" in body


def test_the_ssh_card_in_portuguese(client, alice, alice_guest, pool):
    pool.jump_host = "gw.example.edu"
    pool.save()
    body = page(client, alice, alice_guest, HTTP_ACCEPT_LANGUAGE="pt-BR")
    assert "Pelo host de salto do laboratório:" in body
    assert "ssh -J gw.example.edu root@10.10.0.11" in body
