"""A simulated dom0: a faithful state machine of one Xen + LVM host.

`SimulatedHost` implements every method of `Dom0Host` with the same
signatures, return values and error classes as the real `XenHost`, so the
panel, the RQ jobs and the tests run unchanged against it (the embedded demo
and the fast test suite do). Like Ganeti's fake hypervisor, but it keeps the
accounting a real host would enforce:

- memory like Xen: free = total - dom0 - every present domain's memory
  (paused and shutting-down domains still hold theirs); a `create` that does
  not fit fails with libxc's "Out of memory"; `mem_set` is capped by maxmem
  and a balloon can only grow into free memory;
- storage like LVM: 4 MiB extents, sizes rounded up, LVM's own messages;
- root filesystems: a volume is empty until `clone_template`, and a removed
  and recreated volume is empty again (`volume_serial()` changes); a guest
  whose root volume holds no filesystem panics at boot and is gone;
- toolstack states as `xl list` prints them, with time: `shutdown` leaves
  the domain in `---s--` for a while, `reboot` comes back with a new domid.

Errors are built the way the real modules build them: the simulated command
"fails" with the real tool's exit code and stderr, and the message and
class come from the same mapping (`toolstack.classify_error`, lvm's and
rootfs's "<what>: <line>" forms). Per-guest files and config files are
rendered by the real pure functions (`rootfs.guest_files`,
`domconfig.render_xl`/`render_xm`).

State is shared by every process that opens the same host (the panel, each
RQ work-horse, the tests): one JSON file `<sim_dir>/<name>.json`, changed
under an `fcntl.flock` on `<name>.lock` with a read-modify-write per
operation and an atomic rename; the command history is appended to
`<name>.history` under the same lock. Time-dependent transitions (the end of a
shutdown or a reboot) are settled lazily, at the next operation, from
wall-clock timestamps kept in the file.

Extras for tests and benchmarks (not part of `Dom0Host`):
`inject()` / `clear_faults()` / `faults()` arm failures in the shared state;
`volumes()` / `domains()` / `configs()` / `saved_images()` / `events()`
inspect it; `volume_serial(name)` tells a recreated volume from the old one;
`history` lists the argv each operation would have run; `busy_seconds`
counts the time spent in simulated commands; `crash(name)` and `reset()`;
`guest_writes(name, mb)` and `set_thin_pool_size(mb)` fill and size the thin pool.

Delays: `config.sim_delay` multiplies STEP_SECONDS (roughly what each step
costs on a real server, so 1.0 models one); `config.extra["delays"]`
overrides single steps in seconds, e.g. {"clone": 0.6, "create": 1.0}.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import fnmatch
import json
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from . import names
from .base import (
    CloneMethod,
    Domain,
    DomainSpec,
    FsType,
    GuestFiles,
    HostConfig,
    HostInfo,
    ThinPoolUsage,
    Volume,
    VolumeGroupInfo,
)
from .domconfig import render_xl, render_xm
from .errors import (
    CommandFailed,
    CommandTimeout,
    Dom0Error,
    InsufficientSpace,
    InvalidName,
    InvalidState,
    LvmError,
    RootfsError,
    VolumeExists,
    VolumeGroupNotFound,
    VolumeNotFound,
)
from .rootfs import guest_files, set_root_password
from .toolstack import classify_error

__all__ = ["FAULT_KINDS", "STEP_ALIASES", "STEP_SECONDS", "SimulatedHost"]

MIB = 1024 * 1024
EXTENT_BYTES = 4 * MIB
XEN_VERSION = "4.17.5"
# Enough to debug a failing job. The history is an append-only side file,
# trimmed back to the last HISTORY_LIMIT commands once it passes HISTORY_TRIM_BYTES.
HISTORY_LIMIT = 1000
HISTORY_TRIM_BYTES = 256 * 1024
EVENTS_LIMIT = 200
DEFAULT_COMMAND_TIMEOUT = 300.0  # the runner's default
POLL_SECONDS = 0.02
# The template's /etc/shadow, for setting root's password in a clone.
TEMPLATE_SHADOW = "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
# What xl prints (through libxc) when a new domain's memory cannot be
# allocated on a host whose dom0 memory is fixed (autoballoon off, as
# recommended). Line numbers are those of Xen 4.16/4.17.
XC_OUT_OF_MEMORY = (
    "xc: error: panic: xg_dom_boot.c:121: xc_dom_boot_mem_init: can't allocate low memory for domain: Out of memory"
)
_REPORT = ["--reportformat", "json", "--units", "b", "--nosuffix"]
# The thin pool (when the host has one) holds a quarter of the VG until
# set_thin_pool_size() says otherwise (kept in the shared state, like
# everything a real host would remember), and that much of the VG is not
# free, as on a real host. A thin snapshot takes no pool space until something is
# written to it, and then whole chunks (LVM's default chunk is 64 KiB):
# finishing a clone rewrites superblocks, group descriptors and bitmaps
# (e2fsck, resize2fs, tune2fs -U), each customized file costs a couple of
# chunks (its block, its inode's block), and guest_writes() models the guest.
THIN_CHUNK_BYTES = 64 * 1024
THIN_FINISH_BYTES = 4 * MIB
THIN_FILE_BYTES = 2 * THIN_CHUNK_BYTES
# Metadata (the chunk mappings) is modelled as growing at a quarter of the
# data's rate: a simplification, LVM's real ratio depends on the chunk and
# metadata area sizes.
THIN_METADATA_RATIO = 0.25
# With LVM's default thin_pool_autoextend_threshold (100), lvcreate refuses
# a new thin volume only once the pool's data or metadata is full.
THIN_POOL_REFUSE_PERCENT = 100.0

# Seconds each step takes on a real server when sim_delay = 1.0. Sources:
# shared/reference/lvm-and-cloning.md (lvcreate+lvremove ~0.1 s, mkfs -d
# clone 0.6 s, lvs 44 ms, e2tools edits ~20 ms each) and the Xen testbed
# (a shut-down domain is gone a few seconds after the request). For
# `shutdown` and `reboot` the call itself returns at once, as xl does; the
# figure is how long the domain shows `---s--` before it is gone or running.
STEP_SECONDS: dict[str, float] = {
    "info": 0.05,
    "bridge_exists": 0.01,
    "volume_group": 0.05,
    "list_volumes": 0.05,
    "create_volume": 0.1,
    "snapshot_volume": 0.15,
    "thin_pool_usage": 0.05,
    "remove_volume": 0.1,
    "clone_template": 0.6,
    "customize_rootfs": 0.15,
    "make_swap": 0.05,
    "read_guest_file": 0.02,
    "write_config": 0.01,
    "remove_config": 0.01,
    "list_domains": 0.03,
    "create": 1.0,
    "shutdown": 2.5,
    "reboot": 3.0,
    "destroy": 0.5,
    "pause": 0.05,
    "unpause": 0.05,
    "mem_set": 0.1,
    "save": 2.0,
    "restore": 2.0,
}

# Short names accepted as keys of config.extra["delays"] and by inject().
STEP_ALIASES: dict[str, str] = {
    "clone": "clone_template",
    "customize": "customize_rootfs",
    "swap": "make_swap",
    "mkswap": "make_swap",
    "snapshot": "snapshot_volume",
    "lvcreate": "create_volume",
    "lvremove": "remove_volume",
    "read_file": "read_guest_file",
    "list": "list_domains",
    "mem-set": "mem_set",
}

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


def _canonical_step(step: str) -> str:
    return STEP_ALIASES.get(step, step)


def _extents(size_mb: int) -> int:
    """LVM rounds a size up to whole 4 MiB extents."""
    return -(-size_mb * MIB // EXTENT_BYTES)


def _empty_state() -> dict[str, Any]:
    return {
        "version": 1,
        "next_domid": 1,
        "next_serial": 1,
        "volumes": {},
        "domains": {},
        "configs": {},
        "saved": {},
        "faults": [],
        "events": [],
        "thin_pool_bytes": None,  # None: the default size, a quarter of the VG
    }


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def _lvm_error(cls: type[LvmError], argv: list[str], line: str, rc: int = 5) -> LvmError:
    # lvm.Lvm reports "<command>: <LVM's message line>".
    return cls(f"{argv[0]}: {line}", argv=argv, rc=rc, stderr=f"  {line}\n")


def _rootfs_error(what: str, argv: list[str], line: str, rc: int = 1, *, e2tool: bool = False) -> RootfsError:
    # rootfs.Rootfs reports "<what>: <runner message>"; e2tools exit 0 and
    # are judged by their stderr, so their message is the stderr line.
    detail = line if e2tool else f"{os.path.basename(argv[0])} failed (exit {rc}): {line}"
    return RootfsError(f"{what}: {detail}", argv=argv, rc=0 if e2tool else rc, stderr=line + "\n")


class SimulatedHost:
    """A fake dom0 whose state lives in a JSON file shared by all processes."""

    def __init__(self, config: HostConfig) -> None:
        # The host name becomes a file name: validate it like any other name.
        names.domain_name(config.name)
        names.volume_group(config.volume_group)
        if config.thin_pool:
            names.volume_name(config.thin_pool)
        self.config = config
        self.toolstack = config.toolstack
        self.busy_seconds = 0.0
        self.sim_dir = config.sim_dir or os.path.join(tempfile.gettempdir(), "xenpanel-sim")
        self.state_path = os.path.join(self.sim_dir, f"{config.name}.json")
        self.lock_path = os.path.join(self.sim_dir, f"{config.name}.lock")
        self.history_path = os.path.join(self.sim_dir, f"{config.name}.history")
        # Set under the lock by anything that changes the state, so a
        # read-only operation that changed nothing skips the rewrite.
        self._dirty = False
        extra = config.extra or {}
        self._delays = {_canonical_step(k): float(v) for k, v in (extra.get("delays") or {}).items()}
        self._nr_cpus = int(extra.get("sim_nr_cpus", 2))
        # Template directories that "exist" on this host; None = any.
        templates = extra.get("sim_templates")
        self._templates = set(templates) if templates is not None else None

    # ------------------------------------------------------------------ state
    @contextlib.contextmanager
    def _locked(self, readonly: bool = False) -> Iterator[dict[str, Any]]:
        """Load and settle the state under the lock, then write it back.

        The state is written back even when the operation raises, so a fault
        armed with times=1 is used up, as on a real host. A `readonly`
        operation writes only when settling (or a fault) changed something:
        the panel polls list_domains/info, and the file holds every config.
        """
        os.makedirs(self.sim_dir, exist_ok=True)
        with open(self.lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                self._dirty = False
                state = self._load()
                self._settle(state, time.time())
                try:
                    yield state
                finally:
                    if self._dirty or not readonly:
                        self._store(state)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.state_path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return _empty_state()
        for key, value in _empty_state().items():
            state.setdefault(key, value)
        return state

    def _store(self, state: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.sim_dir, prefix=f".{self.config.name}-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                # dumps, not dump: dump streams through the slow pure-Python encoder.
                f.write(json.dumps(state, separators=(",", ":")))
            os.replace(tmp, self.state_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _settle(self, state: dict[str, Any], now: float) -> None:
        """Apply the transitions whose time has come: shutdowns end, reboots finish."""
        doms = state["domains"]
        # Reboots complete in the order they were due, so domids stay monotonic.
        for name in sorted(doms, key=lambda n: doms[n].get("reboot_at") or 0.0):
            d = doms[name]
            if d.get("gone_at") is not None and now >= d["gone_at"]:
                del doms[name]
                self._event(state, f"{name}: domain {d['domid']} is gone ({d.get('gone_why') or 'shut down'})")
            elif d.get("reboot_at") is not None and now >= d["reboot_at"] and d.get("restart_fails"):
                del doms[name]
                self._event(state, f"{name}: domain {d['domid']} rebooted, but xl could not build it again: gone")
            elif d.get("reboot_at") is not None and now >= d["reboot_at"]:
                old = d["domid"]
                d["domid"] = self._next_domid(state)
                d["reboot_at"] = None
                d["boots"] = d.get("boots", 1) + 1
                self._event(state, f"{name}: rebooted, domain {old} -> {d['domid']}")
                self._boot(state, name, d, now)

    @staticmethod
    def _next_domid(state: dict[str, Any]) -> int:
        # Xen never reuses a domid while it runs; neither do we.
        domid = state["next_domid"]
        state["next_domid"] = domid + 1
        return domid

    def _event(self, state: dict[str, Any], text: str) -> None:
        self._dirty = True
        state["events"].append(f"{time.time():.3f} {text}")
        del state["events"][:-EVENTS_LIMIT]

    # ------------------------------------------------------------- plumbing
    def _delay(self, step: str) -> float:
        if step in self._delays:
            return max(self._delays[step], 0.0)
        return max(self.config.sim_delay, 0.0) * STEP_SECONDS.get(step, 0.0)

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
    ) -> Iterator[dict[str, Any]]:
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

    def _log(self, argvs: list[list[str]]) -> None:
        """Append to the history file (called under the lock)."""
        with open(self.history_path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(a) + "\n" for a in argvs))
            size = f.tell()
        if size > HISTORY_TRIM_BYTES:
            keep = self._read_history()[-HISTORY_LIMIT:]
            fd, tmp = tempfile.mkstemp(dir=self.sim_dir, prefix=f".{self.config.name}-", suffix=".history")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("".join(json.dumps(a) + "\n" for a in keep))
            os.replace(tmp, self.history_path)

    def _read_history(self) -> list[list[str]]:
        try:
            with open(self.history_path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def _ts(self, *args: str) -> list[str]:
        return [self.toolstack, *args]

    def _vg_path(self, lv: str) -> str:
        return f"/dev/{self.config.volume_group}/{lv}"

    def _free_memory(self, state: dict[str, Any]) -> int:
        used = sum(d["memory_mb"] for d in state["domains"].values())
        return self.config.sim_total_memory_mb - self.config.dom0_reserve_mb - used

    def _vg_extents(self) -> int:
        return self.config.sim_vg_size_mb * MIB // EXTENT_BYTES

    def _free_extents(self, state: dict[str, Any]) -> int:
        # Thin snapshots live in the thin pool and take nothing more from the VG;
        # the pool itself is an LV of the VG, made when the dom0 was set up.
        used = sum(v["extents"] for v in state["volumes"].values() if not v.get("thin"))
        if self.config.thin_pool:
            used += self._pool_size_bytes(state) // EXTENT_BYTES
        return self._vg_extents() - used

    def _device_lv(self, device: str) -> str | None:
        """The LV behind a device path (as the real rootfs module wants: absolute); None if not ours."""
        names.abs_path(device)
        parts = device.split("/")
        if len(parts) == 4 and parts[1] == "dev" and parts[2] == self.config.volume_group:
            return names.volume_name(parts[3])
        return None

    @staticmethod
    def _in_use_by(state: dict[str, Any], path: str) -> str | None:
        """The present domain that has `path` as a disk, if any."""
        for name, d in state["domains"].items():
            if path in d.get("disks", []):
                return name
        return None

    def _domain(self, state: dict[str, Any], name: str, argv: list[str]) -> dict[str, Any]:
        d = state["domains"].get(name)
        if d is None:
            if self.toolstack == "xm":
                stderr = f"Error: Domain '{name}' does not exist.\n"
            else:
                stderr = f"{name} is an invalid domain identifier (rc=-6)\n"
            raise classify_error(argv, 1, stderr)
        return d

    @staticmethod
    def _state_string(d: dict[str, Any]) -> str:
        if d.get("crashed"):
            return "----c-"
        if d.get("gone_at") is not None or d.get("reboot_at") is not None:
            return "---s--"
        if d.get("paused"):
            return "--p---"
        return "-b----"

    @staticmethod
    def _require_live(name: str, d: dict[str, Any], argv: list[str]) -> None:
        """Refuse verbs that make no sense on a crashed or shutting-down domain."""
        if d.get("crashed"):
            raise InvalidState(f"domain {name} ({d['domid']}) has crashed: destroy it first", argv=argv)
        if d.get("gone_at") is not None or d.get("reboot_at") is not None:
            raise InvalidState(f"domain {name} ({d['domid']}) is shutting down", argv=argv)

    def _boot(self, state: dict[str, Any], name: str, d: dict[str, Any], now: float) -> None:
        """A guest whose root volume holds no filesystem panics at boot.

        The kernel cannot mount root, the domain crashes, and on_crash =
        "destroy" removes it: callers see it vanish, as on a real host when
        the clone step was skipped or the volume was recreated empty.
        """
        root = d.get("root_volume")
        vol = state["volumes"].get(root) if root else None
        if vol is not None and vol.get("content") != "fs":
            d["gone_at"] = now + self._delay("create")
            d["gone_why"] = "crashed at boot: VFS: Unable to mount root fs"
            self._event(state, f"{name}: kernel panic, root volume {root} holds no filesystem")
            if d["gone_at"] <= now:
                del state["domains"][name]

    def _apply_balloon(self, state: dict[str, Any], d: dict[str, Any]) -> None:
        """Move a running guest's memory towards its target; it only grows into free memory."""
        target = d["target_mb"]
        if target <= d["memory_mb"]:
            d["memory_mb"] = target
        else:
            d["memory_mb"] = min(target, d["memory_mb"] + max(self._free_memory(state), 0))

    def _check_disks(self, state: dict[str, Any], disks: list[tuple[str, str]], argv: list[str]) -> None:
        """Every (vdev, path) must be an existing LV of our VG, or libxl cannot stat it."""
        for i, (vdev, path) in enumerate(disks):
            parts = path.split("/")
            if len(parts) == 4 and parts[2] == self.config.volume_group and parts[3] in state["volumes"]:
                continue
            stderr = (
                f"libxl: error: libxl_device.c:282:libxl__device_disk_set_backend: "
                f"Disk vdev={vdev} failed to stat: {path}: No such file or directory\n"
                f"libxl: error: libxl_create.c:1216:initiate_domain_create: "
                f"Unable to set disk defaults for disk {i}\n"
            )
            raise classify_error(argv, 3, stderr)

    def _check_memory(self, state: dict[str, Any], need_mb: int, argv: list[str]) -> None:
        if need_mb > self._free_memory(state):
            raise classify_error(argv, 3, _out_of_memory_stderr(state["next_domid"]))

    def _check_name_free(self, state: dict[str, Any], name: str, argv: list[str]) -> None:
        if name in state["domains"]:
            stderr = (
                f"libxl: error: libxl_domain.c:341:libxl__domain_rename: Domain {state['next_domid']}:"
                f'Domain with name "{name}" already exists.\n'
            )
            raise classify_error(argv, 3, stderr)

    # ------------------------------------------------------------ faults
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
        op = _canonical_step(op)
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
                op = _canonical_step(op)
                state["faults"] = [f for f in state["faults"] if f["op"] != op]

    def faults(self) -> list[dict[str, Any]]:
        """The armed faults (with their remaining `times`)."""
        with self._locked(readonly=True) as state:
            return copy.deepcopy(state["faults"])

    def _check_fault(self, state: dict[str, Any], op: str, subject: str, argv: list[str], extents: int) -> None:
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
        self, state: dict[str, Any], op: str, fault: dict[str, Any], subject: str, argv: list[str], extents: int
    ) -> Dom0Error:
        kind, text, vg = fault["kind"], fault["error"], self.config.volume_group
        if kind == "timeout":
            return CommandTimeout(
                f"{argv[0]} did not finish within {DEFAULT_COMMAND_TIMEOUT:g} s", argv=argv, stderr=text or ""
            )
        if op in _LVM_OPS:
            cls: type[LvmError] = LvmError
            line = text or f"simulated failure of {op}"
            if kind == "no_space" and op == "snapshot_volume":
                cls, line = InsufficientSpace, self._pool_threshold_line()
            elif kind == "no_space":
                required = max(extents, 1)
                free = min(self._free_extents(state), required - 1)
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
            error = _lvm_error(cls, argv, line, fault["rc"] or 5)
            if text:
                error.message = f"{argv[0]}: {_last_line(text)}"
                error.stderr = text
            return error
        if op in _ROOTFS_OPS:
            if kind == "no_space":
                default = "Could not allocate block in ext2 filesystem while populating file system"
            else:
                default = f"simulated failure of {op}"
            line = _last_line(text) if text else default
            return _rootfs_error(f"{op.replace('_', ' ')} on {subject}", argv, line, fault["rc"] or 1)
        if op in _CONFIG_OPS:
            line = _last_line(text) if text else f"simulated failure of {op}"
            rc = fault["rc"] or 1
            return CommandFailed(
                f"{os.path.basename(argv[0])} failed (exit {rc}): {line}", argv=argv, rc=rc, stderr=line + "\n"
            )
        # Toolstack: fake xl's stderr and let the real classifier judge it.
        if kind == "no_memory":
            stderr, rc = _out_of_memory_stderr(state["next_domid"]), 3
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

    # ------------------------------------------------------------------ host
    def info(self) -> HostInfo:
        with self._op("info", [self._ts("info")], readonly=True) as state:
            free = self._free_memory(state)
        return HostInfo(
            total_memory_mb=self.config.sim_total_memory_mb,
            free_memory_mb=free,
            xen_version=str(self.config.extra.get("sim_xen_version", XEN_VERSION)),
            nr_cpus=self._nr_cpus,
        )

    def bridge_exists(self, bridge: str) -> bool:
        names.bridge(bridge)
        with self._op("bridge_exists", [["test", "-d", f"/sys/class/net/{bridge}/bridge"]], bridge, readonly=True):
            pass
        return bridge == self.config.bridge or bridge in self.config.extra.get("sim_bridges", ())

    # --------------------------------------------------------------- storage
    def volume_group(self) -> VolumeGroupInfo:
        vg = self.config.volume_group
        argv = ["vgs", *_REPORT, "-o", "vg_name,vg_size,vg_free,vg_extent_size", vg]
        with self._op("volume_group", [argv], vg, readonly=True) as state:
            free = self._free_extents(state)
        return VolumeGroupInfo(
            name=vg,
            size_bytes=self._vg_extents() * EXTENT_BYTES,
            free_bytes=free * EXTENT_BYTES,
            extent_size_bytes=EXTENT_BYTES,
        )

    def list_volumes(self) -> list[Volume]:
        vg = self.config.volume_group
        argv = ["lvs", *_REPORT, "-o", "lv_name,lv_size,lv_attr", vg]
        with self._op("list_volumes", [argv], vg, readonly=True) as state:
            vols = {n: v["extents"] for n, v in state["volumes"].items()}
        return [Volume(n, e * EXTENT_BYTES, self._vg_path(n)) for n, e in sorted(vols.items())]

    def create_volume(self, name: str, size_mb: int) -> Volume:
        names.volume_name(name)
        if not isinstance(size_mb, int) or isinstance(size_mb, bool) or size_mb < 1:
            raise InvalidName(f"invalid volume size {size_mb!r}: use a whole number of MiB from 1")
        vg = self.config.volume_group
        argv = ["lvcreate", "-y", "-L", f"{size_mb}m", "-n", name, vg]
        extents = _extents(size_mb)
        with self._op("create_volume", [argv], name, extents=extents) as state:
            # LVM 2.03.16 (Debian 12) complains about a taken name before
            # looking at free space (measured by lvm.py's tests).
            if name in state["volumes"]:
                raise _lvm_error(VolumeExists, argv, f'Logical Volume "{name}" already exists in volume group "{vg}"')
            free = self._free_extents(state)
            if extents > free:
                line = f'Volume group "{vg}" has insufficient free space ({free} extents): {extents} required.'
                raise _lvm_error(InsufficientSpace, argv, line)
            state["volumes"][name] = self._new_volume(state, extents)
        return Volume(name, extents * EXTENT_BYTES, self._vg_path(name))

    @staticmethod
    def _new_volume(state: dict[str, Any], extents: int, **extra: Any) -> dict[str, Any]:
        serial = state["next_serial"]
        state["next_serial"] = serial + 1
        vol: dict[str, Any] = {"extents": extents, "serial": serial, "content": None, "created_at": time.time()}
        vol.update(extra)
        return vol

    def snapshot_volume(self, origin: str, name: str) -> Volume:
        names.volume_name(origin)
        names.volume_name(name)
        vg = self.config.volume_group
        self._require_pool()
        argv = ["lvcreate", "-y", "-s", "-kn", "-ay", "-K", "-n", name, f"{vg}/{origin}"]
        with self._op("snapshot_volume", [argv], name) as state:
            src = state["volumes"].get(origin)
            if src is None:
                raise _lvm_error(VolumeNotFound, argv, f'Failed to find logical volume "{vg}/{origin}"')
            if name in state["volumes"]:
                raise _lvm_error(VolumeExists, argv, f'Logical Volume "{name}" already exists in volume group "{vg}"')
            if max(self._pool_percents(state)) >= THIN_POOL_REFUSE_PERCENT:
                raise _lvm_error(InsufficientSpace, argv, self._pool_threshold_line())
            # A thin snapshot shares the origin's blocks: it holds the same
            # filesystem and files, and takes no space from the VG.
            content = {k: copy.deepcopy(src.get(k)) for k in ("content", "template", "fs_type", "method", "files")}
            state["volumes"][name] = self._new_volume(state, src["extents"], thin=True, origin=origin, **content)
            size = src["extents"] * EXTENT_BYTES
        return Volume(name, size, self._vg_path(name))

    def thin_pool_usage(self) -> ThinPoolUsage:
        vg, pool = self.config.volume_group, self._require_pool()
        columns = "lv_name,lv_size,lv_attr,data_percent,metadata_percent"
        argv = ["lvs", *_REPORT, "-o", columns, f"{vg}/{pool}"]
        with self._op("thin_pool_usage", [argv], pool, readonly=True) as state:
            data, metadata = self._pool_percents(state)
            size = self._pool_size_bytes(state)
        return ThinPoolUsage(pool, size, data, metadata)

    def _require_pool(self) -> str:
        if not self.config.thin_pool:
            # lvm.Lvm refuses before running anything.
            raise LvmError(f'volume group "{self.config.volume_group}" has no thin pool configured for this host')
        return self.config.thin_pool

    def _pool_size_bytes(self, state: dict[str, Any]) -> int:
        size = state.get("thin_pool_bytes")
        return size if size else _extents(max(self.config.sim_vg_size_mb // 4, 1)) * EXTENT_BYTES

    def set_thin_pool_size(self, size_mb: int) -> None:
        """Make the thin pool `size_mb` MiB (whole extents), as lvextend would grow it (tests, benchmarks)."""
        self._require_pool()
        with self._locked() as state:
            state["thin_pool_bytes"] = _extents(size_mb) * EXTENT_BYTES

    @staticmethod
    def _pool_used_bytes(state: dict[str, Any]) -> int:
        return sum(v.get("pool_bytes", 0) for v in state["volumes"].values() if v.get("thin"))

    def _pool_percents(self, state: dict[str, Any]) -> tuple[float, float]:
        """(data, metadata) percent of the thin pool, rounded as lvs prints them."""
        data = 100.0 * self._pool_used_bytes(state) / self._pool_size_bytes(state)
        return round(data, 2), round(data * THIN_METADATA_RATIO, 2)

    def _pool_threshold_line(self) -> str:
        # What lvcreate says, for a pool that is full and for the injected fault alike.
        pool = f"{self.config.volume_group}/{self.config.thin_pool or 'pool'}"
        return f"Cannot create new thin volume, free space in thin pool {pool} reached threshold."

    def _thin_write(self, state: dict[str, Any], vol: dict[str, Any], nbytes: int) -> bool:
        """Take `nbytes` (whole chunks) of pool space for writes to a thin volume; False when the pool is full.

        A thin volume never holds more of its own chunks than its size. A
        full pool fails the write (an I/O error on the real host) after
        filling what was left.
        """
        if not vol.get("thin"):
            return True
        chunks = -(-nbytes // THIN_CHUNK_BYTES) * THIN_CHUNK_BYTES
        own = vol.get("pool_bytes", 0)
        want = min(chunks, vol["extents"] * EXTENT_BYTES - own)
        room = self._pool_size_bytes(state) - self._pool_used_bytes(state)
        vol["pool_bytes"] = own + max(min(want, room), 0)
        return want <= room

    def guest_writes(self, name: str, size_mb: int) -> ThinPoolUsage | None:
        """A guest writes `size_mb` MiB of new data to its volume `name` (tests, benchmarks).

        Only thin volumes take pool space; returns the pool's usage afterwards
        (None on a host without a thin pool). Writes past a full pool are lost,
        as the guest's I/O errors are.
        """
        names.volume_name(name)
        with self._locked() as state:
            vol = state["volumes"].get(name)
            if vol is None:
                raise VolumeNotFound(f'Failed to find logical volume "{self.config.volume_group}/{name}"')
            if not self._thin_write(state, vol, size_mb * MIB):
                self._event(state, f"thin pool full: writes to {name} fail")
        return self.thin_pool_usage() if self.config.thin_pool else None

    def remove_volume(self, name: str) -> bool:
        names.volume_name(name)
        vg = self.config.volume_group
        argv = ["lvremove", "-y", f"{vg}/{name}"]
        with self._op("remove_volume", [argv], name) as state:
            if name not in state["volumes"]:
                return False
            if self._in_use_by(state, self._vg_path(name)) is not None:
                raise _lvm_error(LvmError, argv, f"Logical volume {vg}/{name} in use.")
            del state["volumes"][name]
        return True

    # ------------------------------------------------------- root filesystem
    def _volume_or_fail(
        self, state: dict[str, Any], lv: str | None, device: str, what: str, argv: list[str]
    ) -> dict[str, Any]:
        vol = state["volumes"].get(lv) if lv else None
        if vol is None:
            raise _rootfs_error(what, argv, f"The file {device} does not exist and no size was specified.")
        return vol

    def _refuse_in_use(self, state: dict[str, Any], device: str, what: str, argv: list[str]) -> None:
        user = self._in_use_by(state, device)
        if user is not None:
            line = f"{device} is apparently in use by the system; will not make a filesystem here!"
            raise _rootfs_error(what, argv, line)

    @staticmethod
    def _require_fs(vol: dict[str, Any], device: str, what: str, argv: list[str]) -> None:
        if vol.get("content") != "fs":
            line = f"{os.path.basename(argv[0])}: Bad magic number in super-block while opening filesystem {device}"
            raise _rootfs_error(what, argv, line, e2tool=True)

    def clone_template(self, template: str, device: str, fs_type: FsType, method: CloneMethod) -> None:
        """Put the template's filesystem on `device`, as XenHost does.

        mkfs/copy: `template` is a directory on the dom0; the volume gets a new
        filesystem holding it (and loses whatever it held).
        thin: `template` is the golden LV and `device` already is its thin
        snapshot (snapshot_volume), holding its filesystem; the clone is only
        checked, grown and given its own UUID.
        """
        if method == "thin":
            names.volume_name(template)
        else:
            template = names.abs_path(template).rstrip("/") or "/"
        lv = self._device_lv(device)
        if fs_type not in ("ext4", "ext3"):
            raise InvalidName(f"invalid filesystem type {fs_type!r}: use ext4 or ext3")
        if method not in ("mkfs", "copy", "thin"):
            raise InvalidName(f"invalid clone method {method!r}: use mkfs, copy or thin")
        mkfs = f"mkfs.{fs_type}"
        if method == "mkfs":
            argvs = [["test", "-d", template], [mkfs, "-q", "-F", "-d", template, device]]
        elif method == "copy":
            mnt = "/tmp/xenpanel-rootfs.SIMULATED"
            argvs = [
                ["test", "-d", template],
                [mkfs, "-q", "-F", device],
                ["mount", "-t", fs_type, "-o", "nodev,nosuid,noexec", device, mnt],
                ["cp", "-a", f"{template}/.", f"{mnt}/"],
                ["umount", mnt],
            ]
        else:
            argvs = [
                ["e2fsck", "-f", "-p", device],
                ["resize2fs", device],
                ["tune2fs", "-U", "random", device],
                ["blkid", "-p", "-o", "value", "-s", "UUID", device],
            ]
        main = 0 if method == "thin" else 1
        with self._op("clone_template", argvs, lv or device, main=main) as state:
            vol = state["volumes"].get(lv) if lv else None
            if method == "thin":
                if vol is None or vol.get("content") != "fs":
                    raise RootfsError(
                        f"thin clone of {device}: e2fsck found problems (exit 8)",
                        argv=argvs[0],
                        rc=8,
                        stderr=f"e2fsck: Bad magic number in super-block while trying to open {device}\n",
                    )
                if not self._thin_write(state, vol, THIN_FINISH_BYTES):
                    raise RootfsError(
                        f"thin clone of {device}: e2fsck found problems (exit 8)",
                        argv=argvs[0],
                        rc=8,
                        stderr=f"e2fsck: Input/output error while writing block on {device}\n",
                    )
                vol.update(method="thin")
                return
            if self._templates is not None and template not in self._templates:
                raise RootfsError(
                    f"template directory {template} does not exist on the host", argv=["test", "-d", template]
                )
            what = f"cloning {template} into {device}"
            self._volume_or_fail(state, lv, device, what, argvs[main])
            self._refuse_in_use(state, device, what, argvs[main])
            state["volumes"][lv].update(content="fs", template=template, fs_type=fs_type, method=method, files={})

    def customize_rootfs(self, device: str, files: GuestFiles) -> None:
        lv = self._device_lv(device)
        rendered = _render_guest_files(files)  # validates everything before any command
        stage = "/tmp/xenpanel-rootfs.SIMULATED"
        argvs = [
            ["e2cp", "-O", "0", "-G", "0", "-P", f"{mode:o}", f"{stage}/{os.path.basename(path)}", f"{device}:{path}"]
            for path, (_, mode) in rendered.items()
        ]
        what = f"customizing {device}"
        with self._op("customize_rootfs", argvs, lv or device) as state:
            vol = self._volume_or_fail(state, lv, device, what, argvs[0])
            self._require_fs(vol, device, what, argvs[0])
            if self._in_use_by(state, device) is not None:
                # Editing a running guest's filesystem from dom0 corrupts it.
                raise _rootfs_error(what, argvs[0], f"{device} is in use by a running domain", e2tool=True)
            if not self._thin_write(state, vol, THIN_FILE_BYTES * len(rendered)):
                raise _rootfs_error(what, argvs[0], "e2cp: Input/output error", e2tool=True)
            files_now = vol.setdefault("files", {})
            if files.root_password_hash:
                files_now["/etc/shadow"] = set_root_password(
                    files_now.get("/etc/shadow", TEMPLATE_SHADOW), files.root_password_hash
                )
            files_now.update({path: text for path, (text, _) in rendered.items()})

    def make_swap(self, device: str) -> None:
        lv = self._device_lv(device)
        argv = ["mkswap", "-f", device]
        what = f"mkswap on {device}"
        with self._op("make_swap", [argv], lv or device) as state:
            vol = state["volumes"].get(lv) if lv else None
            if vol is None:
                raise _rootfs_error(what, argv, f"mkswap: cannot open {device}: No such file or directory")
            if self._in_use_by(state, device) is not None:
                raise _rootfs_error(what, argv, f"mkswap: {device}: Device or resource busy")
            vol.update(content="swap", template=None, fs_type=None, method=None, files={})

    def read_guest_file(self, device: str, path: str) -> str:
        lv = self._device_lv(device)
        names.abs_path(path)
        argv = ["e2cp", f"{device}:{path}", "-"]
        what = f"reading {path} from {device}"
        with self._op("read_guest_file", [argv], lv or device, readonly=True) as state:
            vol = self._volume_or_fail(state, lv, device, what, argv)
            self._require_fs(vol, device, what, argv)
            text = vol.get("files", {}).get(path)
            if text is None:
                raise _rootfs_error(what, argv, "e2cp: File not found by ext2_lookup", e2tool=True)
        return text

    # ---------------------------------------------------------- domain config
    def config_path(self, name: str) -> str:
        return f"{self.config.config_dir}/{names.domain_name(name)}.cfg"

    def _auto_path(self, name: str) -> str:
        return f"{self.config.auto_dir}/{names.domain_name(name)}.cfg"

    def write_config(self, spec: DomainSpec, autostart: bool = True) -> str:
        text = self._render_config(spec)  # validates the whole spec
        path, link = self.config_path(spec.name), self._auto_path(spec.name)
        if autostart:
            argvs = [
                ["write_file", path],
                ["mkdir", "-p", "--", self.config.auto_dir],
                ["ln", "-sfn", "--", path, link],
            ]
        else:
            argvs = [["write_file", path], ["rm", "-f", "--", link]]
        with self._op("write_config", argvs, spec.name) as state:
            state["configs"][spec.name] = {
                "path": path,
                "text": text,
                "autostart": bool(autostart),
                "auto_path": link if autostart else None,
                "spec": dataclasses.asdict(spec),
            }
        return path

    def _render_config(self, spec: DomainSpec) -> str:
        # The real renderer, so tests read exactly what the real host would write.
        return (render_xm if self.toolstack == "xm" else render_xl)(spec)

    def remove_config(self, name: str) -> bool:
        path, link = self.config_path(name), self._auto_path(name)
        argv = ["rm", "-f", "--", path, link]
        with self._op("remove_config", [argv], name) as state:
            return state["configs"].pop(name, None) is not None

    # -------------------------------------------------------- toolstack verbs
    def list_domains(self) -> list[Domain]:
        argvs = [self._ts("list"), self._ts("list", "-l")] if self.toolstack == "xl" else [self._ts("list")]
        with self._op("list_domains", argvs, readonly=True) as state:
            guests = [
                Domain(n, d["domid"], d["memory_mb"], d["vcpus"], self._state_string(d), maxmem_mb=d["maxmem_mb"])
                for n, d in state["domains"].items()
            ]
        dom0 = Domain("Domain-0", 0, self.config.dom0_reserve_mb, self._nr_cpus, "r-----", maxmem_mb=None)
        return [dom0, *sorted(guests, key=lambda g: g.domid)]

    def create(self, name: str) -> None:
        path = self.config_path(name)
        argv = self._ts("create", path)
        with self._op("create", [argv], name) as state:
            cfg = state["configs"].get(name)
            if cfg is None:
                raise classify_error(argv, 3, f"Failed to read config file: {path}: No such file or directory\n")
            spec = cfg["spec"]
            self._check_name_free(state, name, argv)
            dev = spec.get("root_device", "xvda")
            disks = [(f"{dev}1", spec["root_target"])]
            if spec.get("swap_target"):
                disks.append((f"{dev}2", spec["swap_target"]))
            self._check_disks(state, disks, argv)
            self._check_memory(state, spec["memory_mb"], argv)
            self._start(state, name, spec, disks, time.time())

    def _start(
        self, state: dict[str, Any], name: str, spec: dict[str, Any], disks: list[tuple[str, str]], now: float
    ) -> None:
        root = spec["root_target"].split("/")
        d = {
            "domid": self._next_domid(state),
            "memory_mb": spec["memory_mb"],
            "target_mb": spec["memory_mb"],
            "maxmem_mb": spec.get("maxmem_mb") or spec["memory_mb"],
            "vcpus": spec.get("vcpus", 1),
            "paused": False,
            "crashed": False,
            "pending": None,
            "gone_at": None,
            "gone_why": None,
            "reboot_at": None,
            "disks": [path for _, path in disks],
            "vdevs": [vdev for vdev, _ in disks],
            "root_volume": root[3] if len(root) == 4 else None,
            "started_at": now,
            "boots": 1,
        }
        state["domains"][name] = d
        self._event(state, f"{name}: created as domain {d['domid']}")
        self._boot(state, name, d, now)

    def shutdown(self, name: str, wait: bool = False, timeout: float = 120) -> None:
        names.domain_name(name)
        argv = self._ts("shutdown", "-w", name) if wait else self._ts("shutdown", name)
        started = time.monotonic()
        # xl shutdown only asks the guest to power off; it returns at once.
        with self._op("shutdown", [argv], name, sleep=False) as state:
            d = self._domain(state, name, argv)
            if d.get("crashed"):
                raise InvalidState(f"domain {name} ({d['domid']}) has crashed: destroy it first", argv=argv)
            if d.get("reboot_at") is not None:
                # Asked to power off while restarting: it stays down.
                d["gone_at"], d["reboot_at"] = d["reboot_at"], None
            elif d.get("gone_at") is None:
                self._request_power(state, name, d, "poweroff")
        if wait:
            self._wait_gone(name, argv, started, timeout)

    def _request_power(self, state: dict[str, Any], name: str, d: dict[str, Any], what: str) -> None:
        if d.get("paused"):
            # A paused guest cannot see the request; it acts once unpaused.
            d["pending"] = what
            self._event(state, f"{name}: {what} requested while paused, pending")
            return
        now = time.time()
        if what == "poweroff":
            d["gone_at"] = now + self._delay("shutdown")
            d["gone_why"] = "shut down"
        else:
            d["reboot_at"] = now + self._delay("reboot")
        self._settle(state, now)

    def _wait_gone(self, name: str, argv: list[str], started: float, timeout: float) -> None:
        """`xl shutdown -w`: poll until the domain is gone, or time out like the runner."""
        deadline = started + timeout
        try:
            while True:
                with self._locked(readonly=True) as state:
                    d = state["domains"].get(name)
                    due = d.get("gone_at") if d else None
                if d is None:
                    return
                now = time.monotonic()
                if now >= deadline:
                    raise CommandTimeout(f"{argv[0]} did not finish within {timeout:g} s", argv=argv)
                step = max(min(due - time.time(), 0.2), 0.001) if due is not None else POLL_SECONDS
                time.sleep(min(step, max(deadline - now, 0.001)))
        finally:
            self.busy_seconds += time.monotonic() - started

    def reboot(self, name: str) -> None:
        names.domain_name(name)
        argv = self._ts("reboot", name)
        with self._op("reboot", [argv], name, sleep=False) as state:
            d = self._domain(state, name, argv)
            self._require_live(name, d, argv)
            self._request_power(state, name, d, "reboot")

    def destroy(self, name: str) -> None:
        names.domain_name(name)
        argv = self._ts("destroy", name)
        with self._op("destroy", [argv], name) as state:
            d = self._domain(state, name, argv)
            del state["domains"][name]
            self._event(state, f"{name}: domain {d['domid']} destroyed")

    def pause(self, name: str) -> None:
        names.domain_name(name)
        argv = self._ts("pause", name)
        with self._op("pause", [argv], name) as state:
            d = self._domain(state, name, argv)
            self._require_live(name, d, argv)
            if d["paused"]:
                # Xen itself would nest pause counts (two unpauses needed);
                # the panel treats a second pause as a mistake.
                raise InvalidState(f"domain {name} ({d['domid']}) is already paused", argv=argv)
            d["paused"] = True

    def unpause(self, name: str) -> None:
        names.domain_name(name)
        argv = self._ts("unpause", name)
        with self._op("unpause", [argv], name) as state:
            d = self._domain(state, name, argv)
            self._require_live(name, d, argv)
            if not d["paused"]:
                stderr = (
                    f"libxl: error: libxl_domain.c:652:libxl_domain_unpause: "
                    f"Domain {d['domid']}:Unpausing domain: Invalid argument\n"
                )
                raise classify_error(argv, 1, stderr)
            d["paused"] = False
            self._apply_balloon(state, d)
            pending, d["pending"] = d.get("pending"), None
            if pending:
                self._request_power(state, name, d, pending)

    def mem_set(self, name: str, memory_mb: int) -> None:
        names.domain_name(name)
        names.memory_mb(memory_mb)
        argv = self._ts("mem-set", name, f"{memory_mb}m" if self.toolstack == "xl" else str(memory_mb))
        with self._op("mem_set", [argv], name) as state:
            d = self._domain(state, name, argv)
            self._require_live(name, d, argv)
            if memory_mb > d["maxmem_mb"]:
                stderr = (
                    f"libxl: error: libxl_mem.c:313:libxl_set_memory_target: Domain {d['domid']}:"
                    "memory_dynamic_max must be less than or equal to memory_static_max\n"
                )
                raise classify_error(argv, 1, stderr)
            d["target_mb"] = memory_mb
            # A paused guest's balloon driver does not run until unpaused.
            if not d["paused"]:
                self._apply_balloon(state, d)

    def save(self, name: str, path: str) -> None:
        names.domain_name(name)
        names.abs_path(path)
        argv = self._ts("save", name, path)
        with self._op("save", [argv], name) as state:
            d = self._domain(state, name, argv)
            self._require_live(name, d, argv)
            state["saved"][path] = {"name": name, "domain": copy.deepcopy(d), "saved_at": time.time()}
            del state["domains"][name]
            self._event(state, f"{name}: domain {d['domid']} saved to {path}")

    def restore(self, path: str) -> None:
        names.abs_path(path)
        argv = self._ts("restore", path)
        with self._op("restore", [argv], path) as state:
            image = state["saved"].get(path)
            if image is None:
                stderr = "Can't open restore file: No such file or directory\n"
                raise classify_error(argv, 1, stderr)
            name, old = image["name"], image["domain"]
            self._check_name_free(state, name, argv)
            self._check_disks(state, list(zip(old["vdevs"], old["disks"], strict=True)), argv)
            self._check_memory(state, old["memory_mb"], argv)
            d = copy.deepcopy(old)
            d.update(domid=self._next_domid(state), paused=False, pending=None, gone_at=None, reboot_at=None)
            state["domains"][name] = d
            self._event(state, f"{name}: restored from {path} as domain {d['domid']}")

    def console_command(self, name: str) -> list[str]:
        return self._ts("console", names.domain_name(name))

    # ------------------------------------------------ inspection (tests, demo)
    @property
    def history(self) -> list[list[str]]:
        """The argv of every simulated command, oldest first (from all processes; the last 1000)."""
        with self._locked(readonly=True):
            return self._read_history()[-HISTORY_LIMIT:]

    def clear_history(self) -> None:
        with self._locked(readonly=True):
            with open(self.history_path, "w", encoding="utf-8"):
                pass

    def events(self) -> list[str]:
        """Timestamped notes on what happened (boots, panics, faults), to debug tests."""
        with self._locked(readonly=True) as state:
            return list(state["events"])

    def volumes(self) -> dict[str, dict[str, Any]]:
        """Every LV: size_bytes, serial, content (None, "fs" or "swap"), template, files, thin..."""
        with self._locked(readonly=True) as state:
            vols = copy.deepcopy(state["volumes"])
        for v in vols.values():
            v["size_bytes"] = v["extents"] * EXTENT_BYTES
        return vols

    def volume_serial(self, name: str) -> int:
        """The creation serial of a volume: a removed and recreated volume gets a new, higher one."""
        names.volume_name(name)
        with self._locked(readonly=True) as state:
            vol = state["volumes"].get(name)
        if vol is None:
            raise VolumeNotFound(f'Failed to find logical volume "{self.config.volume_group}/{name}"')
        return vol["serial"]

    def domains(self) -> dict[str, dict[str, Any]]:
        """Every guest domain (not Domain-0), with its xl state string under "state"."""
        with self._locked(readonly=True) as state:
            doms = copy.deepcopy(state["domains"])
        for d in doms.values():
            d["state"] = self._state_string(d)
        return doms

    def configs(self) -> dict[str, dict[str, Any]]:
        """Every written config: path, text, autostart, auto_path, spec."""
        with self._locked(readonly=True) as state:
            return copy.deepcopy(state["configs"])

    def saved_images(self) -> dict[str, str]:
        """Saved image path -> domain name."""
        with self._locked(readonly=True) as state:
            return {p: s["name"] for p, s in state["saved"].items()}

    def crash(self, name: str) -> None:
        """Make a guest crash and stay (state ----c-), as with on_crash="preserve"."""
        names.domain_name(name)
        with self._locked() as state:
            d = self._domain(state, name, self._ts("list", name))
            d["crashed"] = True
            self._event(state, f"{name}: domain {d['domid']} crashed")

    def reset(self) -> None:
        """Forget everything: volumes, domains, configs, images, faults and history."""
        with self._locked() as state:
            state.clear()
            state.update(_empty_state())
            with open(self.history_path, "w", encoding="utf-8"):
                pass


def _out_of_memory_stderr(domid: int) -> str:
    return (
        f"{XC_OUT_OF_MEMORY}\n"
        "libxl: error: libxl_dom.c:586:libxl__build_dom: xc_dom_boot_mem_init failed: Cannot allocate memory\n"
        f"libxl: error: libxl_create.c:1573:domcreate_rebuild_done: Domain {domid}:cannot (re-)build domain: -3\n"
        f"libxl: error: libxl_domain.c:1182:libxl__destroy_domid: Domain {domid}:Non-existant domain\n"
    )


# ---------------------------------------------------------------- renderers
def _render_guest_files(files: GuestFiles) -> dict[str, tuple[str, int]]:
    """Guest path -> (text, mode) of the per-guest files, except /etc/shadow.

    Uses the real rootfs module's planner (pure: it only validates and
    renders), so tests read exactly what the real host writes.
    """
    return {f.guest_path: (f.data, f.mode) for f in guest_files(files)}
