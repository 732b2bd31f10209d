"""A lab's save points through the JSON API, their jobs run by a real RQ worker on the simulated dom0.

The routes are thin over labs.services.save_points (take_for_lab, lab_labels, lab_points, return_lab) and
labs.access, as the lab page: these follow what an instructor's script sees, the VMs' disks (a file each
student wrote), and refusals that leave nothing queued.
"""

from __future__ import annotations

import pytest

from labs.models import AuditEvent, Guest, Lab, SavePoint, Task
from labs.services import save_points

from .helpers import Script, finished, work

pytestmark = pytest.mark.django_db(transaction=True)

WORK = "/root/exercise3.txt"
LABEL = "start of class"


def base(lab: Lab) -> str:
    return f"/api/v1/labs/{lab.pk}/save-points"


def nothing_queued_since(count: int) -> None:
    assert Task.objects.count() == count
    assert Guest.objects.filter(busy_with="").count() == Guest.objects.count()


def taken_for_the_lab(lab: Lab, instructor) -> None:
    outcome = save_points.take_for_lab(instructor, lab, LABEL)
    work(lab.guests.first().host.queue_name)
    assert len(outcome.tasks) == 2 and SavePoint.objects.filter(status="ready").count() == 2


def test_an_instructor_takes_lists_and_returns_the_whole_lab(client, running_guest, ivy, admin_user, sim):
    lab, teacher = running_guest.lab, Script(client, ivy)
    guests = list(lab.guests.select_related("student").order_by("student__username"))
    assert teacher.get(base(lab)).json() == {"count": 0, "items": []}
    for g in guests:
        sim.guest_edits_file(g.root_lv, WORK, f"{g.student.username}'s start\n")

    r = teacher.post(base(lab), {"label": "  start   of class "})
    assert r.status_code == 202, r.content
    body = r.json()
    assert (body["label"], body["refused"], body["lab"]["id"]) == (LABEL, [], lab.pk)
    assert sorted((t["kind"], t["guest"]) for t in body["tasks"]) == [("savepoint", g.pk) for g in guests]
    for task in body["tasks"]:
        finished(teacher, task)

    listed = teacher.get(base(lab)).json()
    assert (listed["count"], [i["label"] for i in listed["items"]]) == (1, [LABEL])
    held = listed["items"][0]
    assert held["count"] == 2
    assert [(v["guest"], v["student"], v["name"]) for v in held["vms"]] == [
        (g.pk, g.student.username, g.domain_name) for g in guests
    ]
    for vm in held["vms"]:
        point = vm["save_point"]
        assert (point["label"], point["status"], point["lab_wide"], point["deletable"]) == (LABEL, "ready", True, True)
        assert teacher.get(point["url"]).json() == point  # the per-guest route shows the same save point
    # An admin sees the same list.
    assert Script(client, admin_user).get(base(lab)).json() == listed

    # The work is lost in every VM; the return brings each its own back, and they run again.
    for g in guests:
        sim.guest_edits_file(g.root_lv, WORK, None)
    r = teacher.post(f"{base(lab)}/return", {"label": LABEL, "confirm": True})
    assert r.status_code == 202, r.content
    body = r.json()
    assert (body["label"], body["refused"]) == (LABEL, [])
    assert sorted((t["kind"], t["guest"]) for t in body["tasks"]) == [("savepoint_return", g.pk) for g in guests]
    for task in body["tasks"]:
        finished(teacher, task)
    for g in guests:
        g.refresh_from_db()
        assert (g.status, g.busy_with, g.observed_state in ("r", "b")) == ("ready", "", True)
        assert sim.volumes()[g.root_lv]["files"][WORK] == f"{g.student.username}'s start\n"
    assert teacher.get(base(lab)).json() == listed  # the save points stay, to return to again
    done = AuditEvent.objects.filter(actor=ivy, result="succeeded").values_list("action", "guest")
    assert {("savepoint", g.pk) for g in guests} | {("savepoint_return", g.pk) for g in guests} <= set(done)


def test_a_vm_refused_is_named_and_the_others_go_on(client, running_guest, ivy, bob, sim):
    lab, teacher = running_guest.lab, Script(client, ivy)
    bobs = Guest.objects.get(lab=lab, student=bob)
    Guest.objects.filter(pk=bobs.pk).update(busy_with="reboot")
    r = teacher.post(base(lab), {"label": LABEL})
    assert r.status_code == 202, r.content
    body = r.json()
    assert [t["guest"] for t in body["tasks"]] == [running_guest.pk]
    [refusal] = body["refused"]
    assert (refusal["guest"], refusal["student"], refusal["name"]) == (bobs.pk, "bob", bobs.domain_name)
    assert "busy" in refusal["detail"]
    assert list(SavePoint.objects.values_list("guest", flat=True)) == [running_guest.pk]
    refused = AuditEvent.objects.filter(action="savepoint", result="refused")
    assert list(refused.values_list("guest", "message")) == [(bobs.pk, refusal["detail"])]

    # The return reaches the VMs holding the label: bob's has none, so alice's alone.
    finished(teacher, body["tasks"][0])
    Guest.objects.filter(pk=bobs.pk).update(busy_with="")
    listed = teacher.get(base(lab)).json()
    assert [v["student"] for v in listed["items"][0]["vms"]] == ["alice"]
    r = teacher.post(f"{base(lab)}/return", {"label": LABEL, "confirm": True})
    assert r.status_code == 202, r.content
    assert [(t["kind"], t["guest"]) for t in r.json()["tasks"]] == [("savepoint_return", running_guest.pk)]


def test_students_and_strangers_get_404_and_nothing_changes(client, running_guest, ivy, alice, bob, charlie, sim):
    lab = running_guest.lab
    taken_for_the_lab(lab, ivy)
    points, tasks = list(SavePoint.objects.values_list("pk", "status")), Task.objects.count()
    for who in (alice, bob, charlie):  # the lab's students; an instructor of another lab
        them = Script(client, who)
        answers = [
            them.get(base(lab)),
            them.post(base(lab), {"label": "theirs"}),
            them.post(f"{base(lab)}/return", {"label": LABEL, "confirm": True}),
            them.post(f"{base(lab)}/return", {"label": LABEL}),
        ]
        assert [a.status_code for a in answers] == [404] * 4, (who.username, answers)
        assert not any(LABEL in a.content.decode() for a in answers)
    nothing_queued_since(tasks)
    assert list(SavePoint.objects.values_list("pk", "status")) == points
    assert not AuditEvent.objects.filter(result="refused").exists()


def test_the_return_needs_confirm_true(client, running_guest, ivy, sim):
    lab, teacher = running_guest.lab, Script(client, ivy)
    taken_for_the_lab(lab, ivy)
    tasks = Task.objects.count()
    for body in ({"label": LABEL}, {"label": LABEL, "confirm": False}):
        r = teacher.post(f"{base(lab)}/return", body)
        assert r.status_code == 400, (body, r.content)
        detail = r.json()["detail"]
        assert detail.startswith("Nothing was done: send confirm: true. Returning to the save point shuts the VM")
        assert detail.endswith("I understand that the disks of 2 VMs will be replaced by their save point.")
    nothing_queued_since(tasks)
    assert set(SavePoint.objects.values_list("status", flat=True)) == {"ready"}
    refused = AuditEvent.objects.filter(result="refused")
    assert (
        list(refused.values_list("action", "actor", "lab", "guest", "message"))
        == [("savepoint_return_all", ivy.pk, lab.pk, None, detail)] * 2
    )


@pytest.mark.parametrize(
    "route, body, status, words",
    [
        ("", {"label": ""}, 400, "Give the save point a label"),
        ("", {"label": " \t\n "}, 400, "Give the save point a label"),
        ("", {"label": "x" * 65}, 400, "at most 64 characters"),
        ("", {"label": "before\x00exercise"}, 400, "cannot hold control characters"),
        ("", {"label": "\x1b[31mred"}, 400, "cannot hold control characters"),
        ("", {"label": 3}, 422, "label"),
        ("", {}, 422, "label"),
        ("/return", {"label": "no such", "confirm": True}, 400, "The lab has no save point “no such”."),
        ("/return", {"label": "", "confirm": True}, 400, "Give the save point a label"),
        ("/return", {"label": LABEL + "\x00", "confirm": True}, 400, "cannot hold control characters"),
        ("/return", {"label": "x" * 65, "confirm": True}, 400, "at most 64 characters"),
        ("/return", {"confirm": True}, 422, "label"),
        ("/return", {"label": LABEL, "confirm": "maybe"}, 422, "confirm"),
    ],
)
def test_a_bad_label_is_refused_and_changes_nothing(client, running_guest, ivy, sim, route, body, status, words):
    lab = running_guest.lab
    taken_for_the_lab(lab, ivy)
    points, tasks = list(SavePoint.objects.values_list("pk", "label", "status")), Task.objects.count()
    r = Script(client, ivy).post(base(lab) + route, body)
    assert r.status_code == status, r.content
    # A 400 is the service's sentence; a 422 is ninja's, naming the field.
    assert words in (r.json()["detail"] if status == 400 else r.content.decode())
    nothing_queued_since(tasks)
    assert list(SavePoint.objects.values_list("pk", "label", "status")) == points


def test_a_lab_being_deleted_takes_no_save_point(client, running_guest, ivy, sim):
    lab = running_guest.lab
    Lab.objects.filter(pk=lab.pk).update(status=Lab.Status.TEARING_DOWN)
    tasks = Task.objects.count()
    r = Script(client, ivy).post(base(lab), {"label": LABEL})
    assert r.status_code == 409 and "being deleted" in r.json()["detail"], r.content
    nothing_queued_since(tasks)
    assert not SavePoint.objects.exists()
