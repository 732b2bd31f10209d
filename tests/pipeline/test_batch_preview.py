"""The batch preview (issue 15): computed by the code that creates, reserving nothing; "Create" makes exactly it,
or says what changed; every student over a quota is named at once; short names are cut at word boundaries."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from labs.models import AuditEvent, Guest, Lab, StudentQuota, Task
from labs.roster import RosterEntry
from labs.services import PreviewChanged, QuotaExceeded, create_lab_batch, ipam, preview_lab_batch
from labs.services.batch import _default_slug

from .helpers import roster

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _sim(sim_dir):
    return sim_dir


def _nothing_written(users_before: int) -> None:
    assert not Lab.objects.exists() and not Guest.objects.exists() and not Task.objects.exists()
    assert not AuditEvent.objects.exists() and User.objects.count() == users_before


def test_preview_shows_every_vm_and_reserves_nothing(ivy, alice, host, template, pool):
    users = User.objects.count()
    p = preview_lab_batch(ivy, template, pool, roster("alice", "ana"), 256, name="Redes de Computadores")
    _nothing_written(users)
    assert p.slug == "redes-de"  # cut at a word boundary, not "redes-de-computa"
    assert [(r.username, r.domain, r.hostname, r.host, r.memory_mb) for r in p.rows] == [
        ("alice", "redes-de-alice", "redes-de-alice", "dom0-a", 256),
        ("ana", "redes-de-ana", "redes-de-ana", "dom0-a", 256),
    ]
    # The addresses are the ones the IPAM would allocate now (the same function), and stay free.
    assert [r.ip for r in p.rows] == ipam.allocate_ips(pool, 2) == ["10.10.0.2", "10.10.0.3"]
    assert [r.existing for r in p.rows] == [True, False] and [r.username for r in p.existing] == ["alice"]
    assert (p.rows[1].usage_after.guests, p.rows[1].quota.max_guests) == (1, 2)
    assert p.total_memory_mb == 512 and p.pool_free == 253
    assert [(h.name, h.guests, h.memory_mb) for h in p.hosts] == [("dom0-a", 2, 512)]

    result = create_lab_batch(
        ivy, template, pool, roster("alice", "ana"), 256, name="Redes de Computadores", confirm_preview=p.token
    )
    made = sorted((g.student.username, g.domain_name, g.hostname, g.ip, g.host.name) for g in result.guests)
    assert made == [(r.username, r.domain, r.hostname, r.ip, r.host) for r in p.rows]
    assert [u.username for u in result.enrolled] == ["alice"]


def test_a_race_is_explained_and_nothing_created(ivy, host, template, pool):
    p = preview_lab_batch(ivy, template, pool, roster("ana", "beto"), 256, slug="net")
    # Another batch takes the first addresses in between.
    create_lab_batch(ivy, template, pool, roster("zed"), 256, slug="other")
    User.objects.create_user("beto")
    with pytest.raises(PreviewChanged) as info:
        create_lab_batch(ivy, template, pool, roster("ana", "beto"), 256, slug="net", confirm_preview=p.token)
    assert not Lab.objects.filter(slug="net").exists()
    changes = info.value.changes
    assert "ana: address 10.10.0.2 → 10.10.0.3." in changes
    assert "beto: an account with this username now exists, and will be enrolled." in changes
    # The new preview, confirmed, is created as shown.
    again = info.value.preview
    result = create_lab_batch(ivy, template, pool, roster("ana", "beto"), 256, slug="net", confirm_preview=again.token)
    assert sorted(g.ip for g in result.guests) == [r.ip for r in again.rows]


def test_a_changed_request_is_named(ivy, host, template, pool):
    p = preview_lab_batch(ivy, template, pool, roster("ana", "beto"), 256, slug="net")
    with pytest.raises(PreviewChanged) as info:
        create_lab_batch(ivy, template, pool, roster("ana", "carla"), 512, slug="net", confirm_preview=p.token)
    assert info.value.changes[:3] == [
        "The lab's settings changed (name, short name, template, pool, memory or expiry).",
        "Added to the roster: carla.",
        "No longer on the roster: beto.",
    ]
    with pytest.raises(PreviewChanged, match="not what its preview showed"):
        create_lab_batch(ivy, template, pool, roster("ana"), 256, slug="net", confirm_preview="forged")
    assert not Lab.objects.exists()


def test_an_edited_short_name_is_checked_again(ivy, host, template, pool):
    create_lab_batch(ivy, template, pool, roster("zed"), 256, slug="taken")
    with pytest.raises(Exception, match="in use by another lab"):
        preview_lab_batch(ivy, template, pool, roster("ana"), 256, slug="taken")
    with pytest.raises(Exception, match="short name"):
        preview_lab_batch(ivy, template, pool, roster("ana"), 256, slug="Bad;Name")


def test_a_roster_name_for_an_existing_account_is_shown_as_kept(ivy, alice, host, template, pool):
    entries = [RosterEntry(1, "alice", "Alicia Someone", ""), RosterEntry(2, "ana", "Ana", "")]
    p = preview_lab_batch(ivy, template, pool, entries, 256, slug="net")
    assert [(r.username, r.kept_name) for r in p.rows] == [("alice", "Alice"), ("ana", None)]
    create_lab_batch(ivy, template, pool, entries, 256, slug="net", confirm_preview=p.token)
    assert User.objects.get(username="alice").get_full_name() == "Alice"


def test_every_student_over_a_quota_is_named_at_once(ivy, alice, bob, host, template, pool):
    StudentQuota.objects.create(user=alice, max_guests=0, max_memory_mb=4096)
    StudentQuota.objects.create(user=bob, max_guests=5, max_memory_mb=100)
    users = User.objects.count()
    for call in (preview_lab_batch, create_lab_batch):
        with pytest.raises(QuotaExceeded) as info:
            call(ivy, template, pool, roster("alice", "ana", "bob"), 256, slug="net")
        message = info.value.message
        assert message.startswith("2 students would go over their quotas; nothing was created:")
        assert "alice already has 0 guest(s)" in message and "bob would use 256 MiB" in message
        assert "ana" not in message  # her default quota holds the VM
    _nothing_written(users)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Redes de Computadores", "redes-de"),
        ("Sistemas Operacionais 2024", "sistemas"),
        ("Supercalifragilisticexpialidocious", "supercalifragili"),
        ("2024 Redes", "lab-2024-redes"),
        ("!!!", "lab"),
        ("SO", "so"),
    ],
)
def test_default_short_names_are_cut_at_word_boundaries(db, name, slug):
    assert _default_slug(name) == slug
