"""Every guest and lab action, defined once.

A row says who may run the action, in which states of the guest, whether it
asks for a confirmation and in what words, the steps its job records, and
its labels (English here, pt_BR in the catalogue). Views, template tags,
services and jobs all read these rows; the job itself is the handler that
`labs.jobs.guest` registers under the same name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from labs.access import Role
from labs.models import Guest, Lab, Xl


class Situation(enum.StrEnum):
    """Where an idle guest stands, as far as actions go (see `situation`)."""

    RUNNING = "running"  # xl r or b
    PAUSED = "paused"
    LEFTOVER = "leftover"  # a dead domain (s, c, d) that blocks `xl create`
    STOPPED = "stopped"  # no domain
    SAVED = "saved"  # no domain: `xl save`d outside class hours, restored by "restore"
    FAILED = "failed"  # its last build failed
    LAB_CLOSING = "lab_closing"  # its lab is being deleted: deleting is all that is left


def situation(guest: Guest) -> Situation | None:
    """The guest's situation; None while a job runs or it is being built or deleted (no action then)."""
    if guest.busy_with or guest.status not in (Guest.Status.READY, Guest.Status.FAILED):
        return None
    if guest.lab.status != Lab.Status.ACTIVE:
        return Situation.LAB_CLOSING
    if guest.status == Guest.Status.FAILED:
        return Situation.FAILED
    state = guest.observed_state
    if state in Xl.RUNS:
        return Situation.RUNNING
    if state == Xl.PAUSED:
        return Situation.PAUSED
    if state in Xl.LEFTOVER:
        return Situation.LEFTOVER
    if guest.desired_state == Guest.Desired.SAVED:
        return Situation.SAVED
    return Situation.STOPPED


@dataclass(frozen=True)
class Confirm:
    """A confirmation page: what the action does, and the box to tick."""

    text: Promise
    checkbox: Promise


@dataclass(frozen=True)
class GuestAction:
    """A kind of job on one guest; `requestable` ones are what users ask for."""

    name: str
    label: Promise  # its button, and messages ("Reboot requested for ...")
    verb: Promise  # "Cannot <verb> alice's VM: ..."
    busy: Promise  # what the guest is doing meanwhile ("rebooting")
    log_name: Promise  # the job log's word for it
    role: Role = Role.STUDENT
    states: frozenset[Situation] = frozenset()
    confirm: Confirm | None = None
    steps: tuple[str, ...] = ()  # the steps its job records, in order; () is one step named after it
    desired: str | None = None  # Guest.desired_state afterwards
    rebuilds: bool = False  # builds the guest from the template (provisioning, then ready)
    breaks_guest: bool = False  # a failure leaves it unusable: failed, and what the job made is removed
    boots: bool = False  # the domain must be up when the job ends
    removes_guest: bool = False  # its success deletes the Guest row (IP and MAC free again)
    button: bool = True  # a button of its own (mem_set has a form instead)
    quick: bool = False  # also a button on each row of the lab page
    requestable: bool = True  # users ask for it; provisioning comes from lab actions only
    # Asks for more than a click (which save point, its label): queued by its own service
    # (labs.services.save_points), which hands guest_action the job's arguments.
    asks: bool = False

    @property
    def job_steps(self) -> tuple[str, ...]:
        return self.steps or (self.name,)


@dataclass(frozen=True)
class LabAction:
    """An action on every guest of a lab it applies to."""

    name: str
    label: Promise
    job: str  # the GuestAction each affected guest gets
    role: Role = Role.INSTRUCTOR
    # A confirmation page first, whose box says this (with the number of VMs as %(n)s).
    confirm: Promise | None = None
    button: bool = True  # a button on the lab page (teardown has its own page)
    asks: bool = False  # asks for more than a click (a save point's label): its own form and service


_ALL = frozenset(Situation) - {Situation.LAB_CLOSING}
# A disk to copy, and none being built: a failed guest may have no root.
_TAKES_SAVE_POINTS = frozenset({Situation.RUNNING, Situation.PAUSED, Situation.STOPPED, Situation.LEFTOVER})

GUEST_ACTIONS: dict[str, GuestAction] = {
    a.name: a
    for a in (
        GuestAction(
            "provision",
            label=_("Provision"),
            verb=_("provision"),
            busy=_("provisioning"),
            log_name=_("provision"),
            role=Role.INSTRUCTOR,
            steps=("volumes", "clone", "customize", "config", "create"),
            rebuilds=True,
            breaks_guest=True,
            boots=True,
            button=False,
            requestable=False,
        ),
        GuestAction(
            "start",
            label=_("Start"),
            verb=_("start"),
            busy=_("starting"),
            log_name=_("start"),
            states=frozenset({Situation.STOPPED}),
            desired=Guest.Desired.RUNNING,
            boots=True,
            quick=True,
        ),
        GuestAction(
            "shutdown",
            label=_("Shut down"),
            verb=_("shut down"),
            busy=_("shutting down"),
            log_name=_("shut down"),
            states=frozenset({Situation.RUNNING}),
            desired=Guest.Desired.STOPPED,
            quick=True,
        ),
        GuestAction(
            "reboot",
            label=_("Reboot"),
            verb=_("reboot"),
            busy=_("rebooting"),
            log_name=_("reboot"),
            states=frozenset({Situation.RUNNING}),
            desired=Guest.Desired.RUNNING,
            quick=True,
        ),
        GuestAction(
            "destroy",
            label=_("Destroy (pull the plug)"),
            verb=_("force off"),
            busy=_("destroying"),
            log_name=_("destroy"),
            states=frozenset({Situation.RUNNING, Situation.PAUSED, Situation.LEFTOVER}),
            confirm=Confirm(
                _(
                    "Destroy stops the VM at once, like pulling the power plug: nothing is saved and the "
                    "filesystem can be left corrupted. Use Shut down when the VM still answers."
                ),
                _("I understand that destroying can corrupt the VM's filesystem."),
            ),
            desired=Guest.Desired.STOPPED,
        ),
        GuestAction(
            "pause",
            label=_("Pause"),
            verb=_("pause"),
            busy=_("pausing"),
            log_name=_("pause"),
            states=frozenset({Situation.RUNNING}),
            desired=Guest.Desired.PAUSED,
        ),
        GuestAction(
            "unpause",
            label=_("Resume"),
            verb=_("unpause"),
            busy=_("resuming"),
            log_name=_("resume"),
            states=frozenset({Situation.PAUSED}),
            desired=Guest.Desired.RUNNING,
        ),
        # Class hours (labs.services.class_hours) save a lab's VMs outside class and restore them before it.
        GuestAction(
            "save",
            label=_("Save (xl save)"),
            verb=_("save"),
            busy=_("saving"),
            log_name=_("save (xl save)"),
            role=Role.INSTRUCTOR,
            states=frozenset({Situation.RUNNING, Situation.PAUSED}),
            desired=Guest.Desired.SAVED,
            requestable=False,
        ),
        GuestAction(
            "restore",
            label=_("Wake"),
            verb=_("wake"),
            busy=_("waking"),
            log_name=_("wake (xl restore)"),
            states=frozenset({Situation.SAVED}),
            desired=Guest.Desired.RUNNING,
            boots=True,
            quick=True,
        ),
        GuestAction(
            "mem_set",
            label=_("Set memory"),
            verb=_("change the memory of"),
            busy=_("changing memory"),
            log_name=_("memory change"),
            states=frozenset({Situation.RUNNING, Situation.PAUSED}),
            button=False,
        ),
        GuestAction(
            "reset",
            label=_("Reset to template"),
            verb=_("reset"),
            busy=_("resetting to template"),
            log_name=_("reset to template"),
            states=_ALL,
            confirm=Confirm(
                _(
                    "Reset to template erases the VM's disk and clones the lab template again: every file, "
                    "package and password changed inside the VM is lost. The IP address stays the same."
                ),
                _("I understand that everything inside the VM will be erased."),
            ),
            steps=("destroy", "remove root", "volumes", "clone", "customize", "config", "create"),
            desired=Guest.Desired.RUNNING,
            rebuilds=True,
            breaks_guest=True,
            boots=True,
        ),
        # Save points (labs.services.save_points): a copy of the root disk to return to later.
        GuestAction(
            "savepoint",
            label=_("Take a save point"),
            verb=_("take a save point of"),
            busy=_("taking a save point"),
            log_name=_("save point"),
            states=_TAKES_SAVE_POINTS,
            steps=("save point",),
            button=False,
            asks=True,
        ),
        GuestAction(
            "savepoint_return",
            label=_("Return to this save point"),
            verb=_("return to a save point"),
            busy=_("returning to a save point"),
            log_name=_("return to a save point"),
            states=_TAKES_SAVE_POINTS,
            confirm=Confirm(
                _(
                    "Returning to the save point shuts the VM down, replaces its disk with a fresh copy of the "
                    "save point and starts it again: everything changed in the VM since the save point was taken "
                    "is lost. The save point itself stays, and so do the IP and MAC addresses."
                ),
                _("I understand that the VM's disk will be replaced by the save point."),
            ),
            steps=("shutdown", "remove root", "clone", "create"),
            desired=Guest.Desired.RUNNING,
            boots=True,
            button=False,
            asks=True,
        ),
        GuestAction(
            "savepoint_delete",
            label=_("Delete this save point"),
            verb=_("delete a save point of"),
            busy=_("deleting a save point"),
            log_name=_("delete a save point"),
            states=_ALL,
            confirm=Confirm(
                _("Deleting the save point removes its copy of the disk; the VM itself is not touched."),
                _("I understand that this save point will be gone."),
            ),
            steps=("volume",),
            button=False,
            asks=True,
        ),
        GuestAction(
            "teardown",
            label=_("Delete this VM"),
            verb=_("delete"),
            busy=_("deleting"),
            log_name=_("delete"),
            # Deleting a VM is the lab's business, not the student's.
            role=Role.INSTRUCTOR,
            states=frozenset(Situation),
            confirm=Confirm(
                _(
                    "Deleting the VM stops it, removes its disk and swap volumes and releases its IP address. "
                    "The student loses everything stored in it."
                ),
                _("I understand that the VM and its disks will be deleted."),
            ),
            steps=("destroy", "config", "volumes"),
            breaks_guest=True,
            removes_guest=True,
        ),
    )
}

LAB_ACTIONS: dict[str, LabAction] = {
    a.name: a
    for a in (
        LabAction("retry_failed", label=_("Retry failed VMs"), job="provision"),
        LabAction("provision_missing", label=_("Provision missing VMs"), job="provision"),
        LabAction(
            "start_stopped",
            label=_("Start the lab's stopped VMs"),
            job="start",
            confirm=_("I understand that the lab's %(n)s stopped VMs will be started."),
            button=False,  # its own confirmation page (labs.class_hours_views)
        ),
        LabAction("savepoint_all", label=_("Take a save point of every VM"), job="savepoint", button=False, asks=True),
        LabAction(
            "savepoint_return_all",
            label=_("Return every VM to a save point"),
            job="savepoint_return",
            confirm=_("I understand that the disks of %(n)s VMs will be replaced by their save point."),
            button=False,
            asks=True,
        ),
        LabAction(
            "teardown",
            label=_("Tear down the lab"),
            job="teardown",
            confirm=_("I understand that all %(n)s VMs of this lab will be deleted."),
            button=False,
        ),
    )
}


def guest_action_def(name: str) -> GuestAction | None:
    """The requestable guest action called `name`, or None."""
    action = GUEST_ACTIONS.get(name)
    return action if action is not None and action.requestable else None


def requestable_actions() -> list[GuestAction]:
    """What users may ask for on a guest, in the order the page shows it."""
    return [a for a in GUEST_ACTIONS.values() if a.requestable]


def allowed_actions(guest: Guest) -> set[str]:
    """The actions that make sense now; the UI disables the rest and guest_action refuses them."""
    where = situation(guest)
    if where is None:
        return set()
    return {a.name for a in requestable_actions() if where in a.states}


def breaks_guest(kind: str) -> bool:
    """Whether a failed job of `kind` leaves its guest unusable."""
    action = GUEST_ACTIONS.get(kind)
    return action is not None and action.breaks_guest


def steps_total(kind: str) -> int:
    """How many steps a job of `kind` records (Task.steps_total)."""
    action = GUEST_ACTIONS.get(kind)
    return len(action.job_steps) if action is not None else 1


# Task kinds that are no guest action: the template jobs (labs.services.templates).
OTHER_KINDS: dict[str, Promise] = {
    "build_template": pgettext_lazy("job", "build the template"),
    "build_golden": pgettext_lazy("job", "build the golden LV"),
}


def log_name(kind: str) -> str:
    """A Task kind in words, as the job log names it."""
    action = GUEST_ACTIONS.get(kind)
    if action is not None:
        return str(action.log_name)
    return str(OTHER_KINDS.get(kind, kind))


def busy_word(kind: str) -> str:
    """What a guest busy with a `kind` job is doing, in words."""
    action = GUEST_ACTIONS.get(kind)
    return str(action.busy) if action is not None else kind


# The job log's words for the steps jobs record (each action's `steps`; the template builds' and save points'
# too). A one-step action's step is named after the action, and its log_name says it (step_label).
STEP_LABELS: dict[str, Promise] = {
    "volumes": pgettext_lazy("job step", "create the volumes"),
    "volume": pgettext_lazy("job step", "the volume"),
    "clone": pgettext_lazy("job step", "copy the template"),
    "customize": pgettext_lazy("job step", "write the VM's settings"),
    "config": pgettext_lazy("job step", "the Xen configuration"),
    "create": pgettext_lazy("job step", "boot the VM"),
    "destroy": pgettext_lazy("job step", "stop the VM"),
    "remove root": pgettext_lazy("job step", "remove the old disk"),
    "shutdown": pgettext_lazy("job step", "shut down"),
    "save point": pgettext_lazy("job step", "save point"),
    "save": pgettext_lazy("job step", "save"),
    "restore": pgettext_lazy("job step", "restore"),
    "check": pgettext_lazy("job step", "check the host"),
    "bootstrap": pgettext_lazy("job step", "install Debian (debootstrap)"),
    "register": pgettext_lazy("job step", "register the template"),
    "fill": pgettext_lazy("job step", "fill the golden volume"),
    "swap in": pgettext_lazy("job step", "put the new volume in place"),
}


def step_label(step: str) -> str:
    """A recorded step (Task.step) in words, in the reader's language; an unknown one as it is."""
    label = STEP_LABELS.get(step)
    if label is None:
        action = GUEST_ACTIONS.get(step)
        label = action.log_name if action is not None else None
    return str(label) if label is not None else step
