"""Save points through the JSON API, their jobs run by a real RQ worker on the simulated dom0.

The routes are thin over labs.services.save_points and labs.access, so these follow what a script sees:
the task to poll, the save point's status, the guest's disk (a file its student wrote), and refusals
that leave nothing queued.
"""

from __future__ import annotations

import pytest

from labs.models import AuditEvent, Guest, SavePoint, StudentQuota, Task
from labs.services import save_points

from .helpers import Script, finished, work

pytestmark = pytest.mark.django_db(transaction=True)

WORK = "/root/exercise3.txt"


def nothing_queued_since(count: int) -> None:
    assert Task.objects.count() == count
    assert Guest.objects.filter(busy_with="").count() == Guest.objects.count()


def test_owner_takes_lists_returns_and_deletes(client, running_guest, alice, sim):
    g, me = running_guest, Script(client, alice)
    base = f"/api/v1/guests/{g.pk}/save-points"
    assert me.get(base).json() == {"count": 0, "held": 0, "quota": 3, "items": []}
    sim.guest_edits_file(g.root_lv, WORK, "my answer\n")

    r = me.post(base, {"label": "  before   exercise 3 "})
    assert r.status_code == 202, r.content
    taken = r.json()
    assert (taken["kind"], taken["status"], taken["guest"]) == ("savepoint", "queued", g.pk)
    new = taken["save_point"]
    assert (new["label"], new["status"], new["method"], new["lab_wide"]) == (
        "before exercise 3",
        "taking",
        "copy",
        False,
    )
    finished(me, taken)

    listed = me.get(base).json()
    assert (listed["count"], listed["held"], listed["quota"]) == (1, 1, 3)
    point = listed["items"][0]
    assert point["id"] == new["id"] and point["url"] == f"{base}/{new['id']}"
    assert (point["status"], point["method"], point["size_mb"], point["deletable"]) == ("ready", "copy", 1024, True)
    assert me.get(point["url"]).json() == point
    volume = SavePoint.objects.get(pk=point["id"]).volume
    assert sim.volumes()[volume]["files"][WORK] == "my answer\n"

    # The work is lost in the VM; the return brings it back and the guest ends up running again.
    sim.guest_edits_file(g.root_lv, WORK, None)
    r = me.post(f"{point['url']}/return", {"confirm": True})
    assert r.status_code == 202, r.content
    assert r.json()["kind"] == "savepoint_return"
    finished(me, r.json())
    g.refresh_from_db()
    assert (g.status, g.busy_with, g.observed_state in ("r", "b")) == ("ready", "", True)
    assert sim.volumes()[g.root_lv]["files"][WORK] == "my answer\n"
    assert me.get(point["url"]).json()["status"] == "ready"  # it stays, to return to again

    r = me.post(f"{point['url']}/delete", {"confirm": True})
    assert r.status_code == 202, r.content
    assert r.json()["kind"] == "savepoint_delete"
    assert me.get(point["url"]).json()["status"] == "deleting"
    finished(me, r.json())
    assert me.get(point["url"]).status_code == 404
    assert me.get(base).json()["count"] == 0 and volume not in sim.volumes()
    kinds = AuditEvent.objects.filter(actor=alice, result="succeeded").values_list("action", flat=True)
    assert {"savepoint", "savepoint_return", "savepoint_delete"} <= set(kinds)


def test_strangers_get_404_on_every_route_and_nothing_changes(client, running_guest, alice, bob, charlie, sim):
    taken = save_points.take(alice, running_guest, "mine")
    work(running_guest.host.queue_name)
    assert Task.objects.get(pk=taken.pk).status == "succeeded"
    sp = SavePoint.objects.get()
    base = f"/api/v1/guests/{running_guest.pk}/save-points"
    tasks = Task.objects.count()
    for stranger in (bob, charlie):  # another student; an instructor of no lab of hers
        them = Script(client, stranger)
        answers = [
            them.get(base).status_code,
            them.post(base, {"label": "theirs"}).status_code,
            them.get(f"{base}/{sp.pk}").status_code,
            them.post(f"{base}/{sp.pk}/return", {"confirm": True}).status_code,
            them.post(f"{base}/{sp.pk}/delete", {"confirm": True}).status_code,
        ]
        assert answers == [404] * 5, (stranger.username, answers)
        assert "mine" not in them.get(base).content.decode()
    nothing_queued_since(tasks)
    assert list(SavePoint.objects.values_list("pk", "status")) == [(sp.pk, "ready")]


def test_a_save_point_of_another_guest_is_404(client, running_guest, alice, bob, sim):
    bobs = Guest.objects.get(lab=running_guest.lab, student=bob)
    save_points.take(bob, bobs, "bob's")
    work(running_guest.host.queue_name)
    sp = SavePoint.objects.get()
    me, tasks = Script(client, alice), Task.objects.count()
    # Her guest's id with bob's save point: not hers to see or touch.
    base = f"/api/v1/guests/{running_guest.pk}/save-points/{sp.pk}"
    assert me.get(base).status_code == 404
    assert me.post(f"{base}/return", {"confirm": True}).status_code == 404
    assert me.post(f"{base}/delete", {"confirm": True}).status_code == 404
    nothing_queued_since(tasks)


def test_the_quota_refusal_is_the_services_message(client, running_guest, alice, sim):
    StudentQuota.objects.create(user=alice, max_save_points=1)
    me = Script(client, alice)
    base = f"/api/v1/guests/{running_guest.pk}/save-points"
    finished(me, me.post(base, {"label": "first"}).json())
    tasks = Task.objects.count()
    r = me.post(base, {"label": "second"})
    assert r.status_code == 409
    assert r.json() == {
        "detail": "alice already has 1 save point(s); the limit is 1. Delete one first (or ask an administrator "
        "for a larger quota)."
    }
    nothing_queued_since(tasks)
    assert list(SavePoint.objects.values_list("label", flat=True)) == ["first"]
    refusals = AuditEvent.objects.filter(action="savepoint", result="refused")
    assert list(refusals.values_list("actor__username", "message")) == [("alice", r.json()["detail"])]


def test_return_and_delete_need_confirm_true(client, running_guest, alice, sim):
    me = Script(client, alice)
    base = f"/api/v1/guests/{running_guest.pk}/save-points"
    finished(me, me.post(base, {"label": "first"}).json())
    url = me.get(base).json()["items"][0]["url"]
    tasks = Task.objects.count()
    for action, words in (("return", "Returning to the save point shuts the VM down"), ("delete", "Deleting the")):
        for body in (None, {}, {"confirm": False}):
            r = me.post(f"{url}/{action}", body)
            assert r.status_code == 400, (action, body, r.content)
            detail = r.json()["detail"]
            assert detail.startswith("Nothing was done: send confirm: true. ") and words in detail
    nothing_queued_since(tasks)
    assert me.get(url).json()["status"] == "ready"
    refused = AuditEvent.objects.filter(result="refused").values_list("action", flat=True)
    assert sorted(refused) == ["savepoint_delete"] * 3 + ["savepoint_return"] * 3


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"label": ""}, 400, "Give the save point a label"),
        ({"label": " \t\n "}, 400, "Give the save point a label"),
        ({"label": "x" * 65}, 400, "at most 64 characters"),
        ({"label": "before\x00exercise"}, 400, "cannot hold control characters"),
        ({"label": "bell\x07"}, 400, "cannot hold control characters"),
        ({"label": "\x1b[31mred"}, 400, "cannot hold control characters"),
        ({"label": 3}, 422, "label"),
        ({}, 422, "label"),
    ],
)
def test_a_bad_label_is_refused_and_changes_nothing(client, running_guest, alice, sim, body, status, words):
    tasks = Task.objects.count()
    r = Script(client, alice).post(f"/api/v1/guests/{running_guest.pk}/save-points", body)
    assert r.status_code == status, r.content
    assert words in r.content.decode()
    nothing_queued_since(tasks)
    assert not SavePoint.objects.exists()


def test_a_label_of_64_characters_and_accents_is_taken(client, running_guest, alice, sim):
    label = "é" * 64
    r = Script(client, alice).post(f"/api/v1/guests/{running_guest.pk}/save-points", {"label": label})
    assert r.status_code == 202, r.content
    assert r.json()["save_point"]["label"] == label


def test_a_lab_wide_save_point_is_the_instructors_to_delete(client, running_guest, alice, ivy, sim):
    save_points.take_for_lab(ivy, running_guest.lab, "start of class")
    work(running_guest.host.queue_name)
    sp = SavePoint.objects.get(guest=running_guest)
    base = f"/api/v1/guests/{running_guest.pk}/save-points"
    me, teacher = Script(client, alice), Script(client, ivy)
    listed = me.get(base).json()
    assert (listed["held"], listed["items"][0]["lab_wide"], listed["items"][0]["deletable"]) == (0, True, False)
    tasks = Task.objects.count()
    # As the page: she may return to it, but its delete route is not hers (404, as for a stranger).
    assert me.post(f"{base}/{sp.pk}/delete", {"confirm": True}).status_code == 404
    nothing_queued_since(tasks)
    assert teacher.get(f"{base}/{sp.pk}").json()["deletable"] is True
    r = teacher.post(f"{base}/{sp.pk}/delete", {"confirm": True})
    assert r.status_code == 202, r.content
    finished(teacher, r.json())
    assert not SavePoint.objects.filter(pk=sp.pk).exists()


def test_a_busy_guest_refuses_a_second_request(client, running_guest, alice, sim):
    me = Script(client, alice)
    base = f"/api/v1/guests/{running_guest.pk}/save-points"
    assert me.post(base, {"label": "first"}).status_code == 202
    tasks = Task.objects.count()
    r = me.post(base, {"label": "second"})
    assert r.status_code == 409 and "busy" in r.json()["detail"]
    assert Task.objects.count() == tasks and SavePoint.objects.count() == 1


def test_the_plain_action_route_points_to_the_save_point_routes(client, running_guest, alice, sim):
    me = Script(client, alice)
    detail = me.get(f"/api/v1/guests/{running_guest.pk}").json()
    urls = {a["name"]: a["url"] for a in detail["actions"]}
    base = f"/api/v1/guests/{running_guest.pk}/save-points"
    assert urls["savepoint"] == urls["savepoint_return"] == urls["savepoint_delete"] == base
    tasks = Task.objects.count()
    for action in ("savepoint", "savepoint_return", "savepoint_delete"):
        r = me.post(f"/api/v1/guests/{running_guest.pk}/actions/{action}", {"confirm": True})
        assert r.status_code == 400 and base in r.json()["detail"], (action, r.content)
    assert Task.objects.count() == tasks
