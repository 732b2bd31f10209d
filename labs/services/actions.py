"""Guest and lab actions: who may do what in which state, and the Task that does it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from labs.access import may_act_on_guest, may_manage_lab
from labs.dom0.toolstack import REASON_CHARS
from labs.models import AuditEvent, Guest, Host, Lab, Task, Xl
from labs.services import class_hours, limits, queueing
from labs.services.errors import InvalidAction, QueueUnavailable, ServiceError
from labs.services.refusals import refused
from labs.services.registry import (
    GUEST_ACTIONS,
    LAB_ACTIONS,
    GuestAction,
    guest_action_def,
    situation,
    steps_total,
)

# A request's own checks and its job's arguments (see guest_action).
Prepare = Callable[[Guest], dict] | None


def describe_state(guest: Guest) -> str:
    """A few words for the guest's state, as used in messages ("it is stopped")."""
    if guest.busy_with:
        return _("busy (%(action)s)") % {"action": guest.busy_with.replace("_", " ")}
    if guest.status == Guest.Status.PENDING:
        return _("waiting to be provisioned")
    if guest.status == Guest.Status.PROVISIONING:
        return _("being provisioned")
    if guest.status == Guest.Status.TEARING_DOWN:
        return _("being deleted")
    if guest.status == Guest.Status.FAILED:
        return _("failed")
    if guest.observed_state == Xl.ABSENT and guest.desired_state == Guest.Desired.SAVED:
        return _("saved")
    return {
        Xl.RUNNING: _("running"),
        Xl.BLOCKED: _("running"),
        Xl.PAUSED: _("paused"),
        Xl.SHUTDOWN: _("shut down but not cleaned up"),
        Xl.CRASHED: _("crashed"),
        Xl.DYING: _("dying"),
    }.get(guest.observed_state, _("stopped"))


def _lock_memory_holders(guest: Guest) -> None:
    """Serialize memory checks: lock the guest's host, then its student, in the order a batch locks them.

    A second resize (or a batch) for the same student or host waits here
    until the first has committed its Task, whose promise it then counts
    (quotas.promised_mb); without the locks, two checks at once each saw the
    other's memory as it was and both passed.
    """
    list(Host.objects.select_for_update().filter(pk=guest.host_id).values_list("pk", flat=True))
    list(get_user_model().objects.select_for_update().filter(pk=guest.student_id).values_list("pk", flat=True))


def _check_memory(guest: Guest, memory_mb) -> int:
    """The new size, if the lab, template, student's quota and host allow it; the caller holds _lock_memory_holders."""
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int):
        raise InvalidAction(_("Give the new memory size as a whole number of MiB."), field="memory_mb")
    # The same decision the memory form and the guest page show (limits.guest_memory_limit).
    limits.guest_memory_limit(guest).refuse(memory_mb)
    return memory_mb


def _job_args(definition: GuestAction, guest: Guest, memory_mb: int | None, prepare: Prepare) -> dict:
    """The job's arguments, checked on the locked guest: mem_set's new size, or what `prepare` returns."""
    if definition.name == "mem_set":
        return {"memory_mb": _check_memory(guest, memory_mb)}
    if definition.asks:
        if prepare is None:
            raise InvalidAction(_("%(action)s: use the form on the VM's page.") % {"action": definition.label})
        return prepare(guest)
    return {}


def _user_or_none(actor):
    """The acting user to record, or None for the system (the sync loop expiring a lab)."""
    return actor if getattr(actor, "pk", None) else None


def _new_task(kind: str, guest: Guest, actor, args: dict | None = None) -> Task:
    return Task(
        kind=kind,
        guest=guest,
        lab=guest.lab,
        host=guest.host,
        actor=_user_or_none(actor),
        target=guest.domain_name,
        args=args or {},
        steps_total=steps_total(kind),
        rq_job_id=queueing.new_job_id(guest.host),
    )


def _refuse(actor, guest: Guest, action: str, message: str) -> None:
    refused(actor, action, message, guest=guest)


def guest_action(actor, guest: Guest, action: str, *, memory_mb: int | None = None, prepare: Prepare = None) -> Task:
    """Check rights and state, record the request and queue the job; returns its Task.

    `prepare`: for an action that `asks` (save points), run on the locked guest once its state allows
    the action; it checks the request (raising a ServiceError to refuse) and returns the job's arguments.
    """
    definition = guest_action_def(action)
    if definition is None:
        raise InvalidAction(_("Unknown action %(action)r.") % {"action": action})
    if not may_act_on_guest(actor, guest, definition.role):
        refusal = _("You may not act on this VM.")
        _refuse(actor, guest, action, refusal)
        raise InvalidAction(refusal)
    if definition.boots and (asleep := class_hours.wake_refusal(actor, guest)) is not None:
        _refuse(actor, guest, action, str(asleep))
        raise asleep
    try:
        return _request(actor, guest, definition, memory_mb, prepare)
    except QueueUnavailable:
        raise  # nothing was refused: the queue is down
    except ServiceError as e:
        # The memory limits (the student's quota among them) refuse inside the request's transaction,
        # which a refused row written there would not outlive: record it now.
        if not e.audited:
            _refuse(actor, guest, action, e.message)
        raise


def scheduled_action(guest: Guest, action: str, actor=None) -> Task:
    """Queue a guest action for the system (class hours) or a lab action's actor, who was already checked."""
    return _request(actor, guest, GUEST_ACTIONS[action], None)


def _request(
    actor, guest: Guest, definition: GuestAction, memory_mb: int | None, prepare: Prepare = None, note: str = ""
) -> Task:
    """Lock the guest, check its state allows the action, record the request (with `note`, if any, as the
    audit message) and queue the job."""
    action = definition.name
    refusal = None
    with transaction.atomic():
        if action == "mem_set":
            _lock_memory_holders(guest)
        # The guest's row only (PostgreSQL would lock every joined row): an
        # action on one guest does not wait for others on the same host.
        g = (
            Guest.objects.select_for_update(of=("self",))
            .select_related("lab__template", "host", "student")
            .get(pk=guest.pk)
        )
        if situation(g) not in definition.states:
            refusal = _("Cannot %(verb)s %(owner)s's VM: it is %(state)s.") % {
                "verb": definition.verb,
                "owner": g.student.username,
                "state": describe_state(g),
            }
        else:
            args = _job_args(definition, g, memory_mb, prepare)
            before = {"status": g.status, "busy_with": g.busy_with, "desired_state": g.desired_state}
            g.busy_with = action
            if action == "teardown":
                g.status = Guest.Status.TEARING_DOWN
            g.desired_state = definition.desired or g.desired_state
            g.save(update_fields=["busy_with", "status", "desired_state", "updated_at"])
            task = _new_task(action, g, actor, args)
            task.save()
            event = AuditEvent.requested(
                task,
                note
                or (
                    _("to %(mem)d MiB") % {"mem": args["memory_mb"]}
                    if action == "mem_set"
                    else str(args.get("label", ""))
                ),
            )
            event.save()
            queueing.ping([g.host.queue_name])

            def undo() -> None:
                event.delete()
                task.delete()
                Guest.objects.filter(pk=g.pk).update(**before)

            queueing.enqueue_after_commit([task], undo)
    if refusal is not None:
        _refuse(actor, g, action, refusal)
        error = InvalidAction(refusal)
        error.audited = True
        raise error
    for name in ("busy_with", "status", "desired_state"):
        setattr(guest, name, getattr(g, name))
    return task


def retry_lost_task(task: Task) -> Task | None:
    """Queue a lost task's job once more, as the same request (jobs are idempotent: the retry reuses or
    cleans up what the lost run left). None for a retry that was lost too, a task without a guest, or
    a guest busy again; then the loss stands and someone retries by hand."""
    action = GUEST_ACTIONS.get(task.kind)
    if task.guest_id is None or action is None or task.args.get("retry_of"):
        return None
    with transaction.atomic():
        g = Guest.objects.select_for_update().select_related("lab", "host").filter(pk=task.guest_id).first()
        if g is None or g.busy_with:
            return None
        before = {"status": g.status, "busy_with": g.busy_with}
        g.busy_with = task.kind
        if action.rebuilds:
            g.status = Guest.Status.PENDING
        elif action.removes_guest:
            g.status = Guest.Status.TEARING_DOWN
        g.save(update_fields=["busy_with", "status", "updated_at"])
        retry = _new_task(task.kind, g, task.actor, {**task.args, "retry_of": task.pk})
        retry.save()
        event = AuditEvent.requested(
            retry, _("Retried automatically: the worker running task %(task)d stopped.") % {"task": task.pk}
        )
        event.save()
        queueing.ping([g.host.queue_name])

        def undo() -> None:
            event.delete()
            retry.delete()
            Guest.objects.filter(pk=g.pk).update(**before)

        queueing.enqueue_after_commit([retry], undo)
    return retry


def queue_for_guests(
    actor, lab: Lab, kind: str, guests: list[Guest], lab_status: str | None = None, lab_event: AuditEvent | None = None
) -> list[Task]:
    """Queue one `kind` task per guest (all or none), marking each guest busy."""
    tasks = []
    with transaction.atomic():
        lab_row = Lab.objects.select_for_update().get(pk=lab.pk)
        previous_lab_status = lab_row.status
        if lab_event is not None:
            lab_event.save()
        if lab_status:
            lab_row.status = lab_status
            lab_row.save(update_fields=["status"])
        # Re-read under the lock: a guest may have become busy since the caller looked.
        locked = list(
            Guest.objects.select_for_update()
            .select_related("host")
            .filter(pk__in=[g.pk for g in guests], busy_with="")
        )
        before = {g.pk: {"status": g.status, "busy_with": g.busy_with} for g in locked}
        for g in locked:
            g.busy_with = kind
            g.status = Guest.Status.TEARING_DOWN if kind == "teardown" else Guest.Status.PENDING
            g.lab = lab_row
        Guest.objects.bulk_update(locked, ["busy_with", "status"])
        tasks = Task.objects.bulk_create([_new_task(kind, g, actor) for g in locked])
        AuditEvent.objects.bulk_create([AuditEvent.requested(t) for t in tasks])
        if tasks:
            queueing.ping({g.host.queue_name for g in locked})
        task_pks = [t.pk for t in tasks]

        def undo() -> None:
            AuditEvent.objects.filter(task__in=task_pks).delete()
            if lab_event is not None:
                lab_event.delete()
            Task.objects.filter(pk__in=task_pks).delete()
            for pk, fields in before.items():
                Guest.objects.filter(pk=pk).update(**fields)
            Lab.objects.filter(pk=lab.pk).update(status=previous_lab_status)

        queueing.enqueue_after_commit(tasks, undo)
    if not tasks:
        close_lab_if_empty(lab.pk)
    lab.refresh_from_db(fields=["status"])
    return tasks


def close_lab_if_empty(lab_id: int | None) -> None:
    """A tearing-down lab whose last guest is gone becomes torn down (and its teardown request succeeds)."""
    if lab_id is None:
        return
    with transaction.atomic():
        lab = Lab.objects.select_for_update().filter(pk=lab_id, status=Lab.Status.TEARING_DOWN).first()
        if lab is not None and not lab.guests.exists():
            lab.status = Lab.Status.TORN_DOWN
            lab.save(update_fields=["status"])
            AuditEvent.objects.filter(lab=lab, action="teardown_lab", result=AuditEvent.Result.REQUESTED).update(
                result=AuditEvent.Result.SUCCEEDED
            )


def lab_action(actor, lab: Lab, action: str) -> list[Task]:
    """provision_missing | retry_failed | teardown, for every guest it applies to; returns the Tasks."""
    if action not in LAB_ACTIONS:
        raise InvalidAction(_("Unknown lab action %(action)r.") % {"action": action})
    try:
        if not may_manage_lab(actor, lab):
            raise InvalidAction(_("You may not manage this lab."))
        if LAB_ACTIONS[action].asks:
            label = LAB_ACTIONS[action].label
            raise InvalidAction(_("%(action)s: use the form on the lab's page.") % {"action": label})
        return _lab_action(actor, lab, action)
    except QueueUnavailable:
        raise
    except ServiceError as e:
        refused(actor, action, e.message, lab=lab)
        raise


def cancel_waiting_jobs(lab: Lab) -> list[Task]:
    """Cancel the lab's guest jobs that no worker has started: they would only build what the teardown deletes.

    The Task goes from queued to failed in one conditional UPDATE, so a worker
    that dequeues the job anyway finds it finished and does nothing (its claim
    needs "queued"); the job is also taken off the queue when Redis answers.
    """
    now = timezone.now()
    with transaction.atomic():
        waiting = list(
            Task.objects.select_for_update(of=("self",))
            .select_related("host")
            .filter(lab=lab, status=Task.Status.QUEUED, guest__isnull=False)
        )
        reason = _("Canceled: the lab is being torn down.")
        Task.objects.filter(pk__in=[t.pk for t in waiting], status=Task.Status.QUEUED).update(
            status=Task.Status.FAILED, error=reason, finished_at=now
        )
        AuditEvent.objects.filter(task__in=waiting).update(result=AuditEvent.Result.FAILED, message=reason)
        for t in waiting:
            if t.guest_id is not None:  # the filter above says so; this tells mypy
                Guest.objects.filter(pk=t.guest_id, busy_with=t.kind).update(busy_with="")
    for t in waiting:
        try:
            queueing.remove(t)
        except RedisError:
            pass  # the worker that takes it finds its task failed and runs nothing
    return waiting


def _lab_action(actor, lab: Lab, action: str) -> list[Task]:
    lab.refresh_from_db(fields=["status"])
    idle = lab.guests.filter(busy_with="")
    if action == "teardown":
        if lab.status == Lab.Status.TORN_DOWN:
            raise InvalidAction(_("The lab %(lab)s is already deleted.") % {"lab": lab.name})
        event = AuditEvent(
            actor=_user_or_none(actor),
            action="teardown_lab",
            lab=lab,
            target=lab.slug,
            result=AuditEvent.Result.REQUESTED,
            message="" if _user_or_none(actor) else _("The lab expired."),
        )
        cancel_waiting_jobs(lab)
        # A guest busy with a job already running is torn down by the sync loop
        # once that job ends (see labs.services.upkeep.continue_teardowns).
        return queue_for_guests(
            actor, lab, "teardown", list(idle), lab_status=Lab.Status.TEARING_DOWN, lab_event=event
        )
    if lab.status != Lab.Status.ACTIVE:
        if action == "retry_failed" and lab.status == Lab.Status.TEARING_DOWN:
            return queue_for_guests(actor, lab, "teardown", list(idle.filter(status=Guest.Status.FAILED)))
        raise InvalidAction(_("The lab %(lab)s is being deleted.") % {"lab": lab.name})
    if action == "start_stopped":
        return start_stopped(actor, lab)
    statuses = [Guest.Status.FAILED]
    if action == "provision_missing":
        statuses.append(Guest.Status.PENDING)
    return queue_for_guests(actor, lab, "provision", list(idle.filter(status__in=statuses)))


# An idle built VM of an active lab with no domain, not saved: registry.situation()'s STOPPED, in SQL, so a
# lab page counts them in its own query (tests/pipeline/test_host_shutdown.py checks that the two agree).
_IDLE_WITHOUT_DOMAIN = Q(
    status=Guest.Status.READY, busy_with="", observed_state=Xl.ABSENT, lab__status=Lab.Status.ACTIVE
)
STOPPED = _IDLE_WITHOUT_DOMAIN & ~Q(desired_state=Guest.Desired.SAVED)


def stopped_guests(lab: Lab) -> list[Guest]:
    """The lab's built VMs that are stopped (a saved one is not: it is restored, not started afresh)."""
    return list(lab.guests.filter(STOPPED).select_related("lab", "host", "student"))


def start_stopped(actor, lab: Lab) -> list[Task]:
    """Start every stopped VM of the lab (say, after a dom0 came back without its guests)."""
    tasks = []
    for guest in stopped_guests(lab):
        try:
            tasks.append(_request(actor, guest, GUEST_ACTIONS["start"], None))
        except InvalidAction:
            continue  # it changed meanwhile (a student started it): nothing to do
    return tasks


# What a dom0's sync writes on a VM that rebooted itself and that xl could not build again (from xl's log):
# the dom0 may only report (labs.services.credentials), so the panel's sync loop reads this and starts it.
REBOOT_FAILED = "The VM rebooted itself, but Xen could not start it again (%(reason)s); the panel starts it."
REBOOT_FAILED_HEAD, _REBOOT_FAILED_TAIL = REBOOT_FAILED.split("%(reason)s")


def restart_failed_reboots() -> int:
    """Start each stopped VM whose dom0 reported a failed reboot from inside (REBOOT_FAILED): the student
    asked for a reboot, not a stop. The start's success clears the report, so each is started once.

    A dom0 writes the report, and a dom0 is trusted less than the panel: only a VM the panel itself still
    means to run is started (a student's own stop is kept), and the reason is cut to what xl would say.
    """
    started = 0
    waiting = Guest.objects.filter(
        STOPPED, desired_state=Guest.Desired.RUNNING, last_error__startswith=REBOOT_FAILED_HEAD
    ).select_related("lab", "host")
    for guest in waiting:
        reason = guest.last_error[len(REBOOT_FAILED_HEAD) :].removesuffix(_REBOOT_FAILED_TAIL)[:REASON_CHARS]
        note = _("Started by the panel: the VM rebooted itself, but Xen could not start it again (%(reason)s).") % {
            "reason": reason
        }
        try:
            _request(None, guest, GUEST_ACTIONS["start"], None, note=note)
        except InvalidAction:
            continue  # it changed meanwhile (its student started it)
        started += 1
    return started


def teardown_expired_lab(lab: Lab) -> list[Task]:
    """The sync loop's lab expiry: the system (no actor) tears the lab down."""
    return _lab_action(None, lab, "teardown")


def lab_progress(lab: Lab) -> dict:
    """Counts for the lab page's progress bar; one query."""
    rows = list(lab.guests.values_list("status", "observed_state", "busy_with"))
    by_status = Counter(status for status, _state, _busy in rows)
    ready = [state for status, state, _busy in rows if status == Guest.Status.READY]
    total = len(rows)
    done = by_status[Guest.Status.READY]
    failed = by_status[Guest.Status.FAILED]
    return {
        "total": total,
        "done": done,
        "failed": failed,
        "pending": by_status[Guest.Status.PENDING],
        "provisioning": by_status[Guest.Status.PROVISIONING],
        "tearing_down": by_status[Guest.Status.TEARING_DOWN],
        "running": sum(1 for s in ready if s in Xl.RUNS),
        "paused": sum(1 for s in ready if s == Xl.PAUSED),
        "stopped": sum(1 for s in ready if s not in Xl.UP),
        "busy": sum(1 for _status, _state, busy in rows if busy),
        "percent": round(100 * (done + failed) / total) if total else 100,
        "finished": total == done + failed,
    }
