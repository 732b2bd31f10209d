"""Guest jobs: `run_task` runs one Task on its guest's host through the handler registered for its kind.

Each guest action of `labs.services.registry` has one handler here, marked
`@handles(name)`. Jobs are idempotent: re-running one after a crash at any
step looks at what exists (one `lvs`, one `xl list`) and finishes or cleans
up; it never creates a second volume or domain.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

import netaddr
from django.db import transaction
from django.utils import timezone

from labs.dom0.base import DomainSpec, FsType, GuestFiles, RootDevice, Volume
from labs.dom0.errors import Dom0Error
from labs.jobs import connect
from labs.jobs.progress import Recorder, StepFailed, claim, finish
from labs.models import Guest, Host, Task, Xl
from labs.services.limits import template_lab_max_mb
from labs.services.registry import GUEST_ACTIONS, GuestAction
from labs.services.ssh_keys import authorized_keys_for
from labs.services.templates import clone_method_on

Handler = Callable[[Recorder, Guest], None]
# The job of each guest action, by its name in the registry.
HANDLERS: dict[str, Handler] = {}

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


H = TypeVar("H", bound=Callable[..., None])


def handles(*kinds: str) -> Callable[[H], H]:
    """Register the decorated function as the job of these guest actions."""

    def register(fn: H) -> H:
        for kind in kinds:
            HANDLERS[kind] = fn
        return fn

    return register


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
        # The model's choices are these literals.
        root_device=cast(RootDevice, guest.lab.template.root_device),
        fs_type=cast(FsType, guest.lab.template.fs_type),
        nameservers=tuple(pool.nameservers.replace(",", " ").split()),
        root_password_hash=crypt_sha512(guest.initial_password) if guest.initial_password else "",
        # The student's keys as they are now, when the job runs (provision or reset).
        authorized_keys=authorized_keys_for(guest.student_id),
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
        root_device=cast(RootDevice, template.root_device),
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
@handles("provision")
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
        if domains[name].letter in Xl.UP:
            # A previous run got past `xl create` before it was interrupted.
            rec.log(f"domain {name} already exists ({domains[name].state}); nothing to redo")
            rec.task.steps_done = rec.task.steps_total
            return
        rec.call(host.destroy, name)
        rec.log(f"destroyed leftover domain {name} ({domains[name].state})")

    with rec.step("volumes"):
        existing = {v.name: v for v in rec.call(host.list_volumes)}
        method = clone_method_on(template, guest.host.thin_pool, existing)
        if method == template.CloneMethod.THIN:
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
        source = template.golden_volume if method == template.CloneMethod.THIN else template.rootfs_path
        rec.call(host.clone_template, source, root.path, template.fs_type, method)
        rec.log(f"cloned {source} into {root.path} ({method}, {template.fs_type})")
    with rec.step("customize"):
        files = _guest_files(guest)
        rec.call(host.customize_rootfs, root.path, files)
        keys = len(files.authorized_keys.splitlines())
        rec.log(
            f"wrote hostname {guest.hostname}, address {guest.ip}, fstab and root password"
            + (f", {keys} SSH key(s) in /root/.ssh/authorized_keys" if keys else "")
        )
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


@handles("reset")
def _reset(rec: Recorder, guest: Guest) -> None:
    _provision(rec, guest, reimage=True)


# ------------------------------------------------------------------ actions
@handles("start")
def _start(rec: Recorder, guest: Guest) -> None:
    name = guest.domain_name
    with rec.step("create"):
        d = _domains(rec).get(name)
        if d is not None and d.letter in Xl.UP:
            rec.log(f"{name} is already running")
            return
        if d is not None:
            rec.call(rec.host.destroy, name)
            rec.log(f"destroyed leftover domain {name} ({d.state})")
        # Rewritten each time so the memory set by mem-set applies at boot.
        rec.call(rec.host.write_config, _domain_spec(guest, rec.host_vg), True)
        rec.call(rec.host.create, name)
        rec.log(f"xl create {name}")


def _xl_command(command: str) -> Handler:
    """The job of an action that is one xl command on the domain (`xl shutdown`, `xl pause`...)."""

    def run(rec: Recorder, guest: Guest) -> None:
        name = guest.domain_name
        with rec.step(command):
            if name not in _domains(rec) and command in ("shutdown", "destroy"):
                rec.log(f"{name} is not running; nothing to do")
                return
            if command == "shutdown":
                rec.call(rec.host.shutdown, name, wait=True, timeout=SHUTDOWN_TIMEOUT)
            else:
                rec.call(getattr(rec.host, command), name)
            rec.log(f"xl {command} {name}")

    return run


for _command in ("shutdown", "destroy", "pause", "unpause"):
    handles(_command)(_xl_command(_command))


@handles("reboot")
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
        if d is not None and d.domid != old_domid and d.letter in Xl.RUNS:
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


@handles("mem_set")
def _mem_set(rec: Recorder, guest: Guest) -> None:
    memory = int(rec.task.args["memory_mb"])
    with rec.step("mem_set"):
        rec.call(rec.host.mem_set, guest.domain_name, memory)
        guest.memory_mb = memory
        Guest.objects.filter(pk=guest.pk).update(memory_mb=memory)
        # The config keeps the new size for the next boot.
        rec.call(rec.host.write_config, _domain_spec(guest, rec.host_vg), True)
        rec.log(f"xl mem-set {guest.domain_name} {memory}m")


@handles("teardown")
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
        # The guest's save points go with it (a reset keeps them).
        for lv in filter(None, (guest.root_lv, guest.swap_lv, *guest.save_points.values_list("volume", flat=True))):
            if rec.call(host.remove_volume, lv):
                rec.log(f"removed volume {lv}")


# ------------------------------------------------------------------ the job
def _claim(task: Task) -> Guest | None:
    """Claim the task; the guest (None if gone), marked provisioning when the job rebuilds it, in the same commit."""
    found: list[Guest] = []

    def load() -> None:
        # get(), not first(): no ORDER BY to build for a primary-key lookup.
        try:
            guest = Guest.objects.select_related("lab__template", "pool", "host").get(pk=task.guest_id or 0)
        except Guest.DoesNotExist:
            return
        action = GUEST_ACTIONS.get(task.kind)
        if action is not None and action.rebuilds:
            Guest.objects.filter(pk=guest.pk).update(status=Guest.Status.PROVISIONING, last_error="")
        found.append(guest)

    claim(task, load)
    return found[0] if found else None


def run_task(task_id: int) -> str:
    """The one RQ entry point for guest work: run Task `task_id` and record the outcome.

    A host runs several jobs at once, but never two of one guest: a job waits
    for the guest's lock (a retry beside a job the sync loop wrongly thought
    lost, under a heavy load, would otherwise build the guest twice over).
    """
    try:
        task = Task.objects.select_related("host").get(pk=task_id)
    except Task.DoesNotExist:
        return f"task {task_id} no longer exists"
    if task.host is None or task.guest_id is None:
        return _run(task)
    with connect.host_lock(task.host, f"guest-{task.guest_id}"):
        return _run(task)


def _run(task: Task) -> str:
    task_id = task.pk
    guest = _claim(task)
    if task.status != Task.Status.RUNNING:
        return f"task {task_id} is already {task.status}"
    if guest is None:
        finish(task, False, "The guest no longer exists.")
        return "no guest"
    action, handler = GUEST_ACTIONS.get(task.kind), HANDLERS.get(task.kind)
    if action is None or handler is None:
        finish(task, False, f"Unknown task kind {task.kind!r}.", guest)
        return "unknown kind"
    rec = Recorder(task, connect.connect_host(guest.host), guest.host.volume_group)
    rec.log(f"{task.kind} {guest.domain_name} on {guest.host.name}")
    try:
        handler(rec, guest)
        _succeeded(rec, task, guest, action)
        return "ok"
    except (StepFailed, Dom0Error) as e:
        _failed(rec, task, guest, e, action.breaks_guest)
        return "failed"
    except Exception as e:
        # A bug, not a host failure: record it, then let RQ keep the traceback.
        rec.log(f"FAILED with an internal error: {e!r}")
        status = {"status": Guest.Status.FAILED} if action.breaks_guest else {}
        finish(task, False, f"internal error: {e!r}", guest, last_error=f"internal error: {e!r}", **status)
        raise


def _succeeded(rec: Recorder, task: Task, guest: Guest, action: GuestAction) -> None:
    """The handler ran: check the domain is up where it must be, and record the outcome."""
    if action.rebuilds or action.removes_guest:
        _report_volume_group(rec, guest)
    if action.removes_guest:
        rec.log(f"deleted guest {guest.domain_name}; its IP {guest.ip} and MAC {guest.mac} are free again")
        with transaction.atomic():
            finish(task, True)
            guest.delete()
        # Whether that was the lab's last guest is the panel's to say (the sync loop closes empty
        # labs): a dom0 sees only its own host's guests, and a lab may span several hosts.
        return
    observed = _observe(rec, guest)
    if action.boots and guest.observed_state not in Xl.UP:
        raise StepFailed(
            "create",
            Dom0Error(f"{guest.domain_name} stopped right after xl create: it did not boot (see its console)"),
        )
    if action.rebuilds:
        observed["status"] = Guest.Status.READY
    rec.log("done")
    finish(task, True, "", guest, last_error="", **observed)


def _report_volume_group(rec: Recorder, guest: Guest) -> None:
    """Write the VG's free space to the Host row after volumes were made or removed.

    Placement reads it: left to the periodic health check, a batch right
    after another was accepted into space the first one had taken, and one
    right after a teardown was refused space it had freed. Written before
    the guest counts as built (or gone), so placement never counts the same
    volumes as both free and promised. A failure to read it fails nothing.
    """
    # Jobs running beside this one report too: read and write under one lock, so the last figure
    # written is the last one read, never an older read that missed volumes made since.
    with connect.host_lock(guest.host, connect.VG_REPORT_LOCK):
        try:
            vg = rec.call(rec.host.volume_group)
        except Dom0Error as e:
            rec.log(f"could not read the volume group's free space: {e}")
            return
        mib = 1024 * 1024
        Host.objects.filter(pk=guest.host_id).update(vg_size_mb=vg.size_bytes // mib, vg_free_mb=vg.free_bytes // mib)
    rec.log(f"volume group {vg.name}: {vg.free_bytes // mib} of {vg.size_bytes // mib} MiB free")


def _failed(rec: Recorder, task: Task, guest: Guest, e: StepFailed | Dom0Error, breaks_guest: bool) -> None:
    """Record a host failure; a guest the job was building or deleting is cleaned up and marked failed."""
    step, error = (e.step, e.error) if isinstance(e, StepFailed) else (task.step or "start", e)
    detail = error.detail()
    rec.log(f"FAILED in step {step}:\n{detail}")
    message = f"{step}: {detail}"
    fields: dict[str, Any] = {}
    if breaks_guest:
        left = _cleanup_guest(rec, guest)
        _report_volume_group(rec, guest)
        if left:
            message += "\nleft on the host (remove by hand or retry): " + "; ".join(left)
            rec.log("cleanup could not remove: " + "; ".join(left))
        fields["status"] = Guest.Status.FAILED
    else:
        try:
            fields.update(_observe(rec, guest))
        except Dom0Error:
            pass
    finish(task, False, message, guest, last_error=message, **fields)


# Save points' and class hours' handlers live in their own modules (this one's size); importing them
# registers them.
from labs.jobs import class_hours, save_points  # noqa: E402, F401
