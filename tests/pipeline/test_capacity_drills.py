"""Capacity is what the host has now, not what its last health check saw: the worker reports the VG after
every volume change, so a batch right after another is refused the space it took, and one right after a
teardown gets the space it freed."""

from __future__ import annotations

import pytest

from labs.models import Guest, Host
from labs.services import QuotaExceeded, create_lab_batch, lab_action
from labs.services.upkeep import enqueue_health_check

from .helpers import roster, work

pytestmark = pytest.mark.django_db(transaction=True)
GUEST_MB = 1024 + 128  # the template's root and swap volumes


def test_back_to_back_batches_see_the_space_the_last_one_took_and_freed(ivy, host, template, pool, sim):
    # Leave room for three guests (and a little) in the 200 GiB simulated VG.
    vg = sim.volume_group()
    sim.create_volume("filler", vg.free_bytes // 2**20 - 3 * GUEST_MB - 40)
    enqueue_health_check(host)
    work(host.queue_name)
    assert Host.objects.get(pk=host.pk).vg_free_mb == 3 * GUEST_MB + 40

    first = create_lab_batch(ivy, template, pool, roster("s1", "s2"), memory_mb=64, slug="one").lab
    work(host.queue_name)
    assert set(first.guests.values_list("status", flat=True)) == {"ready"}
    # No health check since: the worker said what is left.
    assert Host.objects.get(pk=host.pk).vg_free_mb == GUEST_MB + 40

    with pytest.raises(QuotaExceeded) as refused:
        create_lab_batch(ivy, template, pool, roster("s3", "s4"), memory_mb=64, slug="two")
    assert f"need {GUEST_MB} MiB of disk each" in refused.value.message
    assert f"{host.name}: {GUEST_MB + 40} MiB" in refused.value.message  # the real free space

    lab_action(ivy, first, "teardown")
    work(host.queue_name)
    assert not Guest.objects.filter(lab=first).exists()
    assert Host.objects.get(pk=host.pk).vg_free_mb == 3 * GUEST_MB + 40
    # What the teardown freed is there at once for the next batch, which then builds without a failure.
    third = create_lab_batch(ivy, template, pool, roster("s5", "s6", "s7"), memory_mb=64, slug="three").lab
    work(host.queue_name)
    assert set(third.guests.values_list("status", flat=True)) == {"ready"}
