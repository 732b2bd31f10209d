"""Two batches submitted at the same moment on one pool: no address or name is handed out twice."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from labs.models import Guest, IpPool, Lab
from labs.services import ServiceError, create_lab_batch

from .helpers import roster

pytestmark = pytest.mark.django_db(transaction=True)


def submit_together(*calls) -> list:
    """Run each call in its own thread (own database connection), released at the same instant."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except Exception as e:  # collected and checked by the test
            results[i] = e
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_batches_on_one_pool_get_distinct_addresses(ivy, charlie, host, template, pool, sim_dir):
    a = roster(*(f"a{i}" for i in range(12)))
    b = roster(*(f"b{i}" for i in range(12)))
    results = submit_together(
        lambda: create_lab_batch(ivy, template, pool, a, memory_mb=64, slug="lab-a"),
        lambda: create_lab_batch(charlie, template, pool, b, memory_mb=64, slug="lab-b"),
    )
    assert all(not isinstance(r, Exception) for r in results), results
    guests = list(Guest.objects.all())
    assert len(guests) == 24
    assert len({g.ip for g in guests}) == 24
    assert len({g.mac for g in guests}) == 24
    assert len({g.domain_name for g in guests}) == 24
    # Lowest free first, across both batches: exactly the 24 lowest usable addresses.
    assert sorted(int(g.ip.split(".")[-1]) for g in guests) == list(range(2, 26))


def test_when_both_do_not_fit_one_fails_cleanly(ivy, charlie, host, template, sim_dir):
    small = IpPool.objects.create(
        name="small", network="10.30.0.0/28", gateway="10.30.0.1", first_ip="10.30.0.2", last_ip="10.30.0.13"
    )
    # 12 addresses; each batch wants 8.
    results = submit_together(
        lambda: create_lab_batch(ivy, template, small, roster(*(f"a{i}" for i in range(8))), memory_mb=64, slug="x"),
        lambda: create_lab_batch(
            charlie, template, small, roster(*(f"b{i}" for i in range(8))), memory_mb=64, slug="y"
        ),
    )
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1 and isinstance(failures[0], ServiceError), results
    assert "has 4 free address(es); the batch needs 8" in failures[0].message
    winner = next(r for r in results if not isinstance(r, Exception))
    assert list(Lab.objects.values_list("pk", flat=True)) == [winner.lab.pk]
    assert Guest.objects.count() == 8 and len(set(Guest.objects.values_list("ip", flat=True))) == 8


def test_same_short_name_at_once(ivy, charlie, host, template, pool, sim_dir):
    results = submit_together(
        lambda: create_lab_batch(ivy, template, pool, roster("a1"), memory_mb=64, slug="same"),
        lambda: create_lab_batch(charlie, template, pool, roster("b1"), memory_mb=64, slug="same"),
    )
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1 and isinstance(failures[0], ServiceError) and failures[0].field == "slug"
    assert Lab.objects.count() == 1 and Guest.objects.count() == 1
