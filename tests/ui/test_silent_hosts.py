"""A host no worker answers for: the lab and host pages say so, so nobody waits for jobs that cannot run."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from labs.models import Host


def _live(client, lab) -> str:
    return client.get(reverse("lab_live", args=[lab.pk])).content.decode()


def test_the_lab_page_names_a_silent_host(client, ivy, lab, alice_guest, host):
    client.force_login(ivy)
    Host.objects.filter(pk=host.pk).update(last_seen=timezone.now())
    assert "silent-host" not in _live(client, lab)
    stamp = timezone.now() - timedelta(minutes=5)
    Host.objects.filter(pk=host.pk).update(last_seen=stamp)
    body = _live(client, lab)
    assert f'data-host="{host.name}"' in body
    assert f"No worker has answered for {host.name} since {timezone.localtime(stamp):%H:%M}" in body
    assert "Jobs for its VMs wait until it answers again." in body


def test_a_host_never_heard_from(client, ivy, lab, alice_guest, host):
    client.force_login(ivy)
    Host.objects.filter(pk=host.pk).update(last_seen=None)
    assert f"No worker has answered for {host.name} yet" in _live(client, lab)
    page = client.get(reverse("host_detail", args=[host.pk])).content.decode()
    assert f"No worker has answered for {host.name} yet" in page


def test_in_portuguese(client, ivy, lab, alice_guest, host):
    client.force_login(ivy)
    Host.objects.filter(pk=host.pk).update(last_seen=timezone.now() - timedelta(minutes=5))
    body = client.get(reverse("lab_live", args=[lab.pk]), HTTP_ACCEPT_LANGUAGE="pt-BR").content.decode()
    assert "Nenhum worker respondeu por" in body
