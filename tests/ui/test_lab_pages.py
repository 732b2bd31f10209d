"""Instructor pages: labs list, lab page with live progress, lab actions, teardown confirmation."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from labs.models import Guest, Lab, Task
from tests.ui.conftest import messages_of, set_state


def test_labs_list_counts_by_state(client, ivy, lab, alice_guest, bob_guest, host):
    set_state(alice_guest, "r")
    set_state(bob_guest, "", status=Guest.Status.FAILED)
    client.force_login(ivy)
    r = client.get(reverse("lab_list"))
    row = r.context["rows"][0]
    assert row["lab"] == lab
    assert row["hosts"] == [host.name]
    assert (row["progress"]["running"], row["progress"]["failed"], row["progress"]["total"]) == (1, 1, 2)
    body = r.content.decode()
    assert lab.name in body and lab.template.name in body


def test_labs_list_shows_only_own_labs(client, charlie, lab):
    client.force_login(charlie)
    assert lab.name not in client.get(reverse("lab_list")).content.decode()


def test_lab_page_progress_and_table(client, ivy, lab, alice_guest, bob_guest):
    set_state(alice_guest, "r")
    bob_guest.last_error = "lvcreate: volume group vg0 has insufficient free space"
    bob_guest.save()
    set_state(bob_guest, "", status=Guest.Status.FAILED)
    client.force_login(ivy)
    body = client.get(reverse("lab_detail", args=[lab.pk])).content.decode()
    assert "1 of 2 VMs ready" in body
    assert 'aria-valuenow="1"' in body and 'aria-valuemax="2"' in body
    assert "1 failed" in body
    assert "insufficient free space" in body
    assert "net101-alice" in body and "10.10.0.11" in body
    assert 'state-badge">running <span class="xl-letter"' in body and ">(r)</span>" in body
    assert f'hx-get="{reverse("lab_live", args=[lab.pk])}' in body


def test_lab_live_fragment_polls_fast_while_provisioning(client, ivy, lab, alice_guest):
    client.force_login(ivy)
    body = client.get(reverse("lab_live", args=[lab.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert body.lstrip().startswith('<section id="lab-live"')
    assert 'hx-trigger="every 2s [' in body
    assert "0 of 1 VMs ready" in body
    set_state(alice_guest, "r")
    body = client.get(reverse("lab_live", args=[lab.pk])).content.decode()
    assert 'hx-trigger="every 5s [' in body
    assert "1 of 1 VMs ready" in body


def _lab_version(body: str) -> str:
    """The digest in the poll's URL (after the filters, if any)."""
    found = re.search(r'/live/\?[^"]*?\bv=([0-9a-f]+)', body)
    assert found, "the poll carries no digest"
    return found.group(1)


def test_unchanged_lab_poll_gets_204_and_a_change_a_fragment(client, ivy, lab, alice_guest, bob_guest):
    set_state(alice_guest, "r")
    set_state(bob_guest, "r")
    client.force_login(ivy)
    url = reverse("lab_live", args=[lab.pk])
    version = _lab_version(client.get(reverse("lab_detail", args=[lab.pk]), {"state": "running"}).content.decode())
    assert version
    r = client.get(url, {"state": "running", "v": version})
    assert r.status_code == 204 and r.content == b""
    # Another filter is another set of rows: the digest differs.
    assert client.get(url, {"state": "stopped", "v": version}).status_code == 200
    # Someone else stopped bob's VM: the table changes, and so does the digest in the new fragment.
    set_state(bob_guest, "")
    r = client.get(url, {"v": version})
    body = r.content.decode()
    assert r.status_code == 200 and "1 of 2" not in body
    assert _lab_version(body) != version
    # The digest stays out of the fragment's own links and forms.
    assert body.count("v=") == 1
    assert client.get(url, {"v": _lab_version(body)}).status_code == 204


@pytest.fixture
def big_lab(lab, host):
    users = User.objects.bulk_create([User(username=f"s{n:03d}", first_name=f"Student{n}") for n in range(300)])
    Guest.objects.bulk_create(
        [
            Guest(
                lab=lab,
                student=user,
                host=host,
                pool=lab.pool,
                domain_name=f"{lab.slug}-{user.username}",
                hostname=f"{lab.slug}-{user.username}",
                ip=f"10.10.{1 + n // 200}.{n % 200 + 10}",
                mac=f"00:16:3e:00:{n // 256:02x}:{n % 256:02x}",
                root_lv=f"vm-{lab.slug}-{user.username}.raiz",
                memory_mb=256,
            )
            for n, user in enumerate(users)
        ]
    )
    return lab


def test_300_students_are_paginated_and_filterable(client, ivy, big_lab, django_assert_max_num_queries):
    client.force_login(ivy)
    with django_assert_max_num_queries(15):
        r = client.get(reverse("lab_detail", args=[big_lab.pk]))
    assert len(r.context["rows"]) == 50
    assert r.context["page"].paginator.num_pages == 6
    assert "Showing 1–50 of 300" in r.content.decode()
    r = client.get(reverse("lab_detail", args=[big_lab.pk]), {"page": 6})
    assert [row["guest"].student.username for row in r.context["rows"]][-1] == "s299"
    r = client.get(reverse("lab_detail", args=[big_lab.pk]), {"q": "s12"})
    assert {row["guest"].student.username for row in r.context["rows"]} == {f"s12{n}" for n in range(10)}
    Guest.objects.filter(student__username="s007").update(status=Guest.Status.FAILED)
    r = client.get(reverse("lab_detail", args=[big_lab.pk]), {"state": "failed"})
    assert [row["guest"].student.username for row in r.context["rows"]] == ["s007"]
    # The live fragment keeps the filter.
    assert "state=failed" in r.content.decode()


def test_retry_failed_queues_only_failed_guests(client, ivy, lab, alice_guest, bob_guest):
    set_state(alice_guest, "r")
    set_state(bob_guest, "", status=Guest.Status.FAILED)
    client.force_login(ivy)
    r = client.post(reverse("lab_action", args=[lab.pk, "retry_failed"]))
    assert r["Location"] == reverse("lab_detail", args=[lab.pk])
    assert list(Task.objects.values_list("guest__student__username", "kind")) == [("bob", "provision")]
    assert any("1 jobs queued" in m for m in messages_of(r))


def test_retry_with_nothing_failed_says_so(client, ivy, lab, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(ivy)
    r = client.post(reverse("lab_action", args=[lab.pk, "retry_failed"]))
    assert any("nothing to do" in m for m in messages_of(r))
    assert not Task.objects.exists()


def test_teardown_confirmation_names_what_is_destroyed(client, ivy, lab, alice_guest, bob_guest):
    client.force_login(ivy)
    body = client.get(reverse("lab_confirm_teardown", args=[lab.pk])).content.decode()
    assert "This destroys 2 VMs" in body
    for g in (alice_guest, bob_guest):
        assert g.domain_name in body and g.root_lv in body and g.swap_lv in body
    assert "dom0-a" in body


def test_teardown_without_confirmation_changes_nothing(client, ivy, lab, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(ivy)
    r = client.post(reverse("lab_action", args=[lab.pk, "teardown"]))
    assert r["Location"] == reverse("lab_confirm_teardown", args=[lab.pk])
    lab.refresh_from_db()
    assert lab.status == Lab.Status.ACTIVE
    assert not Task.objects.exists()


def test_teardown_with_confirmation(client, ivy, lab, alice_guest, bob_guest):
    set_state(alice_guest, "r")
    set_state(bob_guest, "")
    client.force_login(ivy)
    client.post(reverse("lab_action", args=[lab.pk, "teardown"]), {"confirm": "on"})
    lab.refresh_from_db()
    assert lab.status == Lab.Status.TEARING_DOWN
    assert Task.objects.filter(kind="teardown").count() == 2


def test_other_instructor_cannot_act_on_the_lab(client, charlie, lab, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(charlie)
    assert client.post(reverse("lab_action", args=[lab.pk, "teardown"]), {"confirm": "on"}).status_code == 404
    lab.refresh_from_db()
    assert lab.status == Lab.Status.ACTIVE


def test_quick_action_returns_to_the_filtered_page(client, ivy, lab, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(ivy)
    page = client.get(reverse("lab_detail", args=[lab.pk]), {"state": "running"}).content.decode()
    back = reverse("lab_detail", args=[lab.pk]) + "?state=running"
    assert f'name="next" value="{back}"' in page
    r = client.post(reverse("guest_action", args=[alice_guest.pk, "reboot"]), {"next": back})
    assert r["Location"] == back
