"""Placement counts what queued and running jobs have promised, so batches queued back to back (or at the same
moment) never over-commit a host's memory or disk, while its worker pool builds several guests at once and
reports the VG's free space from each job."""

from __future__ import annotations

import pytest

from labs.models import Guest, Host, Task
from labs.services import QuotaExceeded, create_lab_batch
from labs.services.upkeep import enqueue_health_check

from .helpers import finish_worker, roster, start_pool, work
from .test_concurrency import submit_together

pytestmark = pytest.mark.django_db(transaction=True)
GUEST_DISK_MB = 1024 + 128  # the template's root and swap volumes
GUEST_MB = 256


def leave_disk_for(host, sim, guests: int) -> None:
    """Fill the simulated VG so that `guests` guests fit, with 40 MiB to spare, and let the worker report it."""
    sim.create_volume("filler", sim.volume_group().free_bytes // 2**20 - guests * GUEST_DISK_MB - 40)
    enqueue_health_check(host)
    work(host.queue_name)
    assert Host.objects.get(pk=host.pk).vg_free_mb == guests * GUEST_DISK_MB + 40


def leave_memory_for(host, guests: int) -> None:
    Host.objects.filter(pk=host.pk).update(total_memory_mb=host.dom0_reserve_mb + guests * GUEST_MB + 10)


def batch(ivy, template, pool, slug: str, n: int):
    return create_lab_batch(ivy, template, pool, roster(*(f"{slug}{i}" for i in range(n))), GUEST_MB, slug=slug)


def build_all(host, sim_dir) -> None:
    """Every queued job, run by the host's worker pool (two at a time) with real step delays."""
    assert Host.objects.get(pk=host.pk).jobs_at_a_time == 2
    finish_worker(start_pool(sim_dir, host.queue_name, delay=0.2), timeout=120)


def test_back_to_back_batches_cannot_over_commit_disk(ivy, host, template, pool, sim, sim_dir):
    leave_disk_for(host, sim, 3)
    first = batch(ivy, template, pool, "one", 2).lab  # queued, not built: its volumes are not in vg_free_mb yet
    with pytest.raises(QuotaExceeded) as refused:
        batch(ivy, template, pool, "two", 2)
    assert f"need {GUEST_DISK_MB} MiB of disk each" in refused.value.message
    third = batch(ivy, template, pool, "three", 1).lab  # what is left fits
    build_all(host, sim_dir)
    for lab in (first, third):
        assert set(lab.guests.values_list("status", flat=True)) == {"ready"}
    assert not Task.objects.exclude(status="succeeded").exists()
    # The last report is the VG as it is, after both jobs that ran at once reported theirs.
    assert Host.objects.get(pk=host.pk).vg_free_mb == 40 == sim.volume_group().free_bytes // 2**20
    with pytest.raises(QuotaExceeded):
        batch(ivy, template, pool, "four", 1)


def test_back_to_back_batches_cannot_over_commit_memory(ivy, host, template, pool, sim, sim_dir):
    leave_memory_for(host, 3)
    first = batch(ivy, template, pool, "one", 2).lab
    with pytest.raises(QuotaExceeded) as refused:
        batch(ivy, template, pool, "two", 2)
    assert f"2 guest(s) of {GUEST_MB} MiB do not fit" in refused.value.message
    assert f"{host.name}: {GUEST_MB + 10} MiB" in refused.value.message  # what the queued batch left
    third = batch(ivy, template, pool, "three", 1).lab
    build_all(host, sim_dir)
    for lab in (first, third):
        assert set(lab.guests.values_list("status", flat=True)) == {"ready"}
    with pytest.raises(QuotaExceeded):
        batch(ivy, template, pool, "four", 1)


@pytest.mark.parametrize("short", ["disk", "memory"])
def test_two_batches_at_the_same_moment_cannot_over_commit(short, ivy, charlie, host, template, pool, sim, sim_dir):
    if short == "disk":
        leave_disk_for(host, sim, 3)
    else:
        leave_memory_for(host, 3)
    results = submit_together(
        lambda: batch(ivy, template, pool, "a", 2),
        lambda: batch(charlie, template, pool, "b", 2),
    )
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], QuotaExceeded), results
    assert Guest.objects.count() == 2
    build_all(host, sim_dir)
    assert set(Guest.objects.values_list("status", flat=True)) == {"ready"}


def test_a_batch_that_does_not_fit_is_refused_at_every_moment_of_the_one_being_built(
    ivy, host, template, pool, sim, sim_dir
):
    """While two jobs at a time build a batch and each reports the VG, its guests count once, never zero times."""
    leave_disk_for(host, sim, 4)
    first = batch(ivy, template, pool, "one", 3).lab
    worker = start_pool(sim_dir, host.queue_name, delay=0.2)
    tries = 0
    while worker.poll() is None or tries == 0:
        tries += 1
        with pytest.raises(QuotaExceeded):
            batch(ivy, template, pool, f"x{tries}", 2)
    finish_worker(worker)
    assert tries > 5
    assert set(first.guests.values_list("status", flat=True)) == {"ready"}
    assert Guest.objects.count() == 3
    batch(ivy, template, pool, "last", 1)  # the fourth still fits


def test_a_return_to_a_save_point_holds_its_root_until_it_ends(ivy, host, template, pool, sim, sim_dir):
    """Its job removes the root and clones a new one; a sibling job may report the VG in between."""
    from labs.services.capacity import disk_free_mb

    leave_disk_for(host, sim, 3)
    lab = batch(ivy, template, pool, "one", 1).lab
    build_all(host, sim_dir)
    free = disk_free_mb(Host.objects.get(pk=host.pk))
    guest = lab.guests.get()
    task = Task.objects.create(
        kind="savepoint_return", guest=guest, lab=lab, host=host, actor=ivy, target=guest.domain_name
    )
    assert disk_free_mb(Host.objects.get(pk=host.pk)) == free - template.root_size_mb
    Task.objects.filter(pk=task.pk).update(status=Task.Status.RUNNING)
    assert disk_free_mb(Host.objects.get(pk=host.pk)) == free - template.root_size_mb
    Task.objects.filter(pk=task.pk).update(status=Task.Status.SUCCEEDED)
    assert disk_free_mb(Host.objects.get(pk=host.pk)) == free
