"""My SSH keys: a user lists, adds and deletes their own public keys; nobody else's (404), audited."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from labs.models import AuditEvent, SshKey
from labs.services import ssh_keys
from tests.ui.conftest import messages_of

PAGE = reverse("ssh_keys")


def add(client, text: str):
    return client.post(PAGE, {"key": text})


def test_every_signed_in_user_finds_the_page_in_the_top_bar(client, alice, ivy):
    for user in (alice, ivy):
        client.force_login(user)
        body = client.get(reverse("my_vms")).content.decode()
        assert f'href="{PAGE}">My SSH keys</a>' in body
    body = client.get(PAGE).content.decode()
    assert "You have no SSH keys yet." in body
    assert "they apply at its next reset" in body
    assert 'id="ssh-key-form"' in body and 'name="csrfmiddlewaretoken"' in body


def test_add_list_and_delete_a_key(client, alice, new_ssh_key):
    line, _ = new_ssh_key("alice@laptop")
    client.force_login(alice)
    r = add(client, line + "\n")
    assert r.status_code == 302 and r["Location"] == PAGE
    key = SshKey.objects.get(user=alice)
    assert key.authorized_keys_line == line
    assert "goes into your VMs when they are next reset" in messages_of(r)[0]
    body = client.get(PAGE).content.decode()
    assert "alice@laptop" in body and key.fingerprint in body and "ed25519" in body
    event = AuditEvent.objects.get(action="ssh_key_add")
    assert (event.actor, event.target, event.result) == (alice, "alice", "succeeded")
    assert key.fingerprint in event.message

    delete = reverse("ssh_key_delete", args=[key.pk])
    assert f'href="{delete}"' in body
    confirm = client.get(delete).content.decode()
    assert "Delete the key alice@laptop?" in confirm and "keep it until they are reset" in confirm
    assert 'method="post"' in confirm and "csrfmiddlewaretoken" in confirm
    assert SshKey.objects.filter(pk=key.pk).exists()  # asking deletes nothing
    r = client.post(delete)
    assert r.status_code == 302 and r["Location"] == PAGE
    assert not SshKey.objects.exists()
    event = AuditEvent.objects.get(action="ssh_key_delete")
    assert (event.actor, event.target, event.result) == (alice, "alice", "succeeded")


def test_someone_elses_key_is_a_404_for_everyone_even_admins(client, alice, bob, ivy, admin_user, new_ssh_key):
    key = ssh_keys.add_key(alice, new_ssh_key("alice@laptop")[0])
    delete = reverse("ssh_key_delete", args=[key.pk])
    for user in (bob, ivy, admin_user):
        client.force_login(user)
        assert client.get(delete).status_code == 404
        assert client.post(delete).status_code == 404
        assert "alice@laptop" not in client.get(PAGE).content.decode()
    assert SshKey.objects.filter(pk=key.pk).exists()
    assert not AuditEvent.objects.filter(action="ssh_key_delete").exists()
    client.logout()
    assert client.post(delete).status_code == 302  # to the login page
    assert SshKey.objects.filter(pk=key.pk).exists()


def test_delete_needs_the_csrf_token(alice, new_ssh_key):
    key = ssh_keys.add_key(alice, new_ssh_key("alice@laptop")[0])
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(reverse("ssh_key_delete", args=[key.pk])).status_code == 403
    assert client.post(PAGE, {"key": new_ssh_key("alice@desk")[0]}).status_code == 403
    assert SshKey.objects.count() == 1


def test_a_refused_key_is_shown_again_with_the_reason(client, alice, new_ssh_key):
    line, _ = new_ssh_key("alice@old", "rsa", "-b", "2048")
    client.force_login(alice)
    r = add(client, line)
    assert r.status_code == 200
    assert "at least 3072 are needed" in str(r.context["form"].errors["key"])
    assert line.split()[1] in r.content.decode()  # a public key may be shown again, to be fixed
    assert not SshKey.objects.exists() and not AuditEvent.objects.exists()


def test_a_private_key_is_refused_and_not_sent_back(client, alice, new_ssh_key):
    _, private = new_ssh_key("alice@laptop")
    text = private.read_text()
    client.force_login(alice)
    r = add(client, text)
    assert r.status_code == 200
    body = r.content.decode()
    assert "This is a PRIVATE key. It was not saved." in body
    for line in text.splitlines()[1:-1]:
        assert line not in body
    assert not SshKey.objects.exists() and not AuditEvent.objects.exists()


def test_duplicates_are_refused_but_another_user_may_add_the_same_key(client, alice, bob, new_ssh_key):
    line, _ = new_ssh_key("alice@laptop")
    client.force_login(alice)
    add(client, line)
    key_type, body, _ = line.split()
    r = add(client, f"{key_type} {body} another comment")
    assert "You already added this key" in str(r.context["form"].errors["key"])
    assert SshKey.objects.filter(user=alice).count() == 1
    client.force_login(bob)
    assert add(client, line).status_code == 302
    assert SshKey.objects.count() == 2


def test_at_most_ten_keys(client, alice, new_ssh_key):
    client.force_login(alice)
    for n in range(ssh_keys.MAX_KEYS_PER_USER):
        assert add(client, new_ssh_key(f"alice@host{n}")[0]).status_code == 302
    body = client.get(PAGE).content.decode()
    assert "You have 10 keys, the most allowed." in body and 'id="ssh-key-form"' not in body
    r = add(client, new_ssh_key("alice@one-too-many")[0])
    assert "You have 10 keys, the most allowed." in str(r.context["form"].errors["key"])
    assert SshKey.objects.filter(user=alice).count() == ssh_keys.MAX_KEYS_PER_USER


def test_the_page_in_portuguese(client, alice, new_ssh_key):
    client.force_login(alice)
    ssh_keys.add_key(alice, new_ssh_key("alice@laptop")[0])
    body = client.get(PAGE, HTTP_ACCEPT_LANGUAGE="pt-BR").content.decode()
    assert "Minhas chaves SSH" in body and "Excluir…" in body
    r = client.post(PAGE, {"key": "hello world"}, HTTP_ACCEPT_LANGUAGE="pt-BR")
    assert "não é uma chave pública OpenSSH" in r.content.decode()
