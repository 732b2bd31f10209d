"""Issue 15, layout and language: the pt-BR words the review found, and the host admin's help text."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from labs.models import Host
from tests.ui.conftest import set_state

PT = {"HTTP_ACCEPT_LANGUAGE": "pt-br"}


def test_reset_is_restaurar_a_partir_do_modelo(client, alice, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk]), **PT).content.decode()
    assert "Restaurar a partir do modelo…" in body
    assert "Restaurar o modelo" not in body


def test_a_host_seen_seconds_ago_is_not_ha_0_minuto(client, ivy, host):
    Host.objects.filter(pk=host.pk).update(last_seen=timezone.now() - timedelta(seconds=10))
    client.force_login(ivy)
    for url in (reverse("host_list"), reverse("host_detail", args=[host.pk])):
        body = client.get(url, **PT).content.decode()
        assert "visto pela última vez há menos de um minuto" in body
        assert "0 minuto" not in body
    Host.objects.filter(pk=host.pk).update(last_seen=timezone.now() - timedelta(minutes=3, seconds=5))
    assert "visto pela última vez há 3\xa0minutos" in client.get(reverse("host_list"), **PT).content.decode()


def test_labels_that_head_a_line_have_a_capital(client, ivy, host):
    client.force_login(ivy)
    body = client.get(reverse("host_detail", args=[host.pk]), **PT).content.decode()
    assert "Versão do Xen" in body and "versão do Xen" not in body


def test_the_admins_own_strings_are_translated(client, admin_user, template, pool):
    client.force_login(admin_user)
    body = client.get(reverse("admin:labs_labtemplate_changelist"), **PT).content.decode()
    assert "(Re)construir no host escolhido com debootstrap" in body
    body = client.get(reverse("admin:labs_ippool_changelist"), **PT).content.decode()
    assert "Endereços utilizáveis" in body


def test_the_host_admins_help_text_keeps_its_words(client, admin_user, host):
    client.force_login(admin_user)
    body = client.get(reverse("admin:labs_host_change", args=[host.pk])).content.decode()
    assert "Guest volumes are named with this prefix" in body and "vm-net101-alice.raiz" in body
    assert "<prefix>" not in body and "named .raiz" not in body


def test_the_admin_index_names_every_model_in_portuguese(client, admin_user):
    client.force_login(admin_user)
    body = client.get(reverse("admin:index"), **PT).content.decode()
    for name in (
        "Laboratórios",
        "Servidores",
        "Modelos de laboratório",
        "Faixas de IPs",
        "Tarefas",
        "Eventos de auditoria",
    ):
        assert name in body, name
    for english in ("Lab templates", "Audit events", "Usage totals", ">Hosts<", ">Tasks<"):
        assert english not in body, english
