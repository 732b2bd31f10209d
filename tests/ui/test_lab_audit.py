"""A lab's instructors see its audit trail, refusals included, from the lab page; strangers get 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labs.models import AuditEvent, Guest, Lab
from tests.conftest import make_guest

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(alice, ivy, alice_guest, lab) -> list[AuditEvent]:
    return [
        AuditEvent.objects.create(
            actor=alice,
            action="reboot",
            guest=alice_guest,
            lab=lab,
            target=alice_guest.domain_name,
            result="succeeded",
        ),
        AuditEvent.objects.create(
            actor=alice,
            action="mem_set",
            guest=alice_guest,
            lab=lab,
            target=alice_guest.domain_name,
            result="refused",
            message="You can give this VM at most 384 MiB",
        ),
        # A row that names only the guest still belongs to its lab's trail.
        AuditEvent.objects.create(
            actor=ivy, action="console_takeover", guest=alice_guest, target=alice_guest.domain_name, result="succeeded"
        ),
    ]


def test_the_lab_s_instructor_reads_who_did_what_to_which_vm(client, ivy, alice_guest, lab, trail):
    client.force_login(ivy)
    lab_page = client.get(reverse("lab_detail", args=[lab.pk])).content.decode()
    url = reverse("lab_audit", args=[lab.pk])
    assert url in lab_page
    page = client.get(url).content.decode()
    assert page.count("<tr data-result=") == 3
    assert 'data-result="refused" class="table-warning"' in page
    assert "You can give this VM at most 384 MiB" in page
    assert reverse("guest_detail", args=[alice_guest.pk]) in page and "alice" in page
    refused = client.get(url, {"result": "refused"}).content.decode()
    assert refused.count("<tr data-result=") == 1


def test_another_lab_s_rows_are_not_shown(client, ivy, charlie, bob, host, lab, trail):
    other = Lab.objects.create(name="Other", slug="other", template=lab.template, pool=lab.pool, memory_mb=256)
    other.instructors.add(charlie)
    guest = make_guest(other, bob, host, 9)
    AuditEvent.objects.create(actor=bob, action="reboot", guest=guest, lab=other, target="secret-vm", result="refused")
    client.force_login(ivy)
    assert "secret-vm" not in client.get(reverse("lab_audit", args=[lab.pk])).content.decode()
    # charlie does not teach ivy's lab: 404, as for any stranger; bob neither (a student).
    client.force_login(charlie)
    assert client.get(reverse("lab_audit", args=[lab.pk])).status_code == 404
    assert "secret-vm" in client.get(reverse("lab_audit", args=[other.pk])).content.decode()
    client.force_login(bob)
    assert client.get(reverse("lab_audit", args=[other.pk])).status_code == 404


def test_an_admin_reads_any_lab_s_trail(client, admin_user, lab, trail):
    client.force_login(admin_user)
    assert client.get(reverse("lab_audit", args=[lab.pk])).content.decode().count("<tr data-result=") == 3
    assert Guest.objects.count() == 1


def test_the_trail_reads_in_portuguese(client, ivy, lab, trail):
    client.force_login(ivy)
    page = client.get(reverse("lab_audit", args=[lab.pk]), HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert "Trilha de auditoria" in page and "recusad" in page
