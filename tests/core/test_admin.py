"""The Django admin: every page loads for staff, everyone else is sent to log in, filters and search work."""

from __future__ import annotations

import datetime

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from labs.class_hours_models import ClassSchedule
from labs.models import (
    AuditEvent,
    HostUsageSample,
    IpPool,
    Lab,
    SavePoint,
    SshKey,
    StudentQuota,
    Task,
    UsageCursor,
    UsageSample,
    UsageTotal,
)
from labs.services import api_tokens

REGISTERED = sorted(m._meta.label for m in admin.site._registry)
# Rows the service layer creates; the admin shows them but offers no add page.
NO_ADD = {"labs.Guest", "labs.Task", "labs.AuditEvent", "labs.SshKey", "labs.ApiToken", "django_rq.Dashboard"}
NO_ADD |= {"labs.UsageSample", "labs.HostUsageSample", "labs.UsageTotal", "labs.UsageCursor", "labs.SavePoint"}
NO_ADD |= {"labs.ClassSchedule"}
# Not a table: the django-rq dashboard link has a changelist only.
NO_ROWS = {"django_rq.Dashboard"}


@pytest.fixture
def every_row(instructors_group, alice, bob, host, template, pool, lab, alice_guest) -> dict:
    quota = StudentQuota.objects.create(user=bob, max_guests=3, max_memory_mb=1024)
    task = Task.objects.create(kind="create", guest=alice_guest, lab=lab, host=host, actor=alice, target="x")
    event = AuditEvent.objects.create(actor=alice, action="start", guest=alice_guest, result="requested")
    key = SshKey.objects.create(
        user=alice, key_type="ssh-ed25519", body="AAAA", bits=256, comment="alice@laptop", fingerprint="SHA256:x"
    )
    rows = {
        "auth.Group": instructors_group,
        "auth.User": alice,
        "labs.Host": host,
        "labs.LabTemplate": template,
        "labs.IpPool": pool,
        "labs.Lab": lab,
        "labs.Guest": alice_guest,
        "labs.StudentQuota": quota,
        "labs.Task": task,
        "labs.AuditEvent": event,
        "labs.SshKey": key,
        "labs.ApiToken": api_tokens.create_token(alice, "script", 1)[0],
        "labs.SavePoint": SavePoint.objects.create(
            guest=alice_guest, label="before exercise 3", volume="vm-x.sp1", method="copy", size_mb=64
        ),
        "labs.ClassSchedule": ClassSchedule.objects.create(
            lab=lab, days="13", start=datetime.time(14), end=datetime.time(16), outside="save"
        ),
        **_usage_rows(alice_guest, host),
    }
    assert set(rows) | NO_ROWS == set(REGISTERED), "a newly registered model needs a row here"
    return rows


def _usage_rows(guest, host) -> dict:
    from django.utils import timezone

    point = dict(tier=0, slot=1, bucket=1, cpu=5.0, cpu_max=9.0, mem_mb=256.0, mem_max_mb=256)
    now = timezone.now()
    return {
        "labs.UsageSample": UsageSample.objects.create(guest=guest, **point),
        "labs.HostUsageSample": HostUsageSample.objects.create(host=host, **point),
        "labs.UsageTotal": UsageTotal.objects.create(
            guest=guest,
            lab=guest.lab,
            student=guest.student,
            host=host,
            domain_name=guest.domain_name,
            first_seen=now,
            last_seen=now,
        ),
        "labs.UsageCursor": UsageCursor.objects.create(host=host, state={"minute": 1}),
    }


def url(label: str, page: str, *args) -> str:
    app, model = label.lower().split(".")
    return reverse(f"admin:{app}_{model}_{page}", args=args)


def test_every_labs_model_is_registered():
    labs_models = {m._meta.label for m in apps.get_app_config("labs").get_models()}
    assert labs_models <= set(REGISTERED)


@pytest.mark.parametrize("label", REGISTERED)
def test_staff_opens_changelist_add_and_change(client, admin_user, every_row, label):
    client.force_login(admin_user)
    assert client.get(url(label, "changelist")).status_code == 200
    assert client.get(url(label, "add")).status_code == (403 if label in NO_ADD else 200)
    if label not in NO_ROWS:
        r = client.get(url(label, "change", every_row[label].pk))
        assert r.status_code == 200
        assert str(every_row[label]).split(" ")[0] in r.content.decode()


@pytest.mark.parametrize("who", ["alice", "ivy", "anonymous"])
def test_students_instructors_and_strangers_are_sent_to_login(client, request, every_row, who):
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    for label in REGISTERED:
        pages = [url(label, "changelist"), url(label, "add")]
        if label not in NO_ROWS:
            pages += [url(label, "change", every_row[label].pk), url(label, "delete", every_row[label].pk)]
        for page in pages:
            r = client.get(page)
            assert r.status_code == 302, (who, page, r.status_code)
            assert r["Location"].startswith(reverse("admin:login")), (who, page)
    r = client.get(reverse("admin:index"))
    assert r.status_code == 302 and r["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("label", sorted(set(REGISTERED) - NO_ROWS))
def test_every_filter_choice_and_search_loads(client, admin_user, every_row, label):
    client.force_login(admin_user)
    r = client.get(url(label, "changelist"))
    cl = r.context["cl"]
    for spec in cl.filter_specs:
        for choice in spec.choices(cl):
            page = client.get(url(label, "changelist") + choice["query_string"])
            # A bad lookup redirects to ?e=1 instead of failing.
            assert page.status_code == 200, (spec.title, choice["query_string"], page.status_code)
    if cl.search_fields:
        assert client.get(url(label, "changelist"), {"q": "alice"}).status_code == 200


def test_search_finds_a_guest_by_ip_mac_and_student(client, admin_user, alice_guest, bob_guest):
    client.force_login(admin_user)
    for q in (alice_guest.ip, alice_guest.mac, "alice"):
        found = list(client.get(url("labs.Guest", "changelist"), {"q": q}).context["cl"].result_list)
        assert found == [alice_guest], q


def test_pool_and_lab_columns_count_addresses_and_guests(client, admin_user, alice_guest, bob_guest):
    client.force_login(admin_user)
    r = client.get(url("labs.IpPool", "changelist"))
    # 10.10.0.1-254 minus the gateway .1
    assert '<td class="field-usable">253</td>' in r.content.decode()
    assert '<td class="field-in_use">2</td>' in r.content.decode()
    r = client.get(url("labs.Lab", "changelist"))
    assert '<td class="field-guest_total">2</td>' in r.content.decode()


def test_quota_is_added_and_edited_on_the_user_page(client, admin_user, alice, admin_form):
    client.force_login(admin_user)
    page = url("auth.User", "change", alice.pk)
    data = admin_form(client.get(page), "user_form")
    # What the inline's "Add another" button does in the browser.
    data.update(
        {
            "quota-TOTAL_FORMS": ["1"],
            "quota-0-max_guests": ["5"],
            "quota-0-max_memory_mb": ["3072"],
            "quota-0-max_save_points": ["3"],
        }
    )
    r = client.post(page, data)
    assert r.status_code == 302, r.context and r.context["adminform"].form.errors
    quota = StudentQuota.objects.get(user=alice)
    assert (quota.max_guests, quota.max_memory_mb) == (5, 3072)

    data = admin_form(client.get(page), "user_form")
    assert data["quota-0-max_guests"] == ["5"]
    data["quota-0-max_guests"] = ["1"]
    assert client.post(page, data).status_code == 302
    quota.refresh_from_db()
    assert quota.max_guests == 1


def test_quota_change_form_saves(client, admin_user, bob, admin_form):
    quota = StudentQuota.objects.create(user=bob, max_guests=2, max_memory_mb=2048)
    client.force_login(admin_user)
    page = url("labs.StudentQuota", "change", quota.pk)
    data = admin_form(client.get(page), "studentquota_form")
    data["max_memory_mb"] = ["512"]
    assert client.post(page, data).status_code == 302
    quota.refresh_from_db()
    assert quota.max_memory_mb == 512


def test_lab_memory_limit_is_editable_on_the_form_and_the_list(client, admin_user, lab, admin_form):
    client.force_login(admin_user)
    page = url("labs.Lab", "change", lab.pk)
    data = admin_form(client.get(page), "lab_form")
    data["max_guest_memory_mb"] = ["768"]
    assert client.post(page, data).status_code == 302
    lab.refresh_from_db()
    assert lab.max_guest_memory_mb == 768

    listing = url("labs.Lab", "changelist")
    data = admin_form(client.get(listing), "changelist-form")
    data["form-0-max_guest_memory_mb"] = ["640"]
    data["_save"] = ["Save"]
    assert client.post(listing, data).status_code == 302
    lab.refresh_from_db()
    assert lab.max_guest_memory_mb == 640


def test_rows_that_mirror_vms_are_not_deleted_by_hand(client, admin_user, lab, alice_guest, template, pool):
    client.force_login(admin_user)
    assert client.get(url("labs.Guest", "delete", alice_guest.pk)).status_code == 403
    assert client.get(url("labs.Lab", "delete", lab.pk)).status_code == 403
    r = client.get(url("labs.Lab", "changelist"))
    assert "delete_selected" not in r.content.decode()
    empty = Lab.objects.create(name="Empty", slug="empty", template=template, pool=pool, memory_mb=256)
    assert client.get(url("labs.Lab", "delete", empty.pk)).status_code == 200
    event = AuditEvent.objects.create(actor=admin_user, action="x", result="requested")
    assert client.get(url("labs.AuditEvent", "delete", event.pk)).status_code == 403


def test_a_bad_pool_is_refused_with_the_reason(client, admin_user, admin_form):
    client.force_login(admin_user)
    page = url("labs.IpPool", "add")
    data = admin_form(client.get(page), "ippool_form")
    data.update(
        {
            "name": ["bad"],
            "network": ["10.20.0.5/24"],
            "gateway": ["10.20.0.1"],
            "first_ip": ["10.20.0.10"],
            "last_ip": ["10.20.0.20"],
        }
    )
    r = client.post(page, data)
    assert r.status_code == 200
    assert "has host bits set" in str(r.context["adminform"].form.errors["network"])
    data["network"] = ["10.20.0.0/24"]
    data["gateway"] = ["10.30.0.1"]
    r = client.post(page, data)
    assert "is outside 10.20.0.0/24" in str(r.context["adminform"].form.errors["gateway"])
    assert not IpPool.objects.filter(name="bad").exists()
    data["gateway"] = ["10.20.0.1"]
    assert client.post(page, data).status_code == 302
    assert IpPool.objects.get(name="bad").usable_set().size == 11


def test_pool_list_survives_a_row_that_skipped_validation(client, admin_user):
    IpPool.objects.create(
        name="legacy",
        network="10.9.0.0/24",
        gateway="10.9.0.1",
        first_ip="10.9.0.2",
        last_ip="10.9.0.9",
        reserved="x-y",
    )
    client.force_login(admin_user)
    r = client.get(url("labs.IpPool", "changelist"))
    assert r.status_code == 200
    assert '<td class="field-usable">?</td>' in r.content.decode()


def test_staff_revoke_a_token_in_the_admin_audited_as_theirs(client, admin_user, alice):
    token = api_tokens.create_token(alice, "script", 1)[0]
    client.force_login(admin_user)
    page = client.get(url("labs.ApiToken", "change", token.pk)).content.decode()
    assert token.digest not in page
    client.post(url("labs.ApiToken", "changelist"), {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.get(action="revoke_api_token").actor == admin_user
