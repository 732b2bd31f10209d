"""What the JSON API takes and gives: request bodies and the JSON of guests, tasks, save points and labs.

The `*_json` functions turn rows into the dicts the response schemas check;
they read only what the routes in `labs.api` already loaded or looked up.
"""

from __future__ import annotations

from datetime import datetime

from django.urls import reverse
from ninja import Field, Schema

from labs.access import Role
from labs.models import Guest, Lab, SavePoint, Task
from labs.services.explain import for_viewer
from labs.services.registry import GUEST_ACTIONS
from labs.services.save_points import LabOutcome
from labs.templatetags.xenpanel import state_word


class Error(Schema):
    detail: str


class LineError(Schema):
    line: int | None = Field(None, description="the roster's line, for a roster problem")
    field: str
    message: str


class Errors(Schema):
    detail: str
    errors: list[LineError]


class ExistingAccount(Schema):
    username: str
    full_name: str


class AccountsToConfirm(Schema):
    detail: str
    accounts: list[ExistingAccount]
    confirm_existing: str = Field(description="send the batch again with this value to enrol exactly these accounts")


class ActionIn(Schema):
    confirm: bool = Field(False, description="required true for destructive actions (their `confirm` text says why)")
    memory_mb: int | None = Field(None, description="the new size, for mem_set")


class ConfirmIn(Schema):
    confirm: bool = False


class SavePointIn(Schema):
    label: str = Field(description="what it keeps, e.g. “before exercise 3” (at most 64 characters)")


class LabReturnIn(Schema):
    label: str = Field(description="the lab's save point to return to, as GET /labs/{id}/save-points lists it")
    confirm: bool = Field(False, description="required true: every VM holding it loses what changed since")


class LabIn(Schema):
    template: int | str = Field(description="the template's id or name")
    pool: int | str = Field(description="the IP pool's id or name")
    memory_mb: int
    roster: str = Field(description="one student per line: username, full name, e-mail (as the batch form)")
    name: str = ""
    slug: str = ""
    host: int | str | None = Field(None, description="a host's id or name; none: spread over the enabled hosts")
    expires_at: datetime | None = None
    confirm_existing: str = ""


class TaskOut(Schema):
    id: int
    kind: str
    status: str
    step: str
    steps_done: int
    steps_total: int
    error: str
    log: str
    target: str
    guest: int | None
    lab: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str


class ActionOut(Schema):
    name: str
    label: str
    allowed: bool = Field(description="whether the guest's state allows it now")
    confirm: str | None = Field(description="what it destroys, for the actions that need confirm: true")
    url: str


class GuestOut(Schema):
    id: int
    name: str
    hostname: str
    ip: str
    memory_mb: int
    status: str
    state: str = Field(description="in words, as the pages show it")
    observed_state: str = Field(description="xl list's letter (r b p s c d), empty without a domain")
    busy_with: str
    lab: int
    lab_name: str
    student: str
    host: str
    url: str


class GuestPage(Schema):
    count: int
    items: list[GuestOut]


class GuestDetail(GuestOut):
    last_error: str
    actions: list[ActionOut]
    latest_task: TaskOut | None


class SavePointOut(Schema):
    id: int
    label: str
    created_at: datetime
    method: str = Field(description="thin (a thin snapshot) or copy (a full copy of the disk)")
    size_mb: int = Field(description="the disk's size; a copy takes it from the host's volume group")
    status: str = Field(description="taking, ready or deleting; only a ready one is returned to or deleted")
    lab_wide: bool = Field(description="taken for the whole lab by an instructor: in no quota, theirs to delete")
    deletable: bool = Field(description="whether you may delete it")
    url: str


class SavePointPage(Schema):
    count: int
    held: int = Field(description="how many save points the guest's student holds over all their VMs")
    quota: int = Field(description="how many they may hold (the lab-wide ones count in neither)")
    items: list[SavePointOut] = Field(description="newest first")


class SavePointTaken(TaskOut):
    save_point: SavePointOut = Field(description="the new save point, taking until the task succeeds")


class LabGuest(Schema):
    id: int
    student: str
    name: str
    status: str
    state: str


class Progress(Schema):
    total: int
    done: int
    failed: int
    pending: int
    provisioning: int
    tearing_down: int
    running: int
    paused: int
    stopped: int
    busy: int
    percent: int
    finished: bool


class LabOut(Schema):
    id: int
    name: str
    slug: str
    status: str
    template: str
    pool: str
    memory_mb: int
    expires_at: datetime | None
    created_at: datetime
    progress: Progress
    guests: list[LabGuest]
    url: str


class NewAccount(Schema):
    username: str
    password: str


class LabCreated(Schema):
    lab: LabOut
    tasks: list[int]
    new_accounts: list[NewAccount] = Field(description="initial passwords, shown this once")
    campus_accounts: list[str] = Field(description="new accounts that sign in with their campus password")
    enrolled: list[str] = Field(description="existing accounts that got a VM")


class LabTasks(Schema):
    lab: LabOut
    tasks: list[TaskOut]


class LabSavePointVm(Schema):
    guest: int
    student: str
    name: str
    save_point: SavePointOut = Field(description="the VM's newest ready save point with this label")


class LabSavePointLabel(Schema):
    label: str
    count: int = Field(description="how many VMs hold it: those a return reaches")
    vms: list[LabSavePointVm] = Field(description="by student")


class LabSavePointPage(Schema):
    count: int
    items: list[LabSavePointLabel] = Field(description="the labels taken for the whole lab, newest first")


class VmRefusal(Schema):
    guest: int
    student: str
    name: str
    detail: str


class LabOutcomeOut(LabTasks):
    label: str
    refused: list[VmRefusal] = Field(description="the VMs left as they were, and why; the others went on")


def task_json(task: Task, sees_raw: bool = True) -> dict:
    """The task; for a student (not `sees_raw`) a failure in words, without the host's raw lines (as the pages)."""
    hidden = {} if sees_raw else {"error": for_viewer(task.error, False), "log": "" if task.error else task.log}
    return {
        **{
            name: getattr(task, name)
            for name in (
                "id",
                "kind",
                "status",
                "step",
                "steps_done",
                "steps_total",
                "error",
                "log",
                "target",
                "created_at",
                "started_at",
                "finished_at",
            )
        },
        **hidden,
        "guest": task.guest_id,
        "lab": task.lab_id,
        "url": reverse("api:task", args=[task.pk]),
    }


def guest_json(guest: Guest) -> dict:
    """A guest loaded with its lab, student and host."""
    return {
        "id": guest.pk,
        "name": guest.domain_name,
        "hostname": guest.hostname,
        "ip": guest.ip,
        "memory_mb": guest.memory_mb,
        "status": guest.status,
        "state": str(state_word(guest)),
        "observed_state": guest.observed_state,
        "busy_with": guest.busy_with,
        "lab": guest.lab_id,
        "lab_name": guest.lab.name,
        "student": guest.student.username,
        "host": guest.host.name,
        "url": reverse("api:guest", args=[guest.pk]),
    }


def guest_detail_json(guest: Guest, role: Role, allowed: set[str], latest: Task | None) -> dict:
    """The guest with the actions the user's role may ask for (the page's buttons, mem_set included)."""
    actions = [
        {
            "name": a.name,
            "label": str(a.label),
            "allowed": a.name in allowed,
            "confirm": str(a.confirm.text) if a.confirm else None,
            # The save point actions ask for a label or a save point: their own routes, listed at the guest's.
            "url": reverse("api:guest_save_points", args=[guest.pk])
            if a.asks
            else reverse("api:guest_action", args=[guest.pk, a.name]),
        }
        for a in GUEST_ACTIONS.values()
        if a.requestable and role >= a.role
    ]
    return {
        **guest_json(guest),
        "last_error": for_viewer(guest.last_error, role >= Role.INSTRUCTOR),
        "actions": actions,
        "latest_task": task_json(latest, role >= Role.INSTRUCTOR) if latest else None,
    }


def save_point_json(point: SavePoint, deletable: bool) -> dict:
    """A save point whose `guest` is loaded; `deletable`: access.may_delete_save_point for the user."""
    return {
        **{name: getattr(point, name) for name in ("id", "label", "created_at", "method", "size_mb", "status")},
        "lab_wide": point.lab_wide,
        "deletable": deletable,
        "url": reverse("api:guest_save_point", args=[point.guest_id, point.pk]),
    }


def lab_json(lab: Lab, progress: dict) -> dict:
    guests = lab.guests.select_related("student", "lab").order_by("student__username", "pk")
    return {
        "id": lab.pk,
        "name": lab.name,
        "slug": lab.slug,
        "status": lab.status,
        "template": lab.template.name,
        "pool": lab.pool.name,
        "memory_mb": lab.memory_mb,
        "expires_at": lab.expires_at,
        "created_at": lab.created_at,
        "progress": progress,
        "guests": [
            {
                "id": g.pk,
                "student": g.student.username,
                "name": g.domain_name,
                "status": g.status,
                "state": str(state_word(g)),
            }
            for g in guests
        ],
        "url": reverse("api:lab", args=[lab.pk]),
    }


def lab_save_points_json(label: str, points: list[tuple[SavePoint, bool]]) -> dict:
    """One label of the lab's (save_points.lab_points, guests and students loaded), each point with `deletable`."""
    return {
        "label": label,
        "count": len(points),
        "vms": [
            {
                "guest": p.guest_id,
                "student": p.guest.student.username,
                "name": p.guest.domain_name,
                "save_point": save_point_json(p, deletable),
            }
            for p, deletable in points
        ],
    }


def lab_outcome_json(lab: Lab, progress: dict, label: str, outcome: LabOutcome) -> dict:
    """What a lab-wide request queued (each VM's task) and which VMs it left, and why."""
    return {
        "lab": lab_json(lab, progress),
        "tasks": [task_json(t) for t in outcome.tasks],
        "label": label,
        "refused": [
            {
                "guest": r.guest.pk,
                "student": r.guest.student.username,
                "name": r.guest.domain_name,
                "detail": r.message,
            }
            for r in outcome.refused
        ],
    }
