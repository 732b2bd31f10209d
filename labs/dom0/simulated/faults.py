"""Injected faults, and `_op`: the one path every simulated command takes, so none escapes them.

`inject(op, kind)` arms a failure in the shared state, so a test can arm one
that an RQ worker in another process will hit; the next matching command
raises the error class the real host raises for that failure, with the real
tool's exit code and stderr (failures.py). `clear_faults()` disarms them and
`faults()` lists what is armed.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import os
import time
from collections.abc import Iterator

from ..errors import (
    CommandFailed,
    CommandTimeout,
    Dom0Error,
    InsufficientSpace,
    LvmError,
    VolumeExists,
    VolumeGroupNotFound,
    VolumeNotFound,
)
from ..toolstack import classify_error
from . import accounting
from .failures import last_line, lvm_error, out_of_memory_stderr, rootfs_error
from .state import STEP_SECONDS, Record, SimulatedBase, State, canonical_step

DEFAULT_COMMAND_TIMEOUT = 300.0  # the runner's default

_LVM_OPS = {"volume_group", "list_volumes", "create_volume", "snapshot_volume", "thin_pool_usage", "remove_volume"}
_ROOTFS_OPS = {"clone_template", "customize_rootfs", "make_swap", "read_guest_file"}
_CONFIG_OPS = {"write_config", "remove_config", "bridge_exists"}
_DOMAIN_VERBS = {"shutdown", "reboot", "destroy", "pause", "unpause", "mem_set", "save"}

# Fault kinds each operation accepts besides "error" and "timeout" (valid
# for all). The error class is the one the real host raises for each.
FAULT_KINDS: dict[str, frozenset[str]] = {
    **{op: frozenset() for op in STEP_SECONDS},
    "volume_group": frozenset({"no_vg"}),
    "list_volumes": frozenset({"no_vg"}),
    "create_volume": frozenset({"no_space", "exists", "no_vg"}),
    "snapshot_volume": frozenset({"no_space", "exists", "no_vg", "no_origin"}),
    "thin_pool_usage": frozenset({"no_vg", "no_pool"}),
    "remove_volume": frozenset({"in_use", "no_vg"}),
    "clone_template": frozenset({"no_space"}),
    "create": frozenset({"no_memory", "exists"}),
    "restore": frozenset({"no_memory", "exists"}),
    **{op: frozenset({"not_found"}) for op in _DOMAIN_VERBS},
    # The request is taken, but xl's own restart of the domain then fails and
    # the domain is gone (seen on the testbed: libxl's hotplug timeout while
    # xl rebuilt a rebooting guest).
    "reboot": frozenset({"not_found", "restart_fails"}),
}


class FaultsMixin(SimulatedBase):
    """Simulated commands (`_op`) and the faults armed against them."""

    @contextlib.contextmanager
    def _op(
        self,
        op: str,
        argvs: list[list[str]],
        subject: str = "",
        *,
        sleep: bool = True,
        extents: int = 0,
        main: int = 0,
        readonly: bool = False,
    ) -> Iterator[State]:
        """One simulated command: sleep its delay, then act on the locked state.

        Sleeping happens outside the lock, so two workers' slow steps overlap
        as they would on a real host. `argvs[main]` is the command an injected
        fault blames.
        """
        started = time.monotonic()
        try:
            if sleep and (pause := self._delay(op)):
                time.sleep(pause)
            with self._locked(readonly) as state:
                self._log(argvs)
                self._check_fault(state, op, subject, argvs[main] if argvs else [op], extents)
                yield state
        finally:
            self.busy_seconds += time.monotonic() - started

    # ------------------------------------------------------------ arming
    def inject(
        self,
        op: str,
        kind: str = "error",
        *,
        error: str | None = None,
        times: int | None = None,
        match: str | None = None,
        rc: int | None = None,
    ) -> None:
        """Arm a fault: the next calls of `op` (all of them, or `times` calls) fail.

        `kind` picks the failure and so the error class (FAULT_KINDS; "error"
        is the operation's generic failure, "timeout" a CommandTimeout);
        `error` is the failing tool's stderr text (for toolstack verbs it is
        classified like real xl output, so "Out of memory" gives
        NotEnoughMemory); `match` limits the fault to one subject (a domain,
        volume or device name, or an fnmatch pattern). Kept in the shared
        state file, so a test can arm a fault an RQ worker will hit.
        """
        op = canonical_step(op)
        if op not in FAULT_KINDS:
            raise ValueError(f"unknown operation {op!r}; choose one of {sorted(FAULT_KINDS)}")
        allowed = FAULT_KINDS[op] | {"error", "timeout"}
        if kind not in allowed:
            raise ValueError(f"unknown fault kind {kind!r} for {op}; choose one of {sorted(allowed)}")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError("times must be a positive integer or None")
        fault = {"op": op, "kind": kind, "error": error, "times": times, "match": match, "rc": rc}
        with self._locked() as state:
            state["faults"].append(fault)

    def clear_faults(self, op: str | None = None) -> None:
        """Disarm every fault, or those of one operation."""
        with self._locked() as state:
            if op is None:
                state["faults"] = []
            else:
                op = canonical_step(op)
                state["faults"] = [f for f in state["faults"] if f["op"] != op]

    def faults(self) -> list[Record]:
        """The armed faults (with their remaining `times`)."""
        with self._locked(readonly=True) as state:
            armed: list[Record] = copy.deepcopy(state["faults"])
        return armed

    # ------------------------------------------------------------ firing
    def _check_fault(self, state: State, op: str, subject: str, argv: list[str], extents: int) -> None:
        for fault in state["faults"]:
            if fault["op"] != op:
                continue
            if fault["match"] is not None and not fnmatch.fnmatchcase(subject, fault["match"]):
                continue
            if fault["times"] is not None:
                fault["times"] -= 1
                if fault["times"] <= 0:
                    state["faults"].remove(fault)
            self._event(state, f"fault {fault['kind']} injected into {op} {subject}".rstrip())
            if fault["kind"] == "restart_fails":
                # Not an error of the command: the reboot is due to go wrong later (see _settle).
                if subject in state["domains"]:
                    state["domains"][subject]["restart_fails"] = True
                return
            raise self._fault_error(state, op, fault, subject, argv, extents)

    def _fault_error(
        self, state: State, op: str, fault: Record, subject: str, argv: list[str], extents: int
    ) -> Dom0Error:
        if fault["kind"] == "timeout":
            message = f"{argv[0]} did not finish within {DEFAULT_COMMAND_TIMEOUT:g} s"
            return CommandTimeout(message, argv=argv, stderr=fault["error"] or "")
        if op in _LVM_OPS:
            return self._lvm_fault(state, op, fault, subject, argv, extents)
        if op in _ROOTFS_OPS:
            return _rootfs_fault(op, fault, subject, argv)
        if op in _CONFIG_OPS:
            return _command_fault(op, fault, argv)
        return self._toolstack_fault(state, op, fault, subject, argv)

    def _lvm_fault(
        self, state: State, op: str, fault: Record, subject: str, argv: list[str], extents: int
    ) -> LvmError:
        kind, text, vg = fault["kind"], fault["error"], self.config.volume_group
        cls: type[LvmError] = LvmError
        line = text or f"simulated failure of {op}"
        if kind == "no_space" and op == "snapshot_volume":
            cls, line = InsufficientSpace, accounting.pool_threshold_line(self.config)
        elif kind == "no_space":
            required = max(extents, 1)
            free = min(accounting.free_extents(self.config, state), required - 1)
            cls = InsufficientSpace
            line = f'Volume group "{vg}" has insufficient free space ({free} extents): {required} required.'
        elif kind == "exists":
            cls, line = VolumeExists, f'Logical Volume "{subject}" already exists in volume group "{vg}"'
        elif kind == "no_vg":
            cls, line = VolumeGroupNotFound, f'Volume group "{vg}" not found'
        elif kind in ("no_origin", "no_pool"):
            cls, line = VolumeNotFound, f'Failed to find logical volume "{vg}/{subject}"'
        elif kind == "in_use":
            line = f"Logical volume {vg}/{subject} in use."
        error = lvm_error(cls, argv, line, fault["rc"] or 5)
        if text:
            error.message = f"{argv[0]}: {last_line(text)}"
            error.stderr = text
        return error

    def _toolstack_fault(self, state: State, op: str, fault: Record, subject: str, argv: list[str]) -> Dom0Error:
        # Fake xl's stderr and let the real classifier judge it.
        kind, text = fault["kind"], fault["error"]
        if kind == "no_memory":
            stderr, rc = out_of_memory_stderr(state["next_domid"]), 3
        elif kind == "exists":
            stderr = (
                f'libxl: error: libxl_domain.c:341:libxl__domain_rename: Domain with name "{subject}" already exists.'
            )
            stderr, rc = stderr + "\n", 3
        elif kind == "not_found":
            stderr, rc = f"{subject} is an invalid domain identifier (rc=-6)\n", 1
        else:
            stderr, rc = f"libxl: error: simulated failure of {self.toolstack} {op}\n", 1
        if text:
            stderr = text if text.endswith("\n") else text + "\n"
        return classify_error(argv, fault["rc"] or rc, stderr)


def _rootfs_fault(op: str, fault: Record, subject: str, argv: list[str]) -> Dom0Error:
    text = fault["error"]
    if fault["kind"] == "no_space":
        default = "Could not allocate block in ext2 filesystem while populating file system"
    else:
        default = f"simulated failure of {op}"
    line = last_line(text) if text else default
    return rootfs_error(f"{op.replace('_', ' ')} on {subject}", argv, line, fault["rc"] or 1)


def _command_fault(op: str, fault: Record, argv: list[str]) -> Dom0Error:
    text = fault["error"]
    line = last_line(text) if text else f"simulated failure of {op}"
    rc = fault["rc"] or 1
    message = f"{os.path.basename(argv[0])} failed (exit {rc}): {line}"
    return CommandFailed(message, argv=argv, rc=rc, stderr=line + "\n")
