"""Host overview: memory as a bar with words, health in words, guests per host."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from tests.ui.conftest import set_state


def test_host_overview_memory_in_words(client, ivy, host, alice_guest):
    set_state(alice_guest, "r")
    host.free_memory_mb = 14000
    host.health_ok = True
    host.last_seen = timezone.now()
    host.save()
    client.force_login(ivy)
    body = client.get(reverse("host_list")).content.decode()
    # 16384 total, 1024 reserve, 14000 free: 1360 used by guests.
    assert "14000 MiB free of 16384 MiB" in body
    assert "dom0 reserve 1024 MiB" in body
    assert "guests 1360 MiB" in body
    assert 'role="img"' in body
    assert ">healthy<" in body
    assert "last seen" in body


def test_host_health_words(client, charlie, host):
    client.force_login(charlie)
    assert ">unknown<" in client.get(reverse("host_list")).content.decode()
    host.health_ok = False
    host.last_seen = timezone.now()
    host.save()
    assert ">unhealthy<" in client.get(reverse("host_list")).content.decode()
    host.health_ok = True
    host.last_seen = timezone.now() - timedelta(hours=2)
    host.save()
    assert ">not seen recently<" in client.get(reverse("host_list")).content.decode()


def test_host_without_report(client, ivy, host):
    host.total_memory_mb = None
    host.save()
    client.force_login(ivy)
    assert "Memory not reported yet." in client.get(reverse("host_list")).content.decode()


def test_host_detail_lists_only_visible_guests(client, charlie, ivy, host, alice_guest):
    client.force_login(ivy)
    assert alice_guest.domain_name in client.get(reverse("host_detail", args=[host.pk])).content.decode()
    client.force_login(charlie)
    assert alice_guest.domain_name not in client.get(reverse("host_detail", args=[host.pk])).content.decode()


def test_admin_link_only_for_staff(client, ivy, admin_user):
    client.force_login(ivy)
    assert reverse("admin:index") not in client.get(reverse("host_list")).content.decode()
    client.force_login(admin_user)
    assert reverse("admin:index") in client.get(reverse("host_list")).content.decode()
