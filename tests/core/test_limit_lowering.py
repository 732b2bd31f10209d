"""An admin may not lower a memory limit, or a quota's number of VMs, under what existing VMs hold
(labs.services.limits).

Each test edits through the admin's own pages as a superuser (GET the form, POST
it back as a browser would): a value under the VMs' memory comes back on the
field with the count and the largest VM, and the row keeps its value; exactly
the largest (for a quota, the total, or the number of VMs) is saved; with no
VMs the field's own validators are the only bound.
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils.html import escape

from labs.models import Guest, Lab, LabTemplate, StudentQuota, Task
from tests.conftest import make_guest

PT = {"HTTP_ACCEPT_LANGUAGE": "pt-br"}


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


def submit(staff, admin_form, page: str, form_id: str, headers: dict | None = None, **values):
    """POST the admin page's form with `values` changed; the response."""
    data = admin_form(staff.get(page), form_id)
    for name, value in values.items():
        data[name] = [str(value)]
    return staff.post(page, data, **(headers or {}))


def refused(response, field: str, message: str, formset: bool = False) -> None:
    """The page came back (nothing saved) with exactly `message` on `field`, and shows it."""
    assert response.status_code == 200
    if formset:
        errors = [f.errors.get(field, []) for fs in response.context["inline_admin_formsets"] for f in fs.formset]
        assert [message] in errors, errors
    else:
        assert response.context["adminform"].form.errors.get(field) == [message]
    assert escape(message) in response.content.decode()


def sized(guest: Guest, memory_mb: int) -> Guest:
    Guest.objects.filter(pk=guest.pk).update(memory_mb=memory_mb)
    return guest


# -- the template's maximum memory --------------------------------------------------------------


def test_template_maximum_under_its_vms_is_refused_and_exactly_the_largest_saves(
    staff, admin_form, template, lab, alice_guest, bob_guest, host, pool, bob
):
    sized(bob_guest, 768)
    # Another lab on the same template counts too.
    other_lab = Lab.objects.create(name="Systems", slug="sys", template=template, pool=pool, memory_mb=128)
    sized(make_guest(other_lab, bob, host, 3), 512)
    page = reverse("admin:labs_labtemplate_change", args=[template.pk])

    r = submit(staff, admin_form, page, "labtemplate_form", max_memory_mb=512)
    refused(
        r,
        "max_memory_mb",
        "1 VM of this template has more memory than 512 MiB (net101-bob has 768 MiB):"
        " lower its memory first, or choose at least 768 MiB.",
    )
    r = submit(staff, admin_form, page, "labtemplate_form", max_memory_mb=128, default_memory_mb=64)
    refused(
        r,
        "max_memory_mb",
        "3 VMs of this template have more memory than 128 MiB (the largest, net101-bob, has 768 MiB):"
        " lower their memory first, or choose at least 768 MiB.",
    )
    template.refresh_from_db()
    assert (template.max_memory_mb, template.default_memory_mb) == (1024, 256)  # nothing changed

    r = submit(staff, admin_form, page, "labtemplate_form", max_memory_mb=768)
    assert r.status_code == 302
    template.refresh_from_db()
    assert template.max_memory_mb == 768


def test_template_refusal_counts_a_queued_resize_and_speaks_portuguese(staff, admin_form, template, alice_guest, host):
    # 256 MiB now, 900 once its queued resize runs: 512 would leave it over.
    Task.objects.create(kind="mem_set", guest=alice_guest, host=host, args={"memory_mb": 900})
    page = reverse("admin:labs_labtemplate_change", args=[template.pk])
    r = submit(staff, admin_form, page, "labtemplate_form", headers=PT, max_memory_mb=512)
    refused(
        r,
        "max_memory_mb",
        "1 VM deste modelo tem mais memória do que 512 MiB (net101-alice tem 900 MiB):"
        " diminua a memória dela antes, ou escolha pelo menos 900 MiB.",
    )
    template.refresh_from_db()
    assert template.max_memory_mb == 1024
    assert submit(staff, admin_form, page, "labtemplate_form", max_memory_mb=900).status_code == 302


def test_template_maximum_under_a_live_labs_memory_per_vm_is_refused(staff, admin_form, template, lab):
    """No VMs yet, but the lab's next ones would get 256 MiB, which the template would then refuse."""
    Lab.objects.create(name="Old", slug="old", template=template, pool=lab.pool, memory_mb=1024, status="torn_down")
    page = reverse("admin:labs_labtemplate_change", args=[template.pk])
    r = submit(staff, admin_form, page, "labtemplate_form", max_memory_mb=128, default_memory_mb=64)
    refused(
        r,
        "max_memory_mb",
        "128 MiB is less than the memory per VM of lab Networks 101 (256 MiB), which its new VMs get."
        " Choose at least 256 MiB.",
    )
    # The torn-down lab's 1024 MiB binds nothing: it makes no new VMs.
    assert submit(staff, admin_form, page, "labtemplate_form", max_memory_mb=256).status_code == 302
    template.refresh_from_db()
    assert template.max_memory_mb == 256


def test_template_without_vms_takes_any_value_its_validators_allow(staff, admin_form, template):
    page = reverse("admin:labs_labtemplate_change", args=[template.pk])
    r = submit(staff, admin_form, page, "labtemplate_form", max_memory_mb=15, default_memory_mb=15)
    assert r.status_code == 200 and "max_memory_mb" in r.context["adminform"].form.errors  # MinValueValidator(16)
    r = submit(staff, admin_form, page, "labtemplate_form", max_memory_mb=16, default_memory_mb=16)
    assert r.status_code == 302
    template.refresh_from_db()
    assert template.max_memory_mb == 16


def test_a_template_already_over_still_saves_its_other_fields(staff, admin_form, template, alice_guest):
    """A row over its limit from before this check: editing another field is not refused for it."""
    sized(alice_guest, 2048)
    page = reverse("admin:labs_labtemplate_change", args=[template.pk])
    assert submit(staff, admin_form, page, "labtemplate_form", vcpus=2).status_code == 302
    assert LabTemplate.objects.get(pk=template.pk).vcpus == 2


# -- the lab's maximum memory per VM ------------------------------------------------------------


def test_lab_maximum_under_its_vms_is_refused_and_exactly_the_largest_saves(
    staff, admin_form, lab, alice_guest, bob_guest
):
    sized(alice_guest, 640)
    sized(bob_guest, 512)
    page = reverse("admin:labs_lab_change", args=[lab.pk])
    r = submit(staff, admin_form, page, "lab_form", max_guest_memory_mb=384)
    refused(
        r,
        "max_guest_memory_mb",
        "2 VMs of this lab have more memory than 384 MiB (the largest, net101-alice, has 640 MiB):"
        " lower their memory first, or choose at least 640 MiB.",
    )
    lab.refresh_from_db()
    assert lab.max_guest_memory_mb == 1024

    assert submit(staff, admin_form, page, "lab_form", max_guest_memory_mb=640).status_code == 302
    lab.refresh_from_db()
    assert lab.max_guest_memory_mb == 640


def test_the_labs_change_form_keeps_its_other_fields(staff, admin_form, lab, alice_guest):
    """The limit's form once named only the limit, and the admin then showed no other field of the lab."""
    page = reverse("admin:labs_lab_change", args=[lab.pk])
    assert submit(staff, admin_form, page, "lab_form", name="Networks 102", memory_mb=128).status_code == 302
    lab.refresh_from_db()
    assert (lab.name, lab.memory_mb) == ("Networks 102", 128)
    # The per-VM size as typed is the other bound of the limit on the same form.
    r = submit(staff, admin_form, page, "lab_form", max_guest_memory_mb=300, memory_mb=512)
    refused(
        r,
        "max_guest_memory_mb",
        "300 MiB is less than the lab's memory per VM (512 MiB), which its new VMs get. Choose at least 512 MiB.",
    )


def test_lab_without_vms_takes_any_value_its_validators_allow(staff, admin_form, lab):
    page = reverse("admin:labs_lab_change", args=[lab.pk])
    # The lab's memory per VM is the other bound; lowered with it, 16 MiB is the field's minimum.
    r = submit(staff, admin_form, page, "lab_form", max_guest_memory_mb=16, memory_mb=16)
    assert r.status_code == 302
    lab.refresh_from_db()
    assert (lab.max_guest_memory_mb, lab.memory_mb) == (16, 16)


# -- the student's quota (maximum total memory, and on every form the number of VMs too) --------


@pytest.fixture
def alice_holds_768(alice, lab, alice_guest, host, pool, template):
    """alice: net101-alice with 256 MiB and sys-alice with 512 MiB, and a quota row of 2048 MiB."""
    other_lab = Lab.objects.create(name="Systems", slug="sys", template=template, pool=pool, memory_mb=256)
    sized(make_guest(other_lab, alice, host, 3), 512)
    return StudentQuota.objects.create(user=alice, max_guests=5, max_memory_mb=2048)


ALICE_OVER_700 = (
    "alice's 2 VMs hold 768 MiB in all, more than 700 MiB (the largest, sys-alice, has 512 MiB):"
    " make them smaller or delete some first, or choose at least 768 MiB."
)
ALICE_HOLDS_2 = "alice holds 2 VMs: lower it to 2 at the least, or delete VMs first."


def test_quota_under_the_students_vms_is_refused_and_exactly_their_total_saves(staff, admin_form, alice_holds_768):
    quota = alice_holds_768
    page = reverse("admin:labs_studentquota_change", args=[quota.pk])
    refused(submit(staff, admin_form, page, "studentquota_form", max_memory_mb=700), "max_memory_mb", ALICE_OVER_700)
    quota.refresh_from_db()
    assert quota.max_memory_mb == 2048

    assert submit(staff, admin_form, page, "studentquota_form", max_memory_mb=768).status_code == 302
    quota.refresh_from_db()
    assert quota.max_memory_mb == 768


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("max_memory_mb", 700, ALICE_OVER_700), ("max_guests", 1, ALICE_HOLDS_2)],
    ids=["memory", "vms"],
)
def test_quota_is_refused_on_the_user_page_the_list_and_the_add_form(
    staff, admin_form, alice, alice_holds_768, field, value, message
):
    quota = alice_holds_768
    page = reverse("admin:auth_user_change", args=[alice.pk])
    r = submit(staff, admin_form, page, "user_form", **{f"quota-0-{field}": value})
    refused(r, field, message, formset=True)

    listing = reverse("admin:labs_studentquota_changelist")
    r = submit(staff, admin_form, listing, "changelist-form", **{f"form-0-{field}": value, "_save": "Save"})
    assert r.status_code == 200 and escape(message) in r.content.decode()
    quota.refresh_from_db()
    assert (quota.max_guests, quota.max_memory_mb) == (5, 2048)

    # A new row for a student who has none yet: the user chosen on the form is the one checked.
    quota.delete()
    add = reverse("admin:labs_studentquota_add")
    values = {"max_guests": 5, "max_memory_mb": 2048, field: value}
    r = submit(staff, admin_form, add, "studentquota_form", user=alice.pk, **values)
    refused(r, field, message)
    assert not StudentQuota.objects.filter(user=alice).exists()


def test_quota_of_one_vm_says_it_in_the_singular(staff, admin_form, alice, alice_guest):
    quota = StudentQuota.objects.create(user=alice, max_guests=5, max_memory_mb=2048)
    page = reverse("admin:labs_studentquota_change", args=[quota.pk])
    refused(
        submit(staff, admin_form, page, "studentquota_form", max_memory_mb=128),
        "max_memory_mb",
        "alice's 1 VM holds 256 MiB, more than 128 MiB (net101-alice has 256 MiB):"
        " make it smaller or delete it first, or choose at least 256 MiB.",
    )


@pytest.mark.parametrize("field", ["max_memory_mb", "max_guests"])
def test_quota_without_vms_takes_any_value_its_validators_allow(staff, admin_form, bob, field):
    quota = StudentQuota.objects.create(user=bob, max_guests=2, max_memory_mb=2048)
    page = reverse("admin:labs_studentquota_change", args=[quota.pk])
    assert submit(staff, admin_form, page, "studentquota_form", **{field: 0}).status_code == 302
    quota.refresh_from_db()
    assert getattr(quota, field) == 0


# -- the student's quota's number of VMs (over all labs) ----------------------------------------


def test_quota_guests_under_the_students_vms_is_refused_and_exactly_their_count_saves(
    staff, admin_form, alice_holds_768
):
    quota = alice_holds_768
    page = reverse("admin:labs_studentquota_change", args=[quota.pk])
    refused(submit(staff, admin_form, page, "studentquota_form", max_guests=1), "max_guests", ALICE_HOLDS_2)
    # Both limits lowered at once: each field names its own refusal.
    r = submit(staff, admin_form, page, "studentquota_form", max_guests=0, max_memory_mb=700)
    refused(r, "max_guests", ALICE_HOLDS_2)
    refused(r, "max_memory_mb", ALICE_OVER_700)
    quota.refresh_from_db()
    assert (quota.max_guests, quota.max_memory_mb) == (5, 2048)  # nothing changed

    assert submit(staff, admin_form, page, "studentquota_form", max_guests=2).status_code == 302
    quota.refresh_from_db()
    assert quota.max_guests == 2


def test_quota_guests_count_every_vm_as_a_batch_does_and_speak_portuguese(staff, admin_form, alice, alice_guest):
    """A VM being torn down still counts, as in the batch's quota check (quotas.usage_for)."""
    Guest.objects.filter(pk=alice_guest.pk).update(status=Guest.Status.TEARING_DOWN)
    quota = StudentQuota.objects.create(user=alice, max_guests=5, max_memory_mb=2048)
    page = reverse("admin:labs_studentquota_change", args=[quota.pk])
    refused(
        submit(staff, admin_form, page, "studentquota_form", max_guests=0),
        "max_guests",
        "alice holds 1 VM: lower it to 1 at the least, or delete it first.",
    )
    refused(
        submit(staff, admin_form, page, "studentquota_form", headers=PT, max_guests=0),
        "max_guests",
        "alice tem 1 VM: diminua o limite para no mínimo 1, ou apague-a antes.",
    )
    quota.refresh_from_db()
    assert quota.max_guests == 5


def test_a_quota_already_over_its_vms_still_saves_its_other_fields(staff, admin_form, alice_holds_768):
    quota = alice_holds_768
    StudentQuota.objects.filter(pk=quota.pk).update(max_guests=1)
    page = reverse("admin:labs_studentquota_change", args=[quota.pk])
    assert submit(staff, admin_form, page, "studentquota_form", max_save_points=7).status_code == 302
    quota.refresh_from_db()
    assert (quota.max_guests, quota.max_save_points) == (1, 7)
