"""The new-batch form: a valid roster creates the lab; any bad line creates nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labs.models import Guest, Lab, Task
from tests.ui.batch_helpers import create_via_form

ROSTER = "username,full name,e-mail\nana,Ana Souza,ana@example.edu\nbeto,Roberto Lima,beto@example.edu\n"


@pytest.fixture
def form_data(template, pool, host):
    return {"name": "Redes 2024", "slug": "redes", "template": template.pk, "pool": pool.pk, "memory_mb": "256"}


def test_create_batch_from_pasted_roster(client, ivy, form_data):
    client.force_login(ivy)
    r = create_via_form(client, {**form_data, "roster_text": ROSTER})
    lab = Lab.objects.get(slug="redes")
    assert r["Location"] == reverse("lab_accounts", args=[lab.pk])
    assert list(lab.instructors.all()) == [ivy]
    assert sorted(lab.guests.values_list("domain_name", flat=True)) == ["redes-ana", "redes-beto"]
    assert Task.objects.filter(lab=lab, kind="provision").count() == 2
    assert User.objects.get(username="ana").get_full_name() == "Ana Souza"


def test_create_batch_from_uploaded_csv(client, ivy, form_data):
    client.force_login(ivy)
    upload = SimpleUploadedFile("roster.csv", ("\ufeff" + ROSTER).encode(), content_type="text/csv")
    create_via_form(client, {**form_data, "roster_file": upload})
    assert Lab.objects.get(slug="redes").guests.count() == 2


def test_new_passwords_shown_once_with_csv(client, ivy, form_data):
    client.force_login(ivy)
    r = create_via_form(client, {**form_data, "roster_text": ROSTER}, follow=True)
    body = r.content.decode()
    assert r.redirect_chain[-1][0] == reverse("lab_accounts", args=[Lab.objects.get().pk])
    assert "shown only this once" in body
    assert "data:text/csv;charset=utf-8;base64," in body
    assert 'download="redes-accounts.csv"' in body
    assert r["Cache-Control"].startswith("max-age=0") or "no-store" in r["Cache-Control"]
    # The password works for the new student.
    row = body.split("<td>ana</td><td><code>", 1)[1]
    password = row.split("</code>", 1)[0]
    assert client.login(username="ana", password=password)
    # Second visit: gone from the session.
    client.force_login(ivy)
    again = client.get(reverse("lab_accounts", args=[Lab.objects.get().pk]), follow=True)
    assert password not in again.content.decode()
    assert "shown only once" in again.content.decode()


def test_csv_download_holds_every_new_account(client, ivy, form_data):
    import base64

    client.force_login(ivy)
    body = create_via_form(client, {**form_data, "roster_text": ROSTER}, follow=True).content.decode()
    encoded = body.split("data:text/csv;charset=utf-8;base64,", 1)[1].split('"', 1)[0]
    lines = base64.b64decode(encoded).decode().splitlines()
    assert lines[0] == "username,password"
    assert [line.split(",")[0] for line in lines[1:]] == ["ana", "beto"]


def test_existing_students_get_no_new_password(client, ivy, alice, form_data):
    client.force_login(ivy)
    data = {**form_data, "roster_text": "alice,Alice,alice@example.edu\n"}
    # First listed in the preview (tests/ui/test_roster_accounts.py), then enrolled.
    r = create_via_form(client, data)
    lab = Lab.objects.get()
    assert r["Location"] == reverse("lab_detail", args=[lab.pk])
    assert lab.guests.get().student == alice


HOSTILE = (
    "username,full name,e-mail\n"
    "ana,Ana Souza,ana@example.edu\n"
    "ana,Ana Again,ana2@example.edu\n"
    "\n"
    "x;$(reboot),Mallory,m@example.edu\n"
    f"long,{'L' * 300},long@example.edu\n"
    "carl,Carl,not-an-email\n"
)


def test_hostile_roster_gets_line_errors_and_creates_nothing(client, ivy, form_data):
    client.force_login(ivy)
    users_before = User.objects.count()
    r = client.post(reverse("lab_create"), {**form_data, "roster_text": HOSTILE})
    assert r.status_code == 200
    body = r.content.decode()
    errors = r.context["form"].roster_errors
    assert {(e.line, e.field) for e in errors} == {
        (3, "username"),
        (4, "line"),
        (5, "username"),
        (6, "full_name"),
        (7, "email"),
    }
    assert "<td>3</td><td>username</td><td>ana is already on line 2.</td>" in body
    assert "<td>6</td><td>full name</td>" in body
    assert "5 lines of the roster have problems" in body
    assert 'data-line="7" data-field="email"' in body
    assert "nothing was created" in body
    assert not Lab.objects.exists()
    assert not Guest.objects.exists()
    assert User.objects.count() == users_before
    # The pasted text comes back for fixing, escaped.
    assert "x;$(reboot)" in body
    assert "<script" not in r.context["form"]["roster_text"].value()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("memory_mb", "4096", "Memory per guest must be between 32 and 1024 MiB"),
        ("memory_mb", "8", "Memory per guest must be between 32 and 1024 MiB"),
        ("slug", "Bad Slug!", ""),
        ("template", "999", "Select a valid choice"),
        ("expires_at", "2001-01-01T10:00", "must be in the future"),
    ],
)
def test_bad_field_is_refused(client, ivy, form_data, field, value, message):
    client.force_login(ivy)
    r = client.post(reverse("lab_create"), {**form_data, field: value, "roster_text": ROSTER})
    assert r.status_code == 200
    assert field in r.context["form"].errors
    assert message in " ".join(r.context["form"].errors[field])
    assert not Lab.objects.exists()


def test_empty_roster_is_refused(client, ivy, form_data):
    client.force_login(ivy)
    r = client.post(reverse("lab_create"), {**form_data, "roster_text": "  "})
    assert "roster_text" in r.context["form"].errors
    assert not Lab.objects.exists()


def test_service_refusal_lands_on_the_form(client, ivy, form_data, host):
    host.total_memory_mb = 1500  # 476 MiB after the 1024 MiB reserve: two 256 MiB guests do not fit
    host.save()
    client.force_login(ivy)
    r = client.post(reverse("lab_create"), {**form_data, "roster_text": ROSTER})
    assert r.status_code == 200 and r.context["form"].preview is None
    assert "Not enough host capacity" in " ".join(r.context["form"].errors["host"])
    assert not Lab.objects.exists()


def test_chosen_host_is_used(client, ivy, form_data, host):
    from labs.models import Host

    other = Host.objects.create(name="dom0-b", queue_name="dom0-b", volume_group="vg0", total_memory_mb=65536)
    client.force_login(ivy)
    create_via_form(client, {**form_data, "host": host.pk, "roster_text": ROSTER})
    assert set(Guest.objects.values_list("host", flat=True)) == {host.pk}
    assert other.guests.count() == 0


def test_form_is_crispy_bootstrap(client, ivy):
    client.force_login(ivy)
    body = client.get(reverse("lab_create")).content.decode()
    assert 'enctype="multipart/form-data"' in body
    assert 'class="form-select' in body
    for field in ("name", "template", "pool", "memory_mb", "host", "expires_at", "roster_file", "roster_text"):
        assert f'for="id_{field}"' in body, field
    assert "Automatic" in body
