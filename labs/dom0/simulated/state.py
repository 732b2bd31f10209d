"""The simulated host's shared state: one JSON file per host, changed under a lock.

Every process that opens the same host (the panel, each RQ work-horse, the
tests) reads and writes `<sim_dir>/<name>.json` under an `fcntl.flock` on
`<name>.lock`, with a read-modify-write per operation and an atomic rename;
the command history is appended to `<name>.history` under the same lock.
Time-dependent transitions (the end of a shutdown or a reboot) are settled
lazily, at the next operation, from wall-clock timestamps kept in the file.

`SimulatedBase` owns that file and what every other part of the host needs:
the lock, the history, the event notes, domids and step delays.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from .. import names
from ..base import HostConfig

# The whole state, and one volume, domain, config, image or fault in it: plain
# JSON, as stored in the file.
State = dict[str, Any]
Record = dict[str, Any]

# Enough to debug a failing job. The history is an append-only side file,
# trimmed back to the last HISTORY_LIMIT commands once it passes HISTORY_TRIM_BYTES.
HISTORY_LIMIT = 1000
HISTORY_TRIM_BYTES = 256 * 1024
EVENTS_LIMIT = 200

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
    "copy_volume": 1.0,  # dd of a few GiB; the real figure grows with the disk (bench/savepoint.py)
    "thin_pool_usage": 0.05,
    "remove_volume": 0.1,
    "clone_template": 0.6,
    # debootstrap of a minbase tree from a nearby mirror: minutes on a real dom0; kept short for the demo.
    "build_template": 20.0,
    "create_thin_volume": 0.1,
    "rename_volume": 0.05,
    "customize_rootfs": 0.15,
    "make_swap": 0.05,
    "read_guest_file": 0.02,
    "write_config": 0.01,
    "remove_config": 0.01,
    "list_domains": 0.03,
    "restart_failure": 0.01,
    "create": 1.0,
    "shutdown": 2.5,
    "reboot": 3.0,
    "destroy": 0.5,
    "pause": 0.05,
    "unpause": 0.05,
    "mem_set": 0.1,
    "save": 2.0,
    "restore": 2.0,
    "saved_image_exists": 0.01,
    "remove_saved_image": 0.01,
    "xentop": 1.0,  # -i 2 -d 1: one second between its two samples
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


def canonical_step(step: str) -> str:
    return STEP_ALIASES.get(step, step)


def empty_state() -> State:
    return {
        "version": 1,
        "next_domid": 1,
        "next_serial": 1,
        "volumes": {},
        "domains": {},
        "configs": {},
        "saved": {},
        "xl_logs": {},  # name -> the lines xl's monitor logs for it (/var/log/xen/xl-<name>.log)
        "faults": [],
        "events": [],
        "thin_pool_bytes": None,  # None: the default size, a quarter of the VG
        "booted_at": time.time(),  # when the host "booted": dom0's CPU time counts from here
    }


class SimulatedBase:
    """The state file of one simulated host, and the bookkeeping every operation shares."""

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
        self._delays = {canonical_step(k): float(v) for k, v in (extra.get("delays") or {}).items()}
        self._nr_cpus = int(extra.get("sim_nr_cpus", 2))
        # Template directories that "exist" on this host; None = any.
        templates = extra.get("sim_templates")
        self._templates: set[str] | None = set(templates) if templates is not None else None

    # ------------------------------------------------------------ the file
    @contextlib.contextmanager
    def _locked(self, readonly: bool = False) -> Iterator[State]:
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

    def _load(self) -> State:
        try:
            with open(self.state_path, encoding="utf-8") as f:
                state: State = json.load(f)
        except FileNotFoundError:
            return empty_state()
        for key, value in empty_state().items():
            state.setdefault(key, value)
        return state

    def _store(self, state: State) -> None:
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

    # ------------------------------------------------------------ time
    def _settle(self, state: State, now: float) -> None:
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
                new = self._next_domid(state)
                self._xl_log_restart(state, name, d["domid"])
                # As the testbed logged it (tests/dom0/fixtures/xl-log-4.17-restart-failed-real.txt).
                self._xl_log(
                    state,
                    name,
                    "libxl: error: libxl_exec.c:117:libxl_report_child_exitstatus: /etc/xen/scripts/block add"
                    f" [{5000 + new}] exited with error status 1",
                    f"libxl: error: libxl_create.c:1672:domcreate_launch_dm: Domain {new}:unable to add disk devices",
                    f"libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain {new}:Non-existant domain",
                )
                self._event(state, f"{name}: domain {d['domid']} rebooted, but xl could not build it again: gone")
            elif d.get("reboot_at") is not None and now >= d["reboot_at"]:
                from .load import rebuild

                old = d["domid"]
                self._xl_log_restart(state, name, old)
                d["domid"] = self._next_domid(state)
                self._xl_log_waiting(state, name, d["domid"])
                d["reboot_at"] = None
                d["boots"] = d.get("boots", 1) + 1
                rebuild(d, now)  # a new domain: its CPU time starts again, and a runaway loop is gone
                self._event(state, f"{name}: rebooted, domain {old} -> {d['domid']}")
                self._boot(state, name, d, now)

    def _boot(self, state: State, name: str, d: Record, now: float) -> None:
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

    def _delay(self, step: str) -> float:
        if step in self._delays:
            return max(self._delays[step], 0.0)
        return max(self.config.sim_delay, 0.0) * STEP_SECONDS.get(step, 0.0)

    # ------------------------------------------------------------ bookkeeping
    @staticmethod
    def _next_domid(state: State) -> int:
        # Xen never reuses a domid while it runs; neither do we.
        domid: int = state["next_domid"]
        state["next_domid"] = domid + 1
        return domid

    # xl's monitor log, in xl's own words (xl_vmcontrol.c), so the real parser reads it.
    def _xl_log(self, state: State, name: str, *lines: str) -> None:
        log = state["xl_logs"].setdefault(name, [])
        log.extend(lines)
        del log[:-EVENTS_LIMIT]

    def _xl_log_waiting(self, state: State, name: str, domid: int, new_file: bool = False) -> None:
        if new_file:  # `xl create` and `xl restore` rotate the log
            state["xl_logs"][name] = []
        self._xl_log(state, name, f"Waiting for domain {name} (domid {domid}) to die [pid {4000 + domid}]")

    def _xl_log_restart(self, state: State, name: str, domid: int) -> None:
        self._xl_log(
            state,
            name,
            f"Domain {domid} has shut down, reason code 1 0x1",
            "Action for shutdown reason code 1 is restart",
            f"Domain {domid} needs to be cleaned up: destroying the domain",
            "Done. Rebooting now",
        )

    def _event(self, state: State, text: str) -> None:
        self._dirty = True
        state["events"].append(f"{time.time():.3f} {text}")
        del state["events"][:-EVENTS_LIMIT]
