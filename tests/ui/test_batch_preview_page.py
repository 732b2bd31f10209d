"""The batch form's preview page (issue 15): spreadsheets' rosters, the preview's table, races, edits, quotas."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labs.models import Lab, LabTemplate, StudentQuota
from labs.services import create_lab_batch
from tests.pipeline.helpers import roster
from tests.ui.batch_helpers import confirm, preview

EXCEL = "usuário;nome;e-mail\r\nana;Ana Conceição;ana@example.edu\r\nbeto;Lima, Roberto;\r\n"


@pytest.fixture
def form_data(template, pool, host):
    return {"name": "Redes de Computadores", "template": template.pk, "pool": pool.pk, "memory_mb": "256"}


def _rows(r) -> list[tuple]:
    return [(v.username, v.domain, v.ip) for v in r.context["form"].preview.rows]


def test_an_excel_pt_br_file_is_previewed_then_created(client, ivy, form_data):
    client.force_login(ivy)
    upload = SimpleUploadedFile("turma.csv", EXCEL.encode("cp1252"), content_type="text/csv")
    r = preview(client, {**form_data, "roster_file": upload})
    body = r.content.decode()
    assert _rows(r) == [("ana", "redes-de-ana", "10.10.0.2"), ("beto", "redes-de-beto", "10.10.0.3")]
    assert "Ana Conceição" in body and "Preview: nothing is created yet" in body
    assert 'name="slug"' in body and 'value="redes-de"' in body  # the short name, editable
    assert "2 VMs of 256 MiB each (512 MiB in all)." in body
    assert "Pool net: 253 free addresses, 2 needed." in body
    assert not Lab.objects.exists()
    r = confirm(client, r, form_data)
    assert r.status_code == 302
    assert sorted(Lab.objects.get().guests.values_list("ip", flat=True)) == ["10.10.0.2", "10.10.0.3"]


def test_a_workbook_upload_is_named(client, ivy, form_data):
    client.force_login(ivy)
    upload = SimpleUploadedFile("turma.xlsx", b"PK\x03\x04junk", content_type="application/octet-stream")
    r = preview(client, {**form_data, "roster_file": upload})
    assert "not CSV text" in " ".join(r.context["form"].errors["roster_file"])


def test_a_quoted_newline_is_shown_at_its_line_and_field(client, ivy, form_data):
    client.force_login(ivy)
    r = preview(client, {**form_data, "roster_text": 'ana,Ana\nbeto,"Roberto\nLima",b@example.edu\ncarla\n'})
    assert [(e.line, e.field) for e in r.context["form"].roster_errors] == [(2, "full_name")]
    assert 'data-line="2" data-field="full_name"' in r.content.decode()


def test_the_short_name_is_edited_on_the_preview_and_checked_again(client, ivy, form_data):
    client.force_login(ivy)
    data = {**form_data, "roster_text": "ana\n"}
    r = preview(client, {**data, "slug": "Bad;name"})
    assert r.context["form"].preview is None and "slug" in r.context["form"].errors
    r = preview(client, {**data, "slug": "rc-2026"})
    assert _rows(r) == [("ana", "rc-2026-ana", "10.10.0.2")]
    # "Create" with a short name changed after the preview: nothing is created, the change is named.
    token = r.context["form"].preview.token
    r = client.post(reverse("lab_create"), {**data, "slug": "rc-b", "preview_token": token, "create": "1"})
    body = r.content.decode()
    assert not Lab.objects.exists()
    assert "What changed since the preview" in body and "ana: VM name rc-2026-ana → rc-b-ana; hostname" in body
    assert _rows(r) == [("ana", "rc-b-ana", "10.10.0.2")]


def test_a_race_shows_what_changed_and_a_new_preview(client, ivy, template, pool, form_data):
    client.force_login(ivy)
    data = {**form_data, "slug": "net", "roster_text": "ana\nbeto\n"}
    r = preview(client, data)
    create_lab_batch(ivy, template, pool, roster("zed"), 256, slug="other")  # takes 10.10.0.2
    r = confirm(client, r, data)
    body = r.content.decode()
    assert r.status_code == 200 and not Lab.objects.filter(slug="net").exists()
    assert "The batch is not what its preview showed, so nothing was created." in body
    assert "ana: address 10.10.0.2 → 10.10.0.3." in body
    r = confirm(client, r, data)
    assert r.status_code == 302
    assert sorted(Lab.objects.get(slug="net").guests.values_list("ip", flat=True)) == ["10.10.0.3", "10.10.0.4"]


def test_existing_accounts_show_their_kept_name(client, ivy, alice, form_data):
    client.force_login(ivy)
    r = preview(client, {**form_data, "roster_text": "alice,Alicia Nova,alice@example.edu\nana,Ana,\n"})
    body = r.content.decode()
    assert "kept as Alice" in body and "existing account" in body and "new account" in body


def test_every_blocked_student_is_listed(client, ivy, alice, bob, form_data):
    StudentQuota.objects.create(user=alice, max_guests=0, max_memory_mb=4096)
    StudentQuota.objects.create(user=bob, max_guests=0, max_memory_mb=4096)
    client.force_login(ivy)
    r = preview(client, {**form_data, "roster_text": "alice\nana\nbob\n"})
    message = " ".join(r.context["form"].errors["roster_text"])
    assert "2 students would go over their quotas" in message and "alice" in message and "bob" in message


def test_memory_starts_at_the_templates(client, ivy, template, pool, host):
    LabTemplate.objects.filter(pk=template.pk).update(default_memory_mb=384)
    client.force_login(ivy)
    body = client.get(reverse("lab_create")).content.decode()
    assert 'name="memory_mb" value="384"' in body
    assert f'"{template.pk}": 384' in body  # batch.js follows the template picked


def test_the_preview_in_portuguese(client, ivy, alice, form_data):
    client.force_login(ivy)
    client.post(reverse("set_language"), {"language": "pt-br"})
    body = preview(client, {**form_data, "roster_text": "alice,Alicia Nova,\nana,Ana,\n"}).content.decode()
    assert "Prévia: nada foi criado ainda" in body and "mantido como Alice" in body
    assert "2 VMs de 256 MiB cada (512 MiB no total)." in body and "Atualizar a prévia" in body
    r = preview(client, {**form_data, "roster_text": "a..b\n"})
    assert "tem dois pontos seguidos" in r.content.decode()
