"""Save points through real RQ workers on the simulated dom0: take, return, delete, quotas, capacity, labs.

The guest's "work" is a file its student writes inside the VM (the simulated host's guest_edits_file):
a save point keeps it, a return brings it back after it was deleted, and the VM keeps its IP and MAC.
"""

from __future__ import annotations

import pytest

from labs.dom0.simulated import SimulatedHost
from labs.jobs.connect import host_config
from labs.models import AuditEvent, Guest, Host, LabTemplate, SavePoint, StudentQuota, Task
from labs.services import InvalidAction, QuotaExceeded, capacity, create_lab_batch, guest_action, save_points
from labs.services.registry import steps_total

from .helpers import roster, work

pytestmark = pytest.mark.django_db(transaction=True)

WORK = "/root/exercise3.txt"


def done(task: Task) -> Task:
    work(task.host.queue_name)
    task.refresh_from_db()
    assert task.status == "succeeded", task.log
    return task


def take(actor, guest: Guest, label: str = "before exercise 3") -> SavePoint:
    task = done(save_points.take(actor, guest, label))
    return SavePoint.objects.get(pk=task.args["save_point"])


def files(sim: SimulatedHost, volume: str) -> dict[str, str]:
    return sim.volumes()[volume]["files"]


@pytest.fixture
def thin_guest(ivy, alice, host, template, pool, sim_dir) -> Guest:
    """alice's running guest on a thin-pool host whose template is a thin snapshot of a golden LV."""
    host.thin_pool = "pool0"
    host.save(update_fields=["thin_pool"])
    sim = SimulatedHost(host_config(host))
    golden = sim.create_volume("golden", 1024)
    sim.clone_template("/modelo", golden.path, "ext4", "mkfs")
    template.golden_volume, template.clone_method, template.swap_size_mb = "golden", LabTemplate.CloneMethod.THIN, 0
    template.save()
    create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=256, slug="thin")
    work(host.queue_name)
    guest = Guest.objects.select_related("lab__template", "host", "student").get(domain_name="thin-alice")
    assert guest.status == "ready" and guest.observed_state in ("r", "b"), guest.last_error
    return guest


def test_copy_save_point_and_return_on_a_plain_lvm_host(running_guest, alice, sim):
    g = running_guest
    sim.guest_edits_file(g.root_lv, WORK, "my answer\n")
    sim.clear_history()
    point = take(alice, g)

    assert (point.label, point.method, point.status, point.size_mb) == ("before exercise 3", "copy", "ready", 1024)
    assert point.volume == f"vm-net-alice.sp{point.pk}" and not point.lab_wide
    assert files(sim, point.volume)[WORK] == "my answer\n"
    assert not sim.volumes()[point.volume].get("thin")
    # A running guest is paused for the copy, so it is of one instant, and runs on afterwards.
    verbs = [argv[:2] for argv in sim.history if argv[0] == "dd" or argv[:2] in (["xl", "pause"], ["xl", "unpause"])]
    assert verbs == [["xl", "pause"], ["dd", f"if=/dev/vg0/{g.root_lv}"], ["xl", "unpause"]], verbs
    g.refresh_from_db()
    assert g.observed_state in ("r", "b")
    # The copy takes its size from the VG, and the host's report says so.
    assert Host.objects.get(pk=g.host_id).vg_free_mb == sim.volume_group().free_bytes >> 20
    event = AuditEvent.objects.get(action="savepoint")
    assert (event.actor, event.result, event.target) == (alice, "succeeded", g.domain_name)

    ip, mac, root = g.ip, g.mac, sim.volume_serial(g.root_lv)
    sim.guest_edits_file(g.root_lv, WORK, None)
    task = done(save_points.return_to(alice, point))

    assert (task.steps_done, task.steps_total) == (4, 4) == (4, steps_total("savepoint_return"))
    g.refresh_from_db()
    assert files(sim, g.root_lv)[WORK] == "my answer\n"  # the work is back
    assert sim.volume_serial(g.root_lv) != root  # a fresh clone, not the old disk
    assert (g.ip, g.mac, g.observed_state in ("r", "b"), g.desired_state) == (ip, mac, True, "running")
    assert mac in sim.configs()[g.domain_name]["text"] and g.root_lv in sim.configs()[g.domain_name]["text"]
    # The save point stays, to return to again.
    assert SavePoint.objects.get(pk=point.pk).status == "ready" and point.volume in sim.volumes()


def test_thin_save_point_is_a_snapshot_and_the_return_a_snapshot_of_it(thin_guest, alice, host):
    g, sim = thin_guest, SimulatedHost(host_config(host))
    free = sim.volume_group().free_bytes
    sim.guest_edits_file(g.root_lv, WORK, "thin work\n")
    point = take(alice, g)

    assert point.method == "thin"
    assert sim.volumes()[point.volume]["thin"] and sim.volumes()[point.volume]["origin"] == g.root_lv
    assert sim.volume_group().free_bytes == free  # nothing from the VG
    assert ["lvcreate", "-y", "-s", "-kn", "-ay", "-K", "-n", point.volume, f"vg0/{g.root_lv}"] in sim.history

    sim.guest_edits_file(g.root_lv, WORK, None)
    done(save_points.return_to(alice, point))
    assert sim.volumes()[g.root_lv]["origin"] == point.volume
    assert files(sim, g.root_lv)[WORK] == "thin work\n"
    g.refresh_from_db()
    assert g.observed_state in ("r", "b")


def test_a_stopped_guest_is_copied_without_a_pause_and_comes_back_running(running_guest, alice, sim):
    g = running_guest
    done(guest_action(alice, g, "shutdown"))
    sim.clear_history()
    point = take(alice, g)
    assert not [a for a in sim.history if a[:2] == ["xl", "pause"]]
    done(save_points.return_to(alice, point))
    g.refresh_from_db()
    assert g.observed_state in ("r", "b") and g.desired_state == "running"


def test_save_points_survive_a_reset_and_go_with_the_teardown(running_guest, alice, ivy, sim):
    g = running_guest
    sim.guest_edits_file(g.root_lv, WORK, "kept\n")
    point = take(alice, g)
    done(guest_action(alice, g, "reset"))
    assert WORK not in files(sim, g.root_lv)  # the template again
    assert files(sim, point.volume)[WORK] == "kept\n"
    done(save_points.return_to(alice, point))
    assert files(sim, g.root_lv)[WORK] == "kept\n"

    done(guest_action(ivy, g, "teardown"))
    assert point.volume not in sim.volumes() and not SavePoint.objects.exists()


def test_delete_removes_the_volume_and_frees_the_quota(running_guest, alice, sim):
    g = running_guest
    points = [take(alice, g, f"step {n}") for n in range(3)]
    with pytest.raises(QuotaExceeded) as refused:
        save_points.take(alice, g, "one too many")
    assert refused.value.message == (
        "alice already has 3 save point(s); the limit is 3. Delete one first (or ask an administrator for a larger"
        " quota)."
    )
    assert SavePoint.objects.count() == 3 and Guest.objects.get(pk=g.pk).busy_with == ""

    done(save_points.delete(alice, points[0]))
    assert points[0].volume not in sim.volumes() and not SavePoint.objects.filter(pk=points[0].pk).exists()
    take(alice, g, "one more")


def test_the_quota_is_set_per_student_and_counts_all_their_vms(running_guest, alice, sim):
    StudentQuota.objects.create(user=alice, max_save_points=1)
    take(alice, running_guest)
    with pytest.raises(QuotaExceeded, match="the limit is 1"):
        save_points.take(alice, running_guest, "second")
    StudentQuota.objects.filter(user=alice).update(max_save_points=0)
    assert save_points.quota_for(alice) == 0


def test_labels_are_checked(running_guest, alice):
    for bad, words in (
        ("   ", "Give the save point a label"),
        ("x" * 65, "at most 64 characters"),
        ("ex\x003", "cannot hold control characters"),
    ):
        with pytest.raises(InvalidAction, match=words):
            save_points.take(alice, running_guest, bad)
    assert not SavePoint.objects.exists() and not Task.objects.filter(kind="savepoint").exists()


def test_only_the_guests_users_act_on_its_save_points(running_guest, alice, bob, charlie, sim):
    point = take(alice, running_guest)
    for stranger in (bob, charlie):
        with pytest.raises(InvalidAction, match="You may not act on this VM"):
            save_points.take(stranger, running_guest, "mine now")
        with pytest.raises(InvalidAction):
            save_points.return_to(stranger, point)
        with pytest.raises(InvalidAction):
            save_points.delete(stranger, point)
    assert SavePoint.objects.count() == 1 and Task.objects.filter(kind__startswith="savepoint").count() == 1


def test_the_plain_action_path_asks_for_the_form(running_guest, alice, ivy, lab):
    with pytest.raises(InvalidAction, match="use the form on the VM's page"):
        guest_action(alice, running_guest, "savepoint")
    from labs.services import lab_action

    with pytest.raises(InvalidAction, match="use the form on the lab's page"):
        lab_action(ivy, running_guest.lab, "savepoint_all")
    assert not Task.objects.filter(kind__startswith="savepoint").exists()


def test_a_copy_needs_room_in_the_volume_group_and_counts_while_it_is_made(running_guest, alice, host, sim):
    Host.objects.filter(pk=host.pk).update(vg_free_mb=1500)
    g = Guest.objects.select_related("lab__template", "host", "student").get(pk=running_guest.pk)
    task = save_points.take(alice, g, "first")
    # Not made yet, but promised: placement and the next save point see 1024 MiB fewer.
    assert capacity.disk_free_mb(Host.objects.get(pk=host.pk)) == 1500 - 1024
    g = Guest.objects.select_related("lab__template", "host", "student").get(pk=g.pk)
    Guest.objects.filter(pk=g.pk).update(busy_with="")  # as if the first were done, to ask again
    g.refresh_from_db()
    with pytest.raises(QuotaExceeded, match="full copy of its 1024 MiB disk, and host dom0-a has 476 MiB free"):
        save_points.take(alice, g, "second")
    Guest.objects.filter(pk=g.pk).update(busy_with="savepoint")
    done(task)


def test_a_failed_save_point_leaves_nothing(running_guest, alice, sim):
    sim.inject("copy_volume", error="dd: error writing '/dev/vg0/x': No space left on device", times=1)
    task = save_points.take(alice, running_guest, "doomed")
    work(running_guest.host.queue_name)
    task.refresh_from_db()
    assert task.status == "failed" and "No space left on device" in task.error
    assert not SavePoint.objects.exists()
    assert not [v for v in sim.volumes() if ".sp" in v]
    g = Guest.objects.get(pk=running_guest.pk)
    assert g.busy_with == "" and g.observed_state in ("r", "b")  # resumed after the failed copy


def test_an_instructor_saves_and_returns_the_whole_lab(running_guest, alice, bob, ivy, sim):
    lab = running_guest.lab
    StudentQuota.objects.create(user=alice, max_save_points=0)  # the lab's save points count in no quota
    guests = list(lab.guests.order_by("domain_name"))
    for g in guests:
        sim.guest_edits_file(g.root_lv, WORK, f"{g.student.username}'s start\n")
    outcome = save_points.take_for_lab(ivy, lab, "start of class")
    assert len(outcome.tasks) == 2 and outcome.refused == []
    work(running_guest.host.queue_name)
    assert save_points.lab_labels(lab) == ["start of class"]
    points = save_points.lab_points(lab, "start of class")
    assert [p.guest.student.username for p in points] == ["alice", "bob"] and all(p.lab_wide for p in points)

    # A student may not delete the class's save point; the instructor may.
    with pytest.raises(InvalidAction, match="Only the lab's instructors"):
        save_points.delete(alice, points[0])

    for g in guests:
        sim.guest_edits_file(g.root_lv, WORK, None)
    outcome = save_points.return_lab(ivy, lab, "start of class")
    assert len(outcome.tasks) == 2
    work(running_guest.host.queue_name)
    for g in guests:
        g.refresh_from_db()
        assert files(sim, g.root_lv)[WORK] == f"{g.student.username}'s start\n"
        assert g.observed_state in ("r", "b")
    # One student's VM alone: through its own page's return, as its instructor.
    sim.guest_edits_file(guests[0].root_lv, WORK, None)
    done(save_points.return_to(ivy, points[0]))
    assert files(sim, guests[0].root_lv)[WORK] == "alice's start\n"


def test_strangers_cannot_act_on_a_lab(running_guest, charlie, alice):
    for who in (charlie, alice):
        with pytest.raises(InvalidAction, match="You may not manage this lab"):
            save_points.take_for_lab(who, running_guest.lab, "x")
        with pytest.raises(InvalidAction, match="You may not manage this lab"):
            save_points.return_lab(who, running_guest.lab, "x")


def test_a_guest_that_will_not_shut_down_or_is_paused_is_destroyed_for_the_return(running_guest, alice, sim):
    g = running_guest
    point = take(alice, g)
    sim.inject("shutdown", "timeout", times=1)
    task = done(save_points.return_to(alice, point))
    assert "did not shut down" in task.log and f"xl destroy {g.domain_name}" in task.log
    done(guest_action(alice, g, "pause"))
    task = done(save_points.return_to(alice, point))
    assert f"xl destroy {g.domain_name}" in task.log and "xl shutdown" not in task.log
    g.refresh_from_db()
    assert g.observed_state in ("r", "b")
