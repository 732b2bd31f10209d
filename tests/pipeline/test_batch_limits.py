"""create_lab_batch checks every limit before it writes anything, and names the limit it hit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from labs.models import AuditEvent, Guest, Host, IpPool, Lab, StudentQuota, Task
from labs.services import QuotaExceeded, ServiceError, create_lab_batch

from .helpers import roster

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _sim(sim_dir):
    return sim_dir


def assert_nothing_created(users_before: int) -> None:
    assert Lab.objects.count() == 0
    assert Guest.objects.count() == 0
    assert Task.objects.count() == 0
    assert AuditEvent.objects.count() == 0
    assert User.objects.count() == users_before


def refuse(exc_type, *args, **kwargs) -> ServiceError:
    users = User.objects.count()
    with pytest.raises(exc_type) as info:
        create_lab_batch(*args, **kwargs)
    assert_nothing_created(users)
    return info.value


def test_admin_edited_student_quota_limits_guests(ivy, alice, host, template, pool):
    StudentQuota.objects.create(user=alice, max_guests=0, max_memory_mb=4096)
    err = refuse(QuotaExceeded, ivy, template, pool, roster("newbie", "alice"), memory_mb=256)
    assert "alice" in err.message and "maximum guests" in err.message and "limit is 0" in err.message


def test_default_guest_quota_counts_guests_in_other_labs(ivy, alice, host, template, pool, settings):
    settings.XENPANEL_DEFAULT_MAX_GUESTS = 1
    create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=256, slug="first")
    with pytest.raises(QuotaExceeded) as info:
        create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=256, slug="second")
    assert "alice" in info.value.message and "maximum guests" in info.value.message
    assert list(Lab.objects.values_list("slug", flat=True)) == ["first"]


def test_student_memory_quota(ivy, bob, host, template, pool):
    StudentQuota.objects.create(user=bob, max_guests=5, max_memory_mb=300)
    err = refuse(QuotaExceeded, ivy, template, pool, roster("bob"), memory_mb=512)
    assert "bob" in err.message and "maximum total memory" in err.message and "300 MiB" in err.message


def test_template_and_lab_memory_limits(ivy, host, template, pool, settings):
    err = refuse(QuotaExceeded, ivy, template, pool, roster("newbie"), memory_mb=2048)
    assert "template's maximum memory (1024 MiB)" in err.message and err.field == "memory_mb"

    settings.XENPANEL_DEFAULT_LAB_MAX_GUEST_MEMORY_MB = 512
    err = refuse(QuotaExceeded, ivy, template, pool, roster("newbie"), memory_mb=768)
    assert "lab's maximum memory per guest (512 MiB)" in err.message

    err = refuse(QuotaExceeded, ivy, template, pool, roster("newbie"), memory_mb=8)
    assert "at least 32 MiB" in err.message


def test_pool_without_enough_free_addresses(ivy, host, template):
    tiny = IpPool.objects.create(
        name="tiny",
        network="10.20.0.0/29",
        gateway="10.20.0.1",
        first_ip="10.20.0.1",
        last_ip="10.20.0.6",
        reserved="10.20.0.5",
    )
    # .2 .3 .4 .6 are usable: four addresses for five students.
    err = refuse(ServiceError, ivy, template, tiny, roster("s1", "s2", "s3", "s4", "s5"), memory_mb=64)
    assert "tiny has 4 free address(es); the batch needs 5" in err.message and err.field == "pool"


def test_host_memory_capacity(ivy, host, template, pool):
    # 16384 MiB - 1024 reserve = 15360 MiB: fifteen 1024 MiB guests fit, sixteen do not.
    err = refuse(QuotaExceeded, ivy, template, pool, roster(*(f"s{i}" for i in range(16))), memory_mb=1024)
    assert "Not enough host capacity" in err.message and "dom0-a: " in err.message
    assert create_lab_batch(ivy, template, pool, roster(*(f"s{i}" for i in range(15))), memory_mb=1024).lab


def test_volume_group_space_when_known(ivy, host, template, pool):
    # Each guest needs 1024 + 128 MiB of volumes.
    Host.objects.filter(pk=host.pk).update(vg_free_mb=2 * 1152 + 100)
    err = refuse(QuotaExceeded, ivy, template, pool, roster("s1", "s2", "s3"), memory_mb=64)
    assert "Not enough host capacity" in err.message


def test_hosts_with_unknown_memory_get_no_guests(ivy, template, pool):
    Host.objects.create(name="fresh", queue_name="fresh", volume_group="vg0")
    err = refuse(ServiceError, ivy, template, pool, roster("s1"), memory_mb=64)
    assert "No host has reported its memory yet" in err.message


def test_disabled_host_refused_when_chosen(ivy, host, template, pool):
    Host.objects.filter(pk=host.pk).update(enabled=False)
    err = refuse(ServiceError, ivy, template, pool, roster("s1"), memory_mb=64, hosts=[host])
    assert "does not accept new guests" in err.message
    err = refuse(ServiceError, ivy, template, pool, roster("s1"), memory_mb=64)
    assert "No host accepts new guests" in err.message


def test_only_instructors_create_batches(alice, charlie, host, template, pool):
    err = refuse(ServiceError, alice, template, pool, roster("s1"), memory_mb=64)
    assert "Only instructors" in err.message
    assert create_lab_batch(charlie, template, pool, roster("s1"), memory_mb=64).lab.instructors.get() == charlie


def test_bad_slug_names_and_expiry(ivy, host, template, pool):
    err = refuse(ServiceError, ivy, template, pool, roster("s1"), memory_mb=64, slug="Bad Slug;rm")
    assert err.field == "slug"
    err = refuse(ServiceError, ivy, template, pool, roster("a" * 30), memory_mb=64, slug="a-very-long-lab-name")
    assert "too long" in err.message and err.field == "slug"
    # Two dots are the username's fault, not the short name's (issue 15).
    err = refuse(ServiceError, ivy, template, pool, roster("s..t"), memory_mb=64, slug="lab")
    assert err.field == "roster" and "not a valid username" in err.message
    past = timezone.now() - timedelta(hours=1)
    err = refuse(ServiceError, ivy, template, pool, roster("s1"), memory_mb=64, expires_at=past)
    assert err.field == "expires_at"


def test_usernames_are_checked_even_without_parse_roster(ivy, host, template, pool):
    err = refuse(ServiceError, ivy, template, pool, roster("bad;name"), memory_mb=64)
    assert "not a valid username" in err.message
    err = refuse(ServiceError, ivy, template, pool, roster("dup", "dup"), memory_mb=64)
    assert "twice" in err.message


def test_slug_in_use_by_a_live_lab(ivy, host, template, pool):
    create_lab_batch(ivy, template, pool, roster("s1"), memory_mb=64, slug="taken")
    with pytest.raises(ServiceError) as info:
        create_lab_batch(ivy, template, pool, roster("s2"), memory_mb=64, slug="taken")
    assert "in use" in info.value.message and info.value.field == "slug"
    assert Lab.objects.count() == 1 and Guest.objects.count() == 1


def test_default_name_and_slug(ivy, host, template, pool):
    lab = create_lab_batch(ivy, template, pool, roster("s1"), memory_mb=64).lab
    assert lab.name.startswith("debian-12 ") and lab.slug.startswith("debian-12")
    again = create_lab_batch(ivy, template, pool, roster("s2"), memory_mb=64).lab
    assert again.slug != lab.slug
