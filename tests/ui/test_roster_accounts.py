"""Existing accounts on a roster: confirmed before they are enrolled, never an instructor's or admin's;
and no instructor takes over another instructor's student through "Reset panel password…" (issue 13, part 1)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from labs import services
from labs.models import AuditEvent, Guest, Lab
from tests.conftest import PASSWORD, make_guest
from tests.pipeline.helpers import roster
from tests.ui.batch_helpers import confirm, create_via_form, preview
from tests.ui.conftest import messages_of

CROSS_LAB_REFUSAL = (
    "alice also has a VM in a lab you do not teach, and a new password would open that VM to you too: only an"
    " administrator can reset this password, in the admin."
)


@pytest.fixture
def form_data(template, pool, host):
    return {"name": "Security", "slug": "sec", "template": template.pk, "pool": pool.pk, "memory_mb": "256"}


def _token(r) -> str:
    return r.context["form"].preview.token


def _listed(body: str) -> list[str]:
    return re.findall(r'<tr class="preview-vm existing-account" data-username="([^"]*)"', body)


def _hash(user: User) -> str:
    return User.objects.get(pk=user.pk).password


def _create_confirmed(client, form_data, text: str) -> Lab:
    """The two POSTs: the roster's preview (which lists the existing accounts), then "Create"."""
    r = create_via_form(client, {**form_data, "roster_text": text})
    assert r.status_code == 302, r.context["form"].errors if r.context else r
    return Lab.objects.get(slug=form_data["slug"])


def test_existing_accounts_are_listed_in_the_preview_and_nothing_is_created_before_it_is_confirmed(
    client, charlie, alice, form_data
):
    client.force_login(charlie)
    text = "ana,Ana Souza,ana@example.edu\nalice,Alice,alice@example.edu\n"
    users_before = User.objects.count()
    r = preview(client, {**form_data, "roster_text": text})
    assert r.status_code == 200
    body = r.content.decode()
    assert _listed(body) == ["alice"]
    assert "1 account on the roster already exists" in body
    # One step: the preview is the confirmation (issue 15 merged #13's own step into it).
    assert 'id="create-batch"' in body and "Create the lab and its VMs" in body and "confirm-existing" not in body
    assert not Lab.objects.exists() and not Guest.objects.exists() and User.objects.count() == users_before
    assert not AuditEvent.objects.exists()

    r = confirm(client, r, {**form_data, "roster_text": text})
    lab = Lab.objects.get(slug="sec")
    # ana is new: her password is shown once; alice keeps hers.
    assert r["Location"] == reverse("lab_accounts", args=[lab.pk])
    assert sorted(lab.guests.values_list("student__username", flat=True)) == ["alice", "ana"]
    assert Client().login(username="alice", password=PASSWORD)
    event = AuditEvent.objects.get(action="enrol_account")
    assert (event.actor, event.lab, event.target, event.result) == (charlie, lab, "alice", AuditEvent.Result.SUCCEEDED)
    assert AuditEvent.objects.get(action="create_account").target == "ana"


def test_a_preview_binds_to_the_very_list(client, charlie, alice, bob, form_data):
    client.force_login(charlie)
    first = preview(client, {**form_data, "roster_text": "alice\n"})
    token = _token(first)
    # The roster now names another existing account: the old preview does not cover it.
    data = {**form_data, "roster_text": "alice\nbob\n", "preview_token": token, "create": "1"}
    r = client.post(reverse("lab_create"), data)
    assert r.status_code == 200 and not Lab.objects.exists()
    body = r.content.decode()
    assert _listed(body) == ["alice", "bob"]
    assert "Added to the roster: bob." in body
    assert _token(r) != token
    # A forged token is no confirmation either.
    r = client.post(reverse("lab_create"), {**data, "roster_text": "alice\n", "preview_token": token[:-4] + "AAAA"})
    assert r.status_code == 200 and not Lab.objects.exists()
    assert "The preview is too old or not yours: check this one." in r.content.decode()


def test_the_token_is_the_instructors_own(client, charlie, ivy, alice, form_data):
    client.force_login(ivy)
    token = _token(preview(client, {**form_data, "roster_text": "alice\n"}))
    client.force_login(charlie)
    data = {**form_data, "roster_text": "alice\n", "preview_token": token, "create": "1"}
    r = client.post(reverse("lab_create"), data)
    assert r.status_code == 200 and not Lab.objects.exists()


def test_an_uploaded_roster_comes_back_as_text_for_the_confirmation(client, charlie, alice, form_data):
    client.force_login(charlie)
    upload = SimpleUploadedFile("roster.csv", b"alice,Alice,alice@example.edu\n", content_type="text/csv")
    r = preview(client, {**form_data, "roster_file": upload})
    assert r.status_code == 200
    assert r.context["form"]["roster_text"].value() == "alice,Alice,alice@example.edu\n"
    assert confirm(client, r, form_data).status_code == 302
    assert Lab.objects.get().guests.get().student == alice


@pytest.mark.parametrize("who", ["ivy", "admin_user", "disabled_instructor"])
def test_instructor_and_admin_accounts_are_refused_not_enrolled(
    client, request, charlie, alice, form_data, who, template, pool
):
    if who == "disabled_instructor":
        account = request.getfixturevalue("ivy")
        User.objects.filter(pk=account.pk).update(is_active=False)
    else:
        account = request.getfixturevalue(who)
    client.force_login(charlie)
    text = f"alice\n{account.username}\n"
    r = client.post(reverse("lab_create"), {**form_data, "roster_text": text})
    assert r.status_code == 200
    message = (
        f"{account.username}: instructor and administrator accounts cannot be enrolled from a roster."
        " Remove them from the roster."
    )
    assert message in r.context["form"].errors["roster_text"]
    assert _listed(r.content.decode()) == [] and r.context["form"].preview is None  # refused, not previewed
    # Not even through the API's confirmation of the whole list.
    token = services.batch.existing_accounts_token(charlie, [alice, account])
    with pytest.raises(services.ServiceError, match="cannot be enrolled"):
        services.create_lab_batch(
            charlie, template, pool, roster("alice", account.username), 256, confirm_existing=token
        )
    assert not Lab.objects.exists() and not AuditEvent.objects.exists()


def test_service_refuses_unconfirmed_existing_accounts(charlie, alice, template, pool, host):
    with pytest.raises(services.AccountsToConfirm) as e:
        services.create_lab_batch(charlie, template, pool, roster("alice", "ana"), 256, confirm_existing="")
    assert [u.username for u in e.value.accounts] == ["alice"] and not e.value.changed
    assert not Lab.objects.exists() and not User.objects.filter(username="ana").exists()
    result = services.create_lab_batch(
        charlie, template, pool, roster("alice", "ana"), 256, confirm_existing=e.value.token
    )
    assert [u.username for u in result.enrolled] == ["alice"]


def test_instructor_takes_over_no_student_of_another_lab(client, ivy, charlie, alice, lab, alice_guest, form_data):
    """The reproduction: charlie puts ivy's student alice on a roster, confirms, then resets her password."""
    client.force_login(charlie)
    own_lab = _create_confirmed(client, form_data, "alice,Alice,alice@example.edu\n")
    assert own_lab.guests.get().student == alice
    before = _hash(alice)

    body = client.get(reverse("student_password_confirm", args=[own_lab.pk, alice.pk])).content.decode()
    assert CROSS_LAB_REFUSAL in body and 'class="btn btn-danger" disabled' in body
    r = client.post(reverse("student_password_reset", args=[own_lab.pk, alice.pk]), {"confirm": "on"})
    assert r.status_code == 302 and r["Location"] == reverse("lab_detail", args=[own_lab.pk])
    assert messages_of(r) == [CROSS_LAB_REFUSAL]
    # No new password anywhere for charlie; alice's old one still works and nothing else does.
    r = client.get(reverse("student_password_new", args=[own_lab.pk, alice.pk]))
    assert r.status_code == 302 and "password" not in (r.context or {})
    assert _hash(alice) == before and Client().login(username="alice", password=PASSWORD)
    event = AuditEvent.objects.get(action="reset_password")
    assert (event.actor, event.target, event.result) == (charlie, "alice", AuditEvent.Result.REFUSED)
    # So charlie cannot reach alice's VM in ivy's lab.
    assert client.post(reverse("guest_action", args=[alice_guest.pk, "reboot"])).status_code == 404


def test_instructor_of_every_lab_of_the_student_may_reset(ivy, alice, lab, alice_guest, template, pool, host):
    other = Lab.objects.create(name="Systems", slug="sys", template=template, pool=pool, memory_mb=256)
    other.instructors.add(ivy)
    make_guest(other, alice, host, 5)
    assert services.password_reset_refusal(ivy, alice) is None
    assert Client().login(username="alice", password=services.reset_student_password(ivy, other, alice))


def test_a_co_instructor_of_every_lab_may_reset_too(ivy, charlie, alice, lab, alice_guest):
    lab.instructors.add(charlie)
    assert services.password_reset_refusal(charlie, alice) is None


def test_a_torn_down_lab_holds_nobody(ivy, charlie, alice, lab, alice_guest, template, pool, host):
    mine = Lab.objects.create(name="Mine", slug="mine", template=template, pool=pool, memory_mb=256)
    mine.instructors.add(charlie)
    make_guest(mine, alice, host, 5)
    assert services.password_reset_refusal(charlie, alice) == CROSS_LAB_REFUSAL
    # ivy's lab being torn down still holds alice's VM; once torn down it holds nothing.
    Lab.objects.filter(pk=lab.pk).update(status=Lab.Status.TEARING_DOWN)
    assert services.password_reset_refusal(charlie, alice) == CROSS_LAB_REFUSAL
    Guest.objects.filter(lab=lab).delete()
    Lab.objects.filter(pk=lab.pk).update(status=Lab.Status.TORN_DOWN)
    assert services.password_reset_refusal(charlie, alice) is None


def test_an_admin_may_reset_a_student_of_several_instructors(
    admin_user, charlie, alice, lab, alice_guest, template, pool, host
):
    mine = Lab.objects.create(name="Mine", slug="mine", template=template, pool=pool, memory_mb=256)
    mine.instructors.add(charlie)
    make_guest(mine, alice, host, 5)
    assert Client().login(username="alice", password=services.reset_student_password(admin_user, mine, alice))


def test_refusal_in_portuguese(client, charlie, alice, lab, alice_guest, template, pool, host):
    mine = Lab.objects.create(name="Mine", slug="mine", template=template, pool=pool, memory_mb=256)
    mine.instructors.add(charlie)
    make_guest(mine, alice, host, 5)
    client.force_login(charlie)
    client.post(reverse("set_language"), {"language": "pt-br"})
    r = client.post(reverse("student_password_reset", args=[mine.pk, alice.pk]), {"confirm": "on"}, follow=True)
    assert "alice também tem uma VM em um laboratório que você não ministra" in r.content.decode()


def test_confirmation_step_in_portuguese(client, charlie, alice, form_data):
    client.force_login(charlie)
    client.post(reverse("set_language"), {"language": "pt-br"})
    body = preview(client, {**form_data, "roster_text": "alice\n"}).content.decode()
    assert "1 conta da lista de alunos já existe" in body
    assert "Prévia: nada foi criado ainda" in body
