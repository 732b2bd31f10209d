"""Save point jobs: take one (thin snapshot or full copy of the root), return to one, delete one.

Handlers of `labs.jobs.guest` (registered with its `@handles`, imported at its end): the same Task
bookkeeping as every guest job. Idempotent like them: a retry removes what an interrupted run left.
"""

from __future__ import annotations

import time
from typing import Any

from labs.dom0.errors import Dom0Error
from labs.jobs.guest import (
    REBOOT_GONE_SECONDS,
    REBOOT_POLL_SECONDS,
    SHUTDOWN_TIMEOUT,
    _domains,
    _report_volume_group,
    _start,
    handles,
)
from labs.jobs.progress import Recorder, StepFailed
from labs.models import Guest, SavePoint, Xl


def _save_point(rec: Recorder, guest: Guest) -> SavePoint:
    return SavePoint.objects.get(pk=rec.task.args["save_point"], guest=guest)


@handles("savepoint")
def _take_save_point(rec: Recorder, guest: Guest) -> None:
    point, host = _save_point(rec, guest), rec.host
    try:
        with rec.step("save point"):
            # A retry starts over: what an interrupted run left (a half copy) is not to be trusted.
            if rec.call(host.remove_volume, point.volume):
                rec.log(f"removed {point.volume} left by an earlier run")
            if point.method == SavePoint.Method.THIN:
                # Crash-consistent: LVM suspends the volume for the instant of the snapshot.
                volume = rec.call(host.snapshot_volume, guest.root_lv, point.volume)
            else:
                volume = _copy_paused(rec, guest, point.volume)
            rec.log(f"save point {point.label!r}: {point.get_method_display()} {volume.path}")
    except (StepFailed, Dom0Error):
        # No save point then: the row goes (the task's error says why) and so does any half-made volume.
        _remove_quietly(rec, point.volume)
        point.delete()
        raise
    SavePoint.objects.filter(pk=point.pk).update(status=SavePoint.Status.READY, size_mb=volume.size_bytes >> 20)
    if point.method == SavePoint.Method.COPY:
        _report_volume_group(rec, guest)


def _copy_paused(rec: Recorder, guest: Guest, name: str) -> Any:
    """A full copy of the root; a running guest is paused meanwhile so the copy is of one instant."""
    d = _domains(rec).get(guest.domain_name)
    paused = d is not None and d.letter in Xl.RUNS
    if paused:
        rec.call(rec.host.pause, guest.domain_name)
        rec.log(f"paused {guest.domain_name} for the copy")
    try:
        return rec.call(rec.host.copy_volume, guest.root_lv, name)
    finally:
        if paused:
            rec.call(rec.host.unpause, guest.domain_name)
            rec.log(f"resumed {guest.domain_name}")


def _remove_quietly(rec: Recorder, volume: str) -> None:
    try:
        rec.call(rec.host.remove_volume, volume)
    except Dom0Error as e:
        rec.log(f"could not remove {volume}: {e}")


@handles("savepoint_return")
def _return_to_save_point(rec: Recorder, guest: Guest) -> None:
    point, host, name = _save_point(rec, guest), rec.host, guest.domain_name
    with rec.step("shutdown"):
        _power_off(rec, name)
    with rec.step("remove root"):
        if rec.call(host.remove_volume, guest.root_lv):
            rec.log(f"removed volume {guest.root_lv}")
    with rec.step("clone"):
        # The save point stays: the root becomes a fresh clone of it.
        if point.method == SavePoint.Method.THIN:
            rec.call(host.snapshot_volume, point.volume, guest.root_lv)
        else:
            rec.call(host.copy_volume, point.volume, guest.root_lv)
        rec.log(f"{guest.root_lv} is a fresh {point.get_method_display()} of save point {point.label!r}")
    _start(rec, guest)


def _power_off(rec: Recorder, name: str) -> None:
    """Shut the domain down and wait until it is gone; destroy it if it does not go (its disk is replaced anyway).

    `xl shutdown -w` returns a moment before xl stops listing the domain, and a destroy in that moment
    fails (libxl finds its devices half gone), so the job waits first and destroys only what stays.
    """
    d = _domains(rec).get(name)
    if d is None:
        rec.log(f"{name} is not running")
        return
    if d.letter in Xl.RUNS:
        try:
            rec.call(rec.host.shutdown, name, wait=True, timeout=SHUTDOWN_TIMEOUT)
            rec.log(f"xl shutdown {name}")
        except Dom0Error as e:
            rec.log(f"{name} did not shut down ({e}); destroying it")
        if _gone(rec, name):
            return
    try:
        rec.call(rec.host.destroy, name)
        rec.log(f"xl destroy {name}")
    except Dom0Error as e:
        # Gone meanwhile is what was wanted; anything else still there is an error.
        rec.log(f"xl destroy {name}: {e}")
    if not _gone(rec, name):
        raise Dom0Error(f"{name} is still there {REBOOT_GONE_SECONDS:g} s after xl destroy")


def _gone(rec: Recorder, name: str) -> bool:
    """Whether xl stops listing `name` within REBOOT_GONE_SECONDS (the volume is held while it is listed)."""
    deadline = time.monotonic() + REBOOT_GONE_SECONDS
    while name in _domains(rec):
        if time.monotonic() >= deadline:
            return False
        time.sleep(REBOOT_POLL_SECONDS)
    return True


@handles("savepoint_delete")
def _delete_save_point(rec: Recorder, guest: Guest) -> None:
    point = _save_point(rec, guest)
    with rec.step("volume"):
        if rec.call(rec.host.remove_volume, point.volume):
            rec.log(f"removed save point {point.label!r} ({point.volume})")
        point.delete()
    if point.method == SavePoint.Method.COPY:
        _report_volume_group(rec, guest)
