"""Save point pages: the guest page's card, taking one, the confirmation pages, the lab's card and pages."""

from __future__ import annotations

from django.urls import reverse

from labs.models import SavePoint, StudentQuota, Task
from tests.ui.conftest import messages_of, set_state


def _point(guest, label="before exercise 3", **kw) -> SavePoint:
    fields = {"volume": f"vm-{guest.domain_name}.sp{SavePoint.objects.count() + 1}", "method": "copy", "size_mb": 1024}
    return SavePoint.objects.create(guest=guest, label=label, status="ready", **{**fields, **kw})


def test_the_guest_page_offers_a_save_point_and_lists_them(client, alice, running_guest):
    _point(running_guest, lab_wide=True, label="start of class")
    _point(running_guest)
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[running_guest.pk])).content.decode()
    assert 'id="save-points"' in body and 'name="label"' in body
    assert "A save point keeps a full copy of this VM's disk (1024 MiB)" in body
    assert "You hold 1 of your 3 save points." in body  # the lab's does not count
    assert "before exercise 3" in body and "full copy, 1024 MiB" in body and "for the whole lab" in body
    point = SavePoint.objects.get(label="before exercise 3")
    assert reverse("save_point_return", args=[running_guest.pk, point.pk]) in body
    assert reverse("save_point_delete", args=[running_guest.pk, point.pk]) in body
    # The student may not delete the lab's save point: no link to it.
    lab_point = SavePoint.objects.get(label="start of class")
    assert reverse("save_point_delete", args=[running_guest.pk, lab_point.pk]) not in body


def test_taking_one_queues_its_job_and_says_so(client, alice, running_guest):
    client.force_login(alice)
    r = client.post(reverse("save_point_take", args=[running_guest.pk]), {"label": "  before   exercise 3 "})
    assert r["Location"] == reverse("guest_detail", args=[running_guest.pk])
    task = Task.objects.get()
    point = SavePoint.objects.get()
    assert (task.kind, task.args, point.label, point.status) == (
        "savepoint",
        {"save_point": point.pk, "label": "before exercise 3"},
        "before exercise 3",
        "taking",
    )
    assert messages_of(r) == [
        "Save point “before exercise 3” requested for net101-alice. This page shows it when the job finishes."
    ]


def test_a_refusal_is_a_clear_message_and_changes_nothing(client, alice, running_guest):
    StudentQuota.objects.create(user=alice, max_save_points=1)
    _point(running_guest)
    client.force_login(alice)
    r = client.post(reverse("save_point_take", args=[running_guest.pk]), {"label": "second"})
    assert messages_of(r) == [
        "No save point was taken: alice already has 1 save point(s); the limit is 1. Delete one first (or ask an"
        " administrator for a larger quota)."
    ]
    r = client.post(reverse("save_point_take", args=[running_guest.pk]), {"label": ""})
    assert "Give the save point a label" in messages_of(r)[-1]
    assert SavePoint.objects.count() == 1 and not Task.objects.exists()


def test_return_asks_first_then_queues(client, alice, running_guest):
    point = _point(running_guest)
    url = reverse("save_point_return", args=[running_guest.pk, point.pk])
    client.force_login(alice)
    body = client.get(url).content.decode()
    assert "Return to this save point “before exercise 3”: net101-alice?" in body
    assert "replaces its disk with a fresh copy of the save point" in body and 'name="confirm"' in body
    r = client.post(url)
    assert r["Location"] == url and not Task.objects.exists()
    assert messages_of(r) == ["Nothing was done: tick the confirmation box first."]
    r = client.post(url, {"confirm": "on"})
    assert r["Location"] == reverse("guest_detail", args=[running_guest.pk])
    task = Task.objects.get()
    assert (task.kind, task.args["save_point"], task.steps_total) == ("savepoint_return", point.pk, 4)


def test_a_save_point_of_another_guest_is_a_404(client, alice, bob, running_guest, bob_guest):
    theirs = _point(bob_guest)
    client.force_login(alice)
    # Through alice's own guest's URL too: the save point must be the guest's.
    assert client.get(reverse("save_point_return", args=[running_guest.pk, theirs.pk])).status_code == 404
    assert client.post(reverse("save_point_delete", args=[running_guest.pk, theirs.pk])).status_code == 404
    assert client.get(reverse("save_point_return", args=[bob_guest.pk, theirs.pk])).status_code == 404
    assert not Task.objects.exists()


def test_delete_asks_first_then_queues(client, alice, running_guest):
    point = _point(running_guest)
    url = reverse("save_point_delete", args=[running_guest.pk, point.pk])
    client.force_login(alice)
    assert "removes its copy of the disk" in client.get(url).content.decode()
    client.post(url, {"confirm": "on"})
    point.refresh_from_db()
    assert point.status == "deleting" and Task.objects.get().kind == "savepoint_delete"


def test_the_lab_page_takes_and_returns_the_whole_lab(client, ivy, running_guest, bob_guest):
    set_state(bob_guest, "")
    client.force_login(ivy)
    lab = running_guest.lab
    body = client.get(reverse("lab_detail", args=[lab.pk])).content.decode()
    assert 'id="lab-save-points"' in body and "Take a save point of every VM" in body
    r = client.post(reverse("lab_save_point_take", args=[lab.pk]), {"label": "start of class"})
    assert messages_of(r) == ["Take a save point of every VM: 2 jobs queued."]
    assert set(SavePoint.objects.values_list("lab_wide", "label")) == {(True, "start of class")}
    SavePoint.objects.update(status="ready")
    from labs.models import Guest

    Guest.objects.update(busy_with="")
    body = client.get(reverse("lab_detail", args=[lab.pk])).content.decode()
    assert "<option>start of class</option>" in body
    url = reverse("lab_save_point_return", args=[lab.pk])
    body = client.get(url, {"label": "start of class"}).content.decode()
    assert "net101-alice" in body and "net101-bob" in body
    assert "I understand that the disks of 2 VMs will be replaced by their save point." in body
    r = client.post(url, {"label": "start of class"})
    assert "Nothing was done" in messages_of(r)[-1]
    r = client.post(url, {"label": "start of class", "confirm": "on"})
    assert messages_of(r)[-1] == "Return every VM to a save point: 2 jobs queued."
    assert Task.objects.filter(kind="savepoint_return").count() == 2
    r = client.get(url, {"label": "no such"})
    assert messages_of(r)[-1] == "The lab has no save point “no such”."


def test_the_host_page_counts_save_points_and_their_copies(client, ivy, running_guest, host):
    _point(running_guest)
    _point(running_guest, method="thin")
    client.force_login(ivy)
    body = client.get(reverse("host_detail", args=[host.pk])).content.decode()
    expected = "2, of which full copies take 1024 MiB of the volume group"
    assert f'<dd class="col-7" id="host-save-points">{expected}</dd>' in body
