"""The simulated toolstack: domains as `xl list` shows them, with Xen's memory rules and time.

- memory like Xen: a `create` that does not fit fails with libxc's "Out of
  memory"; `mem_set` is capped by maxmem and a balloon can only grow into
  free memory (accounting.py counts it);
- states as `xl list` prints them, with time: `shutdown` leaves the domain in
  `---s--` for a while, `reboot` comes back with a new domid (state.py
  settles both at the next operation); a guest whose root volume holds no
  filesystem panics at boot and is gone.

Failures carry the stderr xl would print, classified by the real
`toolstack.classify_error`.
"""

from __future__ import annotations

import copy
import time

from .. import names
from ..base import SAVE_DIR, Domain, HostInfo, save_path
from ..errors import CommandTimeout, InvalidState
from ..toolstack import XL_LOG_DIR, XL_LOG_TAIL_BYTES, classify_error, parse_restart_failure
from . import accounting, load
from .configs import ConfigMixin
from .failures import out_of_memory_stderr
from .state import Record, State

XEN_VERSION = "4.17.5"
POLL_SECONDS = 0.02


def state_string(d: Record) -> str:
    """The six-column `xl list` state of a domain record."""
    if d.get("crashed"):
        return "----c-"
    if d.get("gone_at") is not None or d.get("reboot_at") is not None:
        return "---s--"
    if d.get("paused"):
        return "--p---"
    return "-b----"


class ToolstackMixin(ConfigMixin):
    """The `Dom0Host` toolstack verbs, `info`, and `crash` for tests; `create` starts a written config."""

    def info(self) -> HostInfo:
        with self._op("info", [self._ts("info")], readonly=True) as state:
            free = accounting.free_memory(self.config, state)
        return HostInfo(
            total_memory_mb=self.config.sim_total_memory_mb,
            free_memory_mb=free,
            xen_version=str(self.config.extra.get("sim_xen_version", XEN_VERSION)),
            nr_cpus=self._nr_cpus,
        )

    def list_domains(self) -> list[Domain]:
        argvs = [self._ts("list"), self._ts("list", "-l")] if self.toolstack == "xl" else [self._ts("list")]
        with self._op("list_domains", argvs, readonly=True) as state:
            now = time.time()
            guests = [
                Domain(
                    n,
                    d["domid"],
                    d["memory_mb"],
                    d["vcpus"],
                    state_string(d),
                    maxmem_mb=d["maxmem_mb"],
                    cpu_seconds=round(load.cpu_seconds(n, d, now), 1),
                )
                for n, d in state["domains"].items()
            ]
            dom0_cpu = round(load.dom0_cpu_seconds(state, now), 1)
        dom0 = Domain(
            "Domain-0", 0, self.config.dom0_reserve_mb, self._nr_cpus, "r-----", maxmem_mb=None, cpu_seconds=dom0_cpu
        )
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

    def _start(self, state: State, name: str, spec: Record, disks: list[tuple[str, str]], now: float) -> None:
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
        load.rebuild(d, now, load.choose_load(state))
        state["domains"][name] = d
        self._xl_log_waiting(state, name, d["domid"], new_file=True)
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

    def _request_power(self, state: State, name: str, d: Record, what: str) -> None:
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
            _require_live(name, d, argv)
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
            _require_live(name, d, argv)
            if d["paused"]:
                # Xen itself would nest pause counts (two unpauses needed);
                # the panel treats a second pause as a mistake.
                raise InvalidState(f"domain {name} ({d['domid']}) is already paused", argv=argv)
            d["paused"] = True
            load.freeze(d, time.time())

    def unpause(self, name: str) -> None:
        names.domain_name(name)
        argv = self._ts("unpause", name)
        with self._op("unpause", [argv], name) as state:
            d = self._domain(state, name, argv)
            _require_live(name, d, argv)
            if not d["paused"]:
                stderr = (
                    f"libxl: error: libxl_domain.c:652:libxl_domain_unpause: "
                    f"Domain {d['domid']}:Unpausing domain: Invalid argument\n"
                )
                raise classify_error(argv, 1, stderr)
            d["paused"] = False
            load.resume(d, time.time())
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
            _require_live(name, d, argv)
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
        mkdir = ["mkdir", "-p", "-m", "0700", path.rsplit("/", 1)[0] or "/"]
        with self._op("save", [mkdir, argv], name, main=1) as state:
            d = self._domain(state, name, argv)
            _require_live(name, d, argv)
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
            load.rebuild(d, time.time(), str(old.get("load", "idle")))
            state["domains"][name] = d
            self._xl_log_waiting(state, name, d["domid"], new_file=True)
            self._event(state, f"{name}: restored from {path} as domain {d['domid']}")

    def saved_image_exists(self, path: str) -> bool:
        names.abs_path(path)
        with self._op("saved_image_exists", [["test", "-f", path]], path, readonly=True) as state:
            return path in state["saved"]

    def remove_saved_image(self, path: str) -> bool:
        names.abs_path(path)
        with self._op("remove_saved_image", [["test", "-f", path]], path) as state:
            if state["saved"].pop(path, None) is None:
                return False
            self._log([["rm", "-f", "--", path]])
            self._event(state, f"removed save image {path}")
            return True

    def restart_failure(self, name: str) -> str:
        names.domain_name(name)
        if self.toolstack != "xl":
            return ""
        argv = ["tail", "-c", str(XL_LOG_TAIL_BYTES), "--", f"{XL_LOG_DIR}/xl-{name}.log"]
        with self._op("restart_failure", [argv], name, readonly=True) as state:
            return parse_restart_failure("\n".join(state["xl_logs"].get(name, [])))

    def guest_reboot(self, name: str, restart_fails: bool = False) -> None:
        """The guest reboots itself (`reboot` typed in it), as on_reboot="restart" has xl build it again.
        With `restart_fails` (tests), that build fails as libxl's hotplug timeout made it fail on the testbed."""
        self._from_inside(name, "reboot", restart_fails)

    def guest_poweroff(self, name: str) -> None:
        """The guest powers itself off (`poweroff` typed in it): on_poweroff="destroy", it is gone."""
        self._from_inside(name, "poweroff")

    def _from_inside(self, name: str, what: str, restart_fails: bool = False) -> None:
        names.domain_name(name)
        with self._locked() as state:
            d = self._domain(state, name, self._ts("list", name))
            _require_live(name, d, self._ts("list", name))
            d["restart_fails"] = restart_fails
            self._request_power(state, name, d, what)

    def console_command(self, name: str) -> list[str]:
        return self._ts("console", names.domain_name(name))

    def power_cycle(self, xendomains: bool = True) -> None:
        """dom0 shuts down and boots again (tests). With the guide's xendomains, its stop saves every guest to
        SAVE_DIR and its start restores each image and deletes it; without it the guests are simply gone."""
        with self._locked() as state:
            for name, d in list(state["domains"].items()):
                if xendomains:
                    path = save_path(name)
                    state["saved"][path] = {"name": name, "domain": copy.deepcopy(d), "saved_at": time.time()}
                del state["domains"][name]
            self._event(state, "dom0 shut down" + (" (xendomains saved its guests)" if xendomains else ""))
            state["booted_at"] = time.time()
        if not xendomains:
            return
        with self._locked(readonly=True) as state:
            images = sorted(p for p in state["saved"] if p.startswith(SAVE_DIR + "/"))
        for path in images:
            self.restore(path)
            self.remove_saved_image(path)

    def crash(self, name: str) -> None:
        """Make a guest crash and stay (state ----c-), as with on_crash="preserve" (tests)."""
        names.domain_name(name)
        with self._locked() as state:
            d = self._domain(state, name, self._ts("list", name))
            load.freeze(d, time.time())
            d["crashed"] = True
            self._event(state, f"{name}: domain {d['domid']} crashed")

    # ------------------------------------------------------------ helpers
    def _ts(self, *args: str) -> list[str]:
        return [self.toolstack, *args]

    def _domain(self, state: State, name: str, argv: list[str]) -> Record:
        d: Record | None = state["domains"].get(name)
        if d is None:
            if self.toolstack == "xm":
                stderr = f"Error: Domain '{name}' does not exist.\n"
            else:
                stderr = f"{name} is an invalid domain identifier (rc=-6)\n"
            raise classify_error(argv, 1, stderr)
        return d

    def _apply_balloon(self, state: State, d: Record) -> None:
        """Move a running guest's memory towards its target; it only grows into free memory."""
        target = d["target_mb"]
        if target <= d["memory_mb"]:
            d["memory_mb"] = target
        else:
            d["memory_mb"] = min(target, d["memory_mb"] + max(accounting.free_memory(self.config, state), 0))

    def _check_disks(self, state: State, disks: list[tuple[str, str]], argv: list[str]) -> None:
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

    def _check_memory(self, state: State, need_mb: int, argv: list[str]) -> None:
        if need_mb > accounting.free_memory(self.config, state):
            raise classify_error(argv, 3, out_of_memory_stderr(state["next_domid"]))

    @staticmethod
    def _check_name_free(state: State, name: str, argv: list[str]) -> None:
        if name in state["domains"]:
            stderr = (
                f"libxl: error: libxl_domain.c:341:libxl__domain_rename: Domain {state['next_domid']}:"
                f'Domain with name "{name}" already exists.\n'
            )
            raise classify_error(argv, 3, stderr)


def _require_live(name: str, d: Record, argv: list[str]) -> None:
    """Refuse verbs that make no sense on a crashed or shutting-down domain."""
    if d.get("crashed"):
        raise InvalidState(f"domain {name} ({d['domid']}) has crashed: destroy it first", argv=argv)
    if d.get("gone_at") is not None or d.get("reboot_at") is not None:
        raise InvalidState(f"domain {name} ({d['domid']}) is shutting down", argv=argv)
