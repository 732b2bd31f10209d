"""Issue 15: the host page's health panel in words, translated (it printed Python dicts)."""

from __future__ import annotations

from django.urls import reverse

from labs.models import Host

REPORT = {
    "xen": {"ok": True, "detail": "Xen 4.17.3, 16384 MiB, 15000 MiB free"},
    "volume_group": {"ok": True, "detail": "vg0: 5000 of 20000 MiB free"},
    "bridge": {"ok": False, "detail": "bridge xenbr0 is missing"},
    "guest_network": {"ok": True, "detail": "bridge xenbr0 holds no dom0 address"},
    "dom0_reserve": {"ok": True, "detail": "1024 MiB reserved for dom0, 15360 MiB left for guests"},
}


def _page(client, ivy, host, **headers) -> str:
    Host.objects.filter(pk=host.pk).update(
        health_ok=False, health_report=REPORT, xen_version="4.17.3", vg_size_mb=20000, vg_free_mb=5000
    )
    client.force_login(ivy)
    return client.get(reverse("host_detail", args=[host.pk]), **headers).content.decode()


def test_the_checks_are_sentences_not_dicts(client, ivy, host):
    body = _page(client, ivy, host)
    assert "{&#x27;ok&#x27;" not in body and "{'ok'" not in body
    assert "Xen 4.17.3 answers: 16384 MiB of memory, 15000 MiB free." in body
    assert "Volume group vg0: 5000 of 20000 MiB free." in body
    assert "<strong>Problem:</strong> Bridge xenbr0 is missing: new VMs cannot join the lab&#x27;s network." in body
    assert "1024 MiB reserved for dom0, 15360 MiB left for guests." in body
    assert "The host said: bridge xenbr0 is missing" in body


def test_in_portuguese(client, ivy, host):
    body = _page(client, ivy, host, HTTP_ACCEPT_LANGUAGE="pt-br")
    assert "A ponte xenbr0 não existe: VMs novas não conseguem entrar na rede do laboratório." in body
    assert "Grupo de volumes vg0: 5000 de 20000 MiB livres." in body
    assert "Versão do Xen" in body  # a capital letter where it heads a line (issue 15)


def test_a_check_this_panel_does_not_know_is_shown_as_reported(client, ivy, host):
    Host.objects.filter(pk=host.pk).update(health_report={"new_check": {"ok": True, "detail": "all fine"}})
    client.force_login(ivy)
    body = client.get(reverse("host_detail", args=[host.pk])).content.decode()
    assert "new check" in body and "all fine" in body
