"""RQ jobs: the bridge from Task rows to a dom0.

Each job runs on the worker of the guest's host (its own queue), builds the
host object with `labs.dom0.connect()` and records every step on the Task
row as it goes (step, steps done, timestamped log, seconds inside dom0
calls), so the browser can show progress and the instructor can read what
happened. Jobs are idempotent: re-running one after a crash at any step
looks at what exists (one `lvs`, one `xl list`) and finishes or cleans up;
it never creates a second volume or domain.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import netaddr
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone
from rq.worker import SimpleWorker

from labs import dom0
from labs.dom0.base import Dom0Host, DomainSpec, GuestFiles, HostConfig, Volume
from labs.dom0.errors import Dom0Error
from labs.models import AuditEvent, Guest, Host, Task
from labs.services.actions import GUEST_BREAKING_KINDS, REBUILD_KINDS, close_lab_if_empty
from labs.services.limits import PoolFill, template_lab_max_mb

log = logging.getLogger(__name__)
# How long `xl shutdown -w` may wait for a guest to power off before the job fails.
SHUTDOWN_TIMEOUT = 120.0
# `xl reboot` only asks the guest. xl's own monitor then destroys the domain
# and builds it again, and when that build fails (libxl's hotplug timeout on
# a busy dom0, seen on the testbed) the guest is simply gone. So a reboot job
# waits for the new domain: up to REBOOT_TIMEOUT for the guest to go down and
# come back, and when the name stays absent for REBOOT_GONE_SECONDS it starts
# the guest itself, as `start` would.
REBOOT_TIMEOUT = 600.0
REBOOT_GONE_SECONDS = 30.0
REBOOT_POLL_SECONDS = 2.0
# How often, at most, HostWorker refreshes its own key in Redis between jobs.
WORKER_HEARTBEAT_SECONDS = 1.0


def host_config(host: Host) -> HostConfig:
    return HostConfig(
        name=host.name,
        volume_group=host.volume_group,
        toolstack=host.toolstack,
        thin_pool=host.thin_pool,
        bridge=host.bridge,
        dom0_reserve_mb=host.dom0_reserve_mb,
        sim_dir=settings.XENPANEL_SIM_DIR,
        sim_delay=settings.XENPANEL_SIM_DELAY,
    )


def connect_host(host: Host) -> Dom0Host:
    return dom0.connect(host_config(host), mode=settings.XENPANEL_DOM0)


def crypt_sha512(password: str) -> str:
    """A crypt(3) SHA-512 hash for /etc/shadow.

    The crypt module is deprecated since 3.11 (removed in 3.13) but is the
    only standard-library route to glibc's SHA-crypt; the warning is
    expected here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


class StepFailed(Exception):
    """A Dom0Error wrapped with the step it happened in."""

    def __init__(self, step: str, error: Dom0Error) -> None:
        super().__init__(f"{step}: {error}")
        self.step = step
        self.error = error


class Recorder:
    """Writes a Task's progress to the database while its job runs."""

    def __init__(self, task: Task, host: Dom0Host, volume_group: str) -> None:
        self.task = task
        self.host = host
        self.host_vg = volume_group
        self._lines: list[str] = [task.log] if task.log else []

    def log(self, text: str) -> None:
        stamp = timezone.localtime().strftime("%H:%M:%S.%f")[:-3]
        for line in text.splitlines() or [""]:
            self._lines.append(f"{stamp} {line}")
        self.task.log = "\n".join(self._lines)

    def save(self, *fields: str) -> None:
        """Write the progress so far: the log, dom0 seconds and `fields` of the Task."""
        _write_progress(self.task, ["log", "dom0_seconds", *fields])

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """One recorded step: its name is saved when it starts, so a crash shows where it stopped."""
        self.task.step = name
        self.log(f"step {name}")
        self.save("step", "steps_done")
        try:
            yield
        except Dom0Error as e:
            raise StepFailed(name, e) from e
        self.task.steps_done += 1

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A dom0 operation, timed into Task.dom0_seconds."""
        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            self.task.dom0_seconds += time.monotonic() - started


def _write_progress(task: Task, fields: list[str]) -> None:
    """Write the task's progress fields: through the worker's ProgressWriter when it runs, else here."""
    values = {f: getattr(task, f) for f in fields}
    # Inside an outer transaction (a test's) another connection would not see the row.
    if connection.in_atomic_block or not PROGRESS.submit(task.pk, values):
        Task.objects.filter(pk=task.pk).update(**values)


class ProgressWriter:
    """Writes jobs' progress rows from a side thread with its own database connection.

    A job saves its progress at every step, so the browser follows it and a
    crash shows where it stopped. Each save was a round trip to the server
    and a commit waiting for the WAL flush, in the job's path: 3-10 ms each
    on a busy machine, or after a long dom0 step when the server had gone
    idle; most of a provisioning job's bookkeeping. With the writer running
    the job hands the values over and goes on with the host while this
    thread writes them, in order (later values of a task replace earlier
    ones not yet written). Its session commits without waiting for the flush
    (synchronous_commit=off): such commits are atomic, visible at once and
    kept if the worker dies; only a crash of the database server itself may
    lose the last fraction of a second of them. The outcome of a job is
    committed synchronously, in the job's own connection, and `_finish`
    first waits for the writer (`flush`), so a late progress write never
    lands after the outcome and the outcome's flush covers them all. A write that
    fails is raised by `flush`; `_finish` logs it and saves every progress
    field with the outcome anyway.

    HostWorker starts it on PostgreSQL (SQLite lives in the worker's own
    process: a write there costs no round trip) and stops it when the worker
    ends; elsewhere (rq's forking worker, a job called directly) and inside
    an outer transaction, which another connection could not see, jobs write
    their progress themselves.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: dict[int, dict[str, Any]] = {}
        self._writing = False
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = False

    def _alive(self) -> bool:
        # A forked process has the parent's object but not its thread.
        return self._thread is not None and self._pid == os.getpid() and self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._alive() and not self._stopping

    def start(self) -> None:
        with self._cond:
            self._stopping = False
            if self._alive():
                return  # still running, or still writing what it had when stopped: keep that one thread
            self._pending, self._writing, self._error = {}, False, None
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="progress-writer", daemon=True)
            self._thread.start()

    def submit(self, task_id: int, values: dict[str, Any]) -> bool:
        """Queue the values for the task's row; False (nothing queued) when the writer is not running."""
        with self._cond:
            if not self.running:
                return False
            self._pending.setdefault(task_id, {}).update(values)
            self._cond.notify_all()
            return True

    def flush(self) -> None:
        """Wait until every submitted value is written; raise what the writer failed with, if anything."""
        with self._cond:
            while (self._pending or self._writing) and self._alive():
                self._cond.wait(1.0)
            error, self._error = self._error, None
        if error is not None:
            raise error

    def stop(self) -> None:
        """Write what is left, then end the thread and close its connection."""
        with self._cond:
            if not self._alive():
                return
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()
        thread.join()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._stopping:
                        self._cond.wait()
                    if not self._pending:
                        return
                    batch, self._pending, self._writing = self._pending, {}, True
                error = None
                try:
                    close_old_connections()
                    _commit_async()
                    for task_id, values in batch.items():
                        Task.objects.filter(pk=task_id).update(**values)
                except Exception as e:  # reported to the job by flush()
                    error = e
                with self._cond:
                    self._writing = False
                    self._error = self._error or error
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
            connection.close()


PROGRESS = ProgressWriter()
# This process's PostgreSQL sessions already switched to asynchronous commits.
_ASYNC_SESSIONS: weakref.WeakSet = weakref.WeakSet()


def _commit_async() -> None:
    """Let this thread's PostgreSQL session commit without waiting for the WAL flush (once per connection)."""
    if connection.vendor != "postgresql":
        return
    connection.ensure_connection()
    if connection.connection not in _ASYNC_SESSIONS:
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")
        _ASYNC_SESSIONS.add(connection.connection)


# ------------------------------------------------------------------ helpers
def _domains(rec: Recorder) -> dict[str, Any]:
    return {d.name: d for d in rec.call(rec.host.list_domains) if d.domid != 0}


def _guest_files(guest: Guest) -> GuestFiles:
    pool = guest.pool
    net = netaddr.IPNetwork(pool.network)
    return GuestFiles(
        hostname=guest.hostname,
        fqdn=f"{guest.hostname}.{pool.dns_domain}",
        address=guest.ip,
        netmask=str(net.netmask),
        gateway=pool.gateway,
        broadcast=str(net.broadcast or net.ip),
        root_device=guest.lab.template.root_device,
        fs_type=guest.lab.template.fs_type,
        nameservers=tuple(pool.nameservers.replace(",", " ").split()),
        root_password_hash=crypt_sha512(guest.initial_password) if guest.initial_password else "",
    )


def _domain_spec(guest: Guest, vg: str) -> DomainSpec:
    template = guest.lab.template
    return DomainSpec(
        name=guest.domain_name,
        kernel=template.kernel,
        ramdisk=template.ramdisk,
        memory_mb=guest.memory_mb,
        # Room to balloon up to what mem-set may grant later.
        maxmem_mb=max(template_lab_max_mb(template, guest.lab), guest.memory_mb),
        root_target=f"/dev/{vg}/{guest.root_lv}",
        swap_target=f"/dev/{vg}/{guest.swap_lv}" if guest.swap_lv else "",
        vcpus=template.vcpus,
        root_device=template.root_device,
        bridge=guest.host.bridge,
        mac=guest.mac,
    )


def _observe(rec: Recorder, guest: Guest) -> dict[str, Any]:
    """The guest's observed state after the job, from one `xl list`, as Guest fields to save."""
    d = _domains(rec).get(guest.domain_name)
    guest.observed_state = d.letter if d is not None else ""
    return {"observed_state": guest.observed_state, "observed_at": timezone.now()}


def _ensure_volume(rec: Recorder, existing: dict[str, Volume], name: str, size_mb: int) -> Volume:
    if name in existing:
        rec.log(f"volume {name} exists, reused")
        return existing[name]
    vol = rec.call(rec.host.create_volume, name, size_mb)
    rec.log(f"created volume {vol.path} ({size_mb} MiB)")
    return vol


# -------------------------------------------------------------- provisioning
def _provision(rec: Recorder, guest: Guest, reimage: bool = False) -> None:
    host, template, name = rec.host, guest.lab.template, guest.domain_name
    domains = _domains(rec)
    if reimage:
        with rec.step("destroy"):
            if name in domains:
                rec.call(host.destroy, name)
                rec.log(f"destroyed domain {name}")
        with rec.step("remove root"):
            # A fresh root volume, so nothing of the old filesystem survives.
            if rec.call(host.remove_volume, guest.root_lv):
                rec.log(f"removed volume {guest.root_lv}")
    elif name in domains:
        if domains[name].letter in ("r", "b", "p"):
            # A previous run got past `xl create` before it was interrupted.
            rec.log(f"domain {name} already exists ({domains[name].state}); nothing to redo")
            rec.task.steps_done = rec.task.steps_total
            return
        rec.call(host.destroy, name)
        rec.log(f"destroyed leftover domain {name} ({domains[name].state})")

    with rec.step("volumes"):
        existing = {v.name: v for v in rec.call(host.list_volumes)}
        if template.clone_method == template.CloneMethod.THIN:
            if guest.root_lv in existing:
                root = existing[guest.root_lv]
                rec.log(f"volume {guest.root_lv} exists, reused")
            else:
                root = rec.call(host.snapshot_volume, template.golden_volume, guest.root_lv)
                rec.log(f"thin snapshot {root.path} of {template.golden_volume}")
        else:
            root = _ensure_volume(rec, existing, guest.root_lv, template.root_size_mb)
        if guest.swap_lv:
            swap = _ensure_volume(rec, existing, guest.swap_lv, template.swap_size_mb)
            # Cheap and harmless to repeat while no domain uses the volume.
            rec.call(host.make_swap, swap.path)
    with rec.step("clone"):
        # Re-run on a retry too: a clone interrupted half-way leaves a
        # filesystem that must not be trusted, and mkfs starts over.
        source = template.golden_volume if template.clone_method == template.CloneMethod.THIN else template.rootfs_path
        rec.call(host.clone_template, source, root.path, template.fs_type, template.clone_method)
        rec.log(f"cloned {source} into {root.path} ({template.clone_method}, {template.fs_type})")
    with rec.step("customize"):
        rec.call(host.customize_rootfs, root.path, _guest_files(guest))
        rec.log(f"wrote hostname {guest.hostname}, address {guest.ip}, fstab and root password")
    with rec.step("config"):
        path = rec.call(host.write_config, _domain_spec(guest, rec.host_vg), True)
        rec.log(f"wrote {path}")
    with rec.step("create"):
        rec.call(host.create, name)
        rec.log(f"xl create {name}")


def _cleanup_guest(rec: Recorder, guest: Guest) -> list[str]:
    """Remove whatever exists of a guest on its host; returns what could not be removed."""
    host, left = rec.host, []
    try:
        if guest.domain_name in _domains(rec):
            rec.call(host.destroy, guest.domain_name)
            rec.log(f"cleanup: destroyed domain {guest.domain_name}")
    except Dom0Error as e:
        left.append(f"domain {guest.domain_name} ({e})")
    try:
        if rec.call(host.remove_config, guest.domain_name):
            rec.log(f"cleanup: removed config of {guest.domain_name}")
    except Dom0Error as e:
        left.append(f"config of {guest.domain_name} ({e})")
    for lv in filter(None, (guest.root_lv, guest.swap_lv)):
        try:
            if rec.call(host.remove_volume, lv):
                rec.log(f"cleanup: removed volume {lv}")
        except Dom0Error as e:
            left.append(f"volume {lv} ({e})")
    return left


# ------------------------------------------------------------------ actions
def _start(rec: Recorder, guest: Guest) -> None:
    name = guest.domain_name
    with rec.step("create"):
        d = _domains(rec).get(name)
        if d is not None and d.letter in ("r", "b", "p"):
            rec.log(f"{name} is already running")
            return
        if d is not None:
            rec.call(rec.host.destroy, name)
            rec.log(f"destroyed leftover domain {name} ({d.state})")
        # Rewritten each time so the memory set by mem-set applies at boot.
        rec.call(rec.host.write_config, _domain_spec(guest, rec.host_vg), True)
        rec.call(rec.host.create, name)
        rec.log(f"xl create {name}")


def _verb(verb: str) -> Callable[[Recorder, Guest], None]:
    def run(rec: Recorder, guest: Guest) -> None:
        name = guest.domain_name
        with rec.step(verb):
            if name not in _domains(rec) and verb in ("shutdown", "destroy"):
                rec.log(f"{name} is not running; nothing to do")
                return
            if verb == "shutdown":
                rec.call(rec.host.shutdown, name, wait=True, timeout=SHUTDOWN_TIMEOUT)
            else:
                rec.call(getattr(rec.host, verb), name)
            rec.log(f"xl {verb} {name}")

    return run


def _reboot(rec: Recorder, guest: Guest) -> None:
    name = guest.domain_name
    with rec.step("reboot"):
        before = _domains(rec).get(name)
        if before is None:
            rec.log(f"{name} is not running; starting it instead")
        else:
            rec.call(rec.host.reboot, name)
            rec.log(f"xl reboot {name}")
            if _back_after_reboot(rec, name, before.domid):
                return
            rec.log(f"{name} did not come back: xl could not build the rebooted domain again; starting it")
    _start(rec, guest)


def _back_after_reboot(rec: Recorder, name: str, old_domid: int) -> bool:
    """True once `name` runs as a new domain; False when it stayed gone for REBOOT_GONE_SECONDS."""
    deadline = time.monotonic() + REBOOT_TIMEOUT
    gone_since: float | None = None
    while True:
        d = _domains(rec).get(name)
        now = time.monotonic()
        if d is not None and d.domid != old_domid and d.letter in ("r", "b"):
            rec.log(f"{name} is back as domain {d.domid}")
            return True
        if d is None:
            gone_since = now if gone_since is None else gone_since
            if now - gone_since >= REBOOT_GONE_SECONDS:
                return False
        else:
            gone_since = None
        if now >= deadline:
            raise Dom0Error(f"{name} did not come back within {REBOOT_TIMEOUT:g} s of xl reboot")
        time.sleep(REBOOT_POLL_SECONDS)


def _mem_set(rec: Recorder, guest: Guest) -> None:
    memory = int(rec.task.args["memory_mb"])
    with rec.step("mem_set"):
        rec.call(rec.host.mem_set, guest.domain_name, memory)
        guest.memory_mb = memory
        Guest.objects.filter(pk=guest.pk).update(memory_mb=memory)
        # The config keeps the new size for the next boot.
        rec.call(rec.host.write_config, _domain_spec(guest, rec.host_vg), True)
        rec.log(f"xl mem-set {guest.domain_name} {memory}m")


def _teardown(rec: Recorder, guest: Guest) -> None:
    host, name = rec.host, guest.domain_name
    with rec.step("destroy"):
        if name in _domains(rec):
            rec.call(host.destroy, name)
            rec.log(f"destroyed domain {name}")
    with rec.step("config"):
        if rec.call(host.remove_config, name):
            rec.log(f"removed {host.config_path(name)}")
    with rec.step("volumes"):
        for lv in filter(None, (guest.root_lv, guest.swap_lv)):
            if rec.call(host.remove_volume, lv):
                rec.log(f"removed volume {lv}")


HANDLERS: dict[str, Callable[[Recorder, Guest], None]] = {
    "provision": _provision,
    "reset": lambda rec, guest: _provision(rec, guest, reimage=True),
    "start": _start,
    "shutdown": _verb("shutdown"),
    "reboot": _reboot,
    "destroy": _verb("destroy"),
    "pause": _verb("pause"),
    "unpause": _verb("unpause"),
    "mem_set": _mem_set,
    "teardown": _teardown,
}


# ------------------------------------------------------------------ outcome
def _finish(task: Task, ok: bool, message: str = "", guest: Guest | None = None, **guest_fields: Any) -> None:
    """Record the outcome on the Task, its AuditEvent and the Guest in one transaction (one commit)."""
    # Progress still on its way first: it must not land after the outcome (and the job is not over before).
    try:
        PROGRESS.flush()
    except Exception:
        # A progress row the writer could not save; the outcome below rewrites all of its fields.
        log.warning("progress of task %s was not saved", task.pk, exc_info=True)
    task.status = Task.Status.SUCCEEDED if ok else Task.Status.FAILED
    task.error = "" if ok else message
    task.finished_at = timezone.now()
    with transaction.atomic():
        task.save(update_fields=["status", "error", "finished_at", "log", "dom0_seconds", "step", "steps_done"])
        AuditEvent.objects.filter(task=task).update(
            result=AuditEvent.Result.SUCCEEDED if ok else AuditEvent.Result.FAILED, message=message[:2000]
        )
        if guest is not None:
            # Only clear busy_with if it is still ours: a lab teardown may
            # have queued the next action meanwhile.
            Guest.objects.filter(pk=guest.pk).update(
                busy_with=Case(When(busy_with=task.kind, then=Value("")), default=F("busy_with")), **guest_fields
            )


def _claim(task: Task) -> Guest | None:
    """Mark the task running (and a rebuilt guest provisioning) in one commit; None if there is nothing to do."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # No wait for the WAL flush (3-5 ms): were this commit lost with a
            # crash of the database server, the task would read queued instead
            # of running, which lost-work detection treats alike, and the
            # job's connection would be gone with it. The outcome waits.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        claimed = Task.objects.filter(pk=task.pk, status=Task.Status.QUEUED).update(
            status=Task.Status.RUNNING, started_at=timezone.now()
        )
        if not claimed and task.status != Task.Status.RUNNING:
            # Already finished (a duplicate delivery, or marked lost): never redo.
            return None
        if claimed:
            task.started_at = timezone.now()
        task.status = Task.Status.RUNNING
        # get(), not first(): no ORDER BY to build for a primary-key lookup.
        try:
            guest = Guest.objects.select_related("lab__template", "pool", "host").get(pk=task.guest_id)
        except Guest.DoesNotExist:
            guest = None
        if guest is not None and task.kind in REBUILD_KINDS:
            Guest.objects.filter(pk=guest.pk).update(status=Guest.Status.PROVISIONING, last_error="")
    return guest


def run_task(task_id: int) -> str:
    """The one RQ entry point for guest work: run Task `task_id` and record the outcome."""
    try:
        task = Task.objects.get(pk=task_id)
    except Task.DoesNotExist:
        return f"task {task_id} no longer exists"
    guest = _claim(task)
    if task.status != Task.Status.RUNNING:
        return f"task {task_id} is already {task.status}"
    if guest is None:
        _finish(task, False, "The guest no longer exists.")
        return "no guest"
    handler = HANDLERS.get(task.kind)
    if handler is None:
        _finish(task, False, f"Unknown task kind {task.kind!r}.", guest)
        return "unknown kind"
    rec = Recorder(task, connect_host(guest.host), guest.host.volume_group)
    rec.log(f"{task.kind} {guest.domain_name} on {guest.host.name}")
    breaks_guest = task.kind in GUEST_BREAKING_KINDS
    try:
        handler(rec, guest)
        if task.kind == "teardown":
            rec.log(f"deleted guest {guest.domain_name}; its IP {guest.ip} and MAC {guest.mac} are free again")
            lab_id = guest.lab_id
            with transaction.atomic():
                _finish(task, True)
                guest.delete()
            close_lab_if_empty(lab_id)
            return "ok"
        observed = _observe(rec, guest)
        if task.kind in REBUILD_KINDS or task.kind == "start":
            if guest.observed_state not in ("r", "b", "p"):
                raise StepFailed(
                    "create",
                    Dom0Error(f"{guest.domain_name} stopped right after xl create: it did not boot (see its console)"),
                )
        if task.kind in REBUILD_KINDS:
            observed["status"] = Guest.Status.READY
        rec.log("done")
        _finish(task, True, "", guest, last_error="", **observed)
        return "ok"
    except (StepFailed, Dom0Error) as e:
        step, error = (e.step, e.error) if isinstance(e, StepFailed) else (task.step or "start", e)
        detail = error.detail()
        rec.log(f"FAILED in step {step}:\n{detail}")
        message = f"{step}: {detail}"
        fields: dict[str, Any] = {}
        if breaks_guest:
            left = _cleanup_guest(rec, guest)
            if left:
                message += "\nleft on the host (remove by hand or retry): " + "; ".join(left)
                rec.log("cleanup could not remove: " + "; ".join(left))
            fields["status"] = Guest.Status.FAILED
        else:
            try:
                fields.update(_observe(rec, guest))
            except Dom0Error:
                pass
        _finish(task, False, message, guest, last_error=message, **fields)
        return "failed"
    except Exception as e:
        # A bug, not a host failure: record it, then let RQ keep the traceback.
        rec.log(f"FAILED with an internal error: {e!r}")
        status = {"status": Guest.Status.FAILED} if breaks_guest else {}
        _finish(task, False, f"internal error: {e!r}", guest, last_error=f"internal error: {e!r}", **status)
        raise


# ------------------------------------------------------------ host upkeep
def sync_host(host_id: int) -> str:
    """State sync: one `xl list` and one `xl info`, written to the Host and its Guests."""
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return "no such host"
    started = time.monotonic()
    h = connect_host(host)
    info = h.info()
    letters = {d.name: d.letter for d in h.list_domains() if d.domid != 0}
    now = timezone.now()
    Host.objects.filter(pk=host.pk).update(
        total_memory_mb=info.total_memory_mb,
        free_memory_mb=max(info.free_memory_mb, 0),
        xen_version=info.xen_version[:64],
        last_seen=now,
    )
    changed = []
    for guest in Guest.objects.filter(host=host).only("pk", "domain_name", "observed_state", "busy_with"):
        letter = letters.get(guest.domain_name, "")
        if letter != guest.observed_state:
            guest.observed_state = letter
            changed.append(guest)
    if changed:
        Guest.objects.bulk_update(changed, ["observed_state"])
    Guest.objects.filter(host=host).update(observed_at=now)
    return f"{len(letters)} domains, {len(changed)} changed, {time.monotonic() - started:.3f} s"


def _check(report: dict, name: str, fn: Callable[[], tuple[bool, str]]) -> None:
    try:
        ok, detail = fn()
    except Dom0Error as e:
        ok, detail = False, e.detail()
    report[name] = {"ok": ok, "detail": detail}


def health_check(host_id: int) -> dict:
    """xl info, VG free space, bridge, dom0 reserve and the thin pool's fill, recorded on the Host row."""
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return {}
    h = connect_host(host)
    report: dict[str, dict] = {}
    facts: dict[str, Any] = {}

    def xen() -> tuple[bool, str]:
        info = h.info()
        facts.update(
            total_memory_mb=info.total_memory_mb,
            free_memory_mb=max(info.free_memory_mb, 0),
            xen_version=info.xen_version[:64],
        )
        return True, f"Xen {info.xen_version}, {info.total_memory_mb} MiB, {info.free_memory_mb} MiB free"

    def vg() -> tuple[bool, str]:
        g = h.volume_group()
        mib = 1024 * 1024
        facts.update(vg_size_mb=g.size_bytes // mib, vg_free_mb=g.free_bytes // mib)
        return g.free_bytes > 0, f"{g.name}: {g.free_bytes // mib} of {g.size_bytes // mib} MiB free"

    def bridge() -> tuple[bool, str]:
        ok = h.bridge_exists(host.bridge)
        return ok, f"bridge {host.bridge} {'exists' if ok else 'is missing'}"

    def reserve() -> tuple[bool, str]:
        total = facts.get("total_memory_mb")
        if total is None:
            return False, "unknown: xl info failed"
        room = total - host.dom0_reserve_mb
        return room > 0, f"{host.dom0_reserve_mb} MiB reserved for dom0, {max(room, 0)} MiB left for guests"

    pool_fill: dict[str, Any] = {}

    def thin_pool() -> tuple[bool, str]:
        usage = h.thin_pool_usage()
        fill = PoolFill(f"{host.volume_group}/{usage.name}", usage.data_percent, usage.metadata_percent)
        # Kept in the report: placement reads the fill from the last check.
        pool_fill.update(data_percent=fill.data_percent, metadata_percent=fill.metadata_percent)
        if fill.full:
            return False, f"{fill.describe()}: nearly full, no new thin clones go here"
        return True, fill.describe()

    checks = [("xen", xen), ("volume_group", vg), ("bridge", bridge), ("dom0_reserve", reserve)]
    if host.thin_pool:
        checks.append(("thin_pool", thin_pool))
    for name, fn in checks:
        _check(report, name, fn)
    if pool_fill:
        report["thin_pool"].update(pool_fill)
    now = timezone.now()
    Host.objects.filter(pk=host.pk).update(
        health_ok=all(c["ok"] for c in report.values()),
        health_report=report,
        health_checked_at=now,
        last_seen=now,
        **facts,
    )
    return report


# ------------------------------------------------------------------ worker
class HostWorker(SimpleWorker):
    """The RQ worker for a dom0's queue: `manage.py rqworker --worker-class labs.jobs.HostWorker <queue>`.

    It runs each job in its own process instead of forking a work-horse per
    job (rq's default): on a small dom0 the fork, copy-on-write faults and
    new database connection cost several times the job's own bookkeeping.
    A plain SimpleWorker, though, registers a running job for its whole
    timeout (30 min), so a killed worker's job would look alive that long;
    this one keeps rq's short heartbeat (about 90 s) from a side thread, so
    the sync loop notices lost work just as fast as with forking workers.
    The thread lives as long as the worker (starting one per job cost more
    than a small job's own bookkeeping on a loaded machine) and beats for
    whichever job is running. Database connections are checked before and
    after each job, as Django does around a request.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The running job, read by the heartbeat thread; the lock makes a beat
        # in flight finish before its job counts as over, so no beat re-registers
        # a job that has already left the started registry.
        self._beat_job = None
        self._beat_lock = threading.Lock()
        self._beat_stop = threading.Event()
        self._beater: threading.Thread | None = None
        self._worker_beat_at = float("-inf")

    def get_heartbeat_ttl(self, job) -> int:
        return int(self.job_monitoring_interval) + 60

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        """Keep the worker's own key alive: at most once a second, in one round trip.

        rq refreshes it around every job (before and after the dequeue, after
        the job; an HSET and an EXPIRE each time) although the key lives
        worker_ttl + 60 s (8 minutes); for a batch of short jobs that was six
        of a job's twenty-odd Redis round trips. Calls with a timeout or a
        pipeline (the job heartbeats) go through unchanged, and a job
        heartbeat, which shortens the key's life, makes the next plain one
        due at once.
        """
        if timeout is not None or pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        at = time.monotonic()
        if at - self._worker_beat_at < WORKER_HEARTBEAT_SECONDS:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(None, pipe)
            pipe.execute()
        self._worker_beat_at = at

    def set_state(self, state: str, pipeline=None) -> None:
        """rq writes "idle" twice between jobs (after one, before the next dequeue): one round trip is enough."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def maintain_heartbeats(self, job) -> None:
        try:
            super().maintain_heartbeats(job)
        finally:
            # That cut the worker key's life to job_monitoring_interval + 60 s: the next plain refresh must not wait.
            self._worker_beat_at = float("-inf")

    def _beat(self) -> None:
        while not self._beat_stop.wait(self.job_monitoring_interval):
            with self._beat_lock:
                job = self._beat_job
                if job is None:
                    continue
                try:
                    self.maintain_heartbeats(job)
                except Exception:  # the next beat retries; a missed one only shortens the margin
                    log.warning("heartbeat for job %s failed", job.id, exc_info=True)

    def execute_job(self, job, queue) -> None:
        close_old_connections()
        with self._beat_lock:
            self._beat_job = job
        if self._beater is None:
            self._beater = threading.Thread(target=self._beat, name=f"heartbeat-{self.name}", daemon=True)
            self._beater.start()
        if connection.vendor == "postgresql":
            PROGRESS.start()
        try:
            super().execute_job(job, queue)
        finally:
            with self._beat_lock:
                self._beat_job = None
            close_old_connections()

    def teardown(self) -> None:
        PROGRESS.stop()
        self._beat_stop.set()
        if self._beater is not None:
            self._beater.join()
        super().teardown()
