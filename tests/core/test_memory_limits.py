"""The guest's memory limits: the same answer however the guest was loaded, in one query from labs.access."""

from __future__ import annotations

from labs.access import GUEST_RELATED
from labs.models import Guest, Host, Lab, StudentQuota, Task
from labs.services import memory_limits
from labs.services.capacity import allocated_mb
from labs.services.limits import guest_memory_sums
from labs.services.quotas import Usage, usage_for
from tests.conftest import make_guest


def _loaded(guest: Guest) -> Guest:
    """The guest as labs.access loads it for its pages."""
    return Guest.objects.select_related(*GUEST_RELATED).get(pk=guest.pk)


def test_loaded_guest_costs_one_query_and_agrees_with_a_plain_one(
    alice, bob, alice_guest, bob_guest, host, template, pool, django_assert_num_queries
):
    other_lab = Lab.objects.create(name="Systems", slug="sys", template=template, pool=pool, memory_mb=256)
    make_guest(other_lab, alice, host, 3)
    elsewhere = Host.objects.create(name="dom0-b", queue_name="dom0-b", volume_group="vg0", total_memory_mb=4096)
    make_guest(other_lab, bob, elsewhere, 4)
    Host.objects.filter(pk=host.pk).update(total_memory_mb=2048, dom0_reserve_mb=1024)
    # Without a quota row (the defaults), then with one: the loaded student knows either way.
    for quota_mb, expected in ((None, 512), (640, 384)):
        if quota_mb is not None:
            StudentQuota.objects.create(user=alice, max_guests=3, max_memory_mb=quota_mb)
        guest = _loaded(alice_guest)
        with django_assert_num_queries(1):  # the aggregate; the quota came with the student
            assert memory_limits(guest) == (32, expected)
        # Loaded without the related rows, the service reads them itself and agrees.
        assert memory_limits(Guest.objects.get(pk=alice_guest.pk)) == (32, expected)


def test_other_guests_exclude_this_one_and_count_every_lab(alice, alice_guest, host, template, pool):
    StudentQuota.objects.create(user=alice, max_guests=5, max_memory_mb=1000)
    assert memory_limits(_loaded(alice_guest)) == (32, 1000)  # her own 256 MiB is not held against her
    other_lab = Lab.objects.create(name="Systems", slug="sys", template=template, pool=pool, memory_mb=256)
    make_guest(other_lab, alice, host, 3)
    assert memory_limits(_loaded(alice_guest)) == (32, 744)


def test_one_guest_sums_agree_with_the_batch_wide_functions(alice, bob, alice_guest, bob_guest, host, template, pool):
    """guest_memory_sums is the guest page's one query for what usage_for and allocated_mb count."""
    other_lab = Lab.objects.create(name="Systems", slug="sys", template=template, pool=pool, memory_mb=256)
    Guest.objects.filter(pk=make_guest(other_lab, alice, host, 3).pk).update(memory_mb=300)
    elsewhere = Host.objects.create(name="dom0-b", queue_name="dom0-b", volume_group="vg0", total_memory_mb=4096)
    Guest.objects.filter(pk=make_guest(other_lab, bob, elsewhere, 4).pk).update(memory_mb=500)
    for guest in (alice_guest, bob_guest):
        guest = _loaded(guest)
        others = usage_for([guest.student], exclude_guest=guest)[guest.student_id].memory_mb
        assert guest_memory_sums(guest) == (others, allocated_mb([guest.host])[guest.host_id])
    # Many students or hosts at once (IN rather than =) count the same rows.
    usage = usage_for([alice, bob])
    assert (usage[alice.pk], usage[bob.pk]) == (Usage(2, 556), Usage(2, 756))
    assert usage_for([alice, bob], exclude_guest=alice_guest)[alice.pk] == Usage(1, 300)
    assert allocated_mb([host, elsewhere]) == {host.pk: 256 + 300 + 256, elsewhere.pk: 500}


def test_a_queued_or_running_resize_counts_its_new_size_in_the_same_one_query(
    alice, bob, alice_guest, bob_guest, host, template, pool, django_assert_num_queries
):
    """Memory a resize not yet done promises is held against the quota and the host (issue 13, part 2)."""
    StudentQuota.objects.create(user=alice, max_guests=5, max_memory_mb=1024)
    other_lab = Lab.objects.create(name="Systems", slug="sys", template=template, pool=pool, memory_mb=256)
    other = make_guest(other_lab, alice, host, 3)
    Host.objects.filter(pk=host.pk).update(total_memory_mb=4096, dom0_reserve_mb=1024)
    Task.objects.create(kind="mem_set", guest=other, host=host, args={"memory_mb": 700}, status=Task.Status.QUEUED)
    # bob's shrink, still running, holds his current size; finished or failed resizes promise nothing.
    Task.objects.create(kind="mem_set", guest=bob_guest, host=host, args={"memory_mb": 64}, status=Task.Status.RUNNING)
    for status in (Task.Status.SUCCEEDED, Task.Status.FAILED):
        Task.objects.create(kind="mem_set", guest=alice_guest, host=host, args={"memory_mb": 1000}, status=status)
    guest = _loaded(alice_guest)
    with django_assert_num_queries(1):
        assert memory_limits(guest) == (32, 1024 - 700)
    assert guest_memory_sums(guest) == (700, 256 + 700 + 256)
    assert usage_for([alice, bob]) == {alice.pk: Usage(2, 956), bob.pk: Usage(1, 256)}
    assert allocated_mb([host]) == {host.pk: 1212}
    # Once the job has run, the row's own size is what counts: the same total.
    Guest.objects.filter(pk=other.pk).update(memory_mb=700)
    Task.objects.filter(guest=other).update(status=Task.Status.SUCCEEDED)
    assert usage_for([alice])[alice.pk] == Usage(2, 956)
