"""Believable load for the simulated host: the counters `xl list` and `xentop` show, growing as a real guest's do.

A domain's counters are functions of how long it has run since it was built:
paused (or crashed) time does not count, and a reboot or a restore builds a
new domain whose counters start again from 0, as on Xen. Each domain has a
profile:

- "idle": a guest at its login prompt: 0.2-1 % of its vCPUs in a slow swing,
  a trickle of network (ARP, NTP, someone's ssh) and of disk writes (logs);
- "spin": a student's runaway loop: its vCPUs 94-98 % busy (the same
  network and disk trickle).

Both begin with a boot: about 20 s at 60 % of a vCPU, reading 30 MB of the
root disk. The first guest created on a host while no guest spins is the
demo's runaway ("spin"); every other guest idles. A reboot ends the runaway
(the new domain idles), as it ends a student's loop. `set_load()` picks a
profile (tests, benchmarks).

Pure functions of a domain's record and the time, plus `LoadMixin`
(`domain_counters()`: what `xentop -b -i 2 -d 1 -f` would print, without
running it).
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass

from .. import names
from ..base import DomainCounters
from ..toolstack import XENTOP_ARGV
from .faults import FaultsMixin
from .state import Record, State


@dataclass(frozen=True)
class Profile:
    cpu: float  # mean busy share of each vCPU
    wobble: float  # amplitude of a slow swing around it; <= cpu, so the counter never goes back
    period: float  # seconds of one swing
    rx: float  # network bytes received per second
    tx: float  # network bytes sent per second
    read: float  # disk bytes read per second, after the boot
    write: float  # disk bytes written per second


PROFILES: dict[str, Profile] = {
    "idle": Profile(cpu=0.006, wobble=0.004, period=420.0, rx=600.0, tx=250.0, read=200.0, write=2048.0),
    "spin": Profile(cpu=0.96, wobble=0.015, period=90.0, rx=600.0, tx=250.0, read=200.0, write=2048.0),
}
BOOT_SECONDS = 20.0
BOOT_CPU = 0.6  # of one vCPU, on top of the profile's share of what is left
BOOT_READ_BYTES = 30 * 2**20
READ_REQUEST_BYTES = 16 * 1024  # average request sizes, for xentop's VBD_RD / VBD_WR columns
WRITE_REQUEST_BYTES = 8 * 1024
DOM0_CPU = 0.02  # dom0's own share of one CPU (xenstored, backends, the panel's worker)


def run_seconds(d: Record, now: float) -> float:
    """Seconds the domain has run since it was built (not counting paused or crashed time)."""
    base = float(d.get("run_s", 0.0))
    since = d.get("run_at", d.get("started_at"))
    if since is None or d.get("paused") or d.get("crashed"):
        return base
    return base + max(now - float(since), 0.0)


def freeze(d: Record, now: float) -> None:
    """The domain stops running (pause, crash): keep what it ran so far."""
    d["run_s"], d["run_at"] = run_seconds(d, now), None


def resume(d: Record, now: float) -> None:
    d["run_at"] = now


def rebuild(d: Record, now: float, load: str = "idle") -> None:
    """A new domain (create, reboot, restore): counters from 0."""
    d["run_s"], d["run_at"], d["load"], d["cpu_offset"] = 0.0, now, load, 0.0


def _profile(d: Record) -> Profile:
    return PROFILES.get(str(d.get("load", "idle")), PROFILES["idle"])


def _phase(name: str) -> float:
    return (zlib.crc32(name.encode()) % 6283) / 1000.0


def cpu_seconds(name: str, d: Record, now: float) -> float:
    """The domain's CPU time (xl list's Time(s)) after it ran run_seconds()."""
    return _cpu_curve(name, d, run_seconds(d, now)) + float(d.get("cpu_offset", 0.0))


def _cpu_curve(name: str, d: Record, u: float) -> float:
    p = _profile(d)
    vcpus = max(int(d.get("vcpus", 1)), 1)
    w = 2 * math.pi / p.period
    phase = _phase(name)
    swing = p.wobble / w * (math.sin(w * u + phase) - math.sin(phase))
    return vcpus * (p.cpu * u + swing) + BOOT_CPU * (1 - p.cpu) * min(u, BOOT_SECONDS)


def choose_load(state: State) -> str:
    """The profile of a domain being created: "spin" when no present domain spins, else "idle"."""
    spinning = any(d.get("load") == "spin" for d in state["domains"].values())
    return "idle" if spinning else "spin"


def _xentop_state(d: Record) -> str:
    # xentop's letter order is d s b c p r.
    if d.get("crashed"):
        return "---c--"
    if d.get("gone_at") is not None or d.get("reboot_at") is not None:
        return "-s----"
    if d.get("paused"):
        return "----p-"
    return "-----r" if d.get("load") == "spin" else "--b---"


def counters(name: str, d: Record, now: float, maxmem_kb: int | None) -> DomainCounters:
    u = run_seconds(d, now)
    p = _profile(d)
    read = BOOT_READ_BYTES * min(u, BOOT_SECONDS) / BOOT_SECONDS + p.read * u
    written = p.write * u
    cpu_now = cpu_seconds(name, d, now)
    return DomainCounters(
        name=name,
        state=_xentop_state(d),
        cpu_seconds=int(cpu_now),
        # The second block's figure: the last second's share of one physical CPU.
        cpu_percent=round(100.0 * (cpu_now - cpu_seconds(name, d, now - 1.0)), 1),
        mem_kb=int(d["memory_mb"]) * 1024,
        maxmem_kb=maxmem_kb,
        vcpus=int(d.get("vcpus", 1)),
        nets=1,
        net_tx_kb=int(p.tx * u) // 1024,
        net_rx_kb=int(p.rx * u) // 1024,
        vbds=len(d.get("disks", [])),
        vbd_oo=0,
        vbd_rd=int(read) // READ_REQUEST_BYTES,
        vbd_wr=int(written) // WRITE_REQUEST_BYTES,
        vbd_rsect=int(read) // 512,
        vbd_wsect=int(written) // 512,
    )


def dom0_cpu_seconds(state: State, now: float) -> float:
    return DOM0_CPU * max(now - float(state.get("booted_at") or now), 0.0)


class LoadMixin(FaultsMixin):
    """`domain_counters()` (xentop); `set_load()` and `backdate()` for tests."""

    def domain_counters(self) -> list[DomainCounters]:
        with self._op("xentop", [list(XENTOP_ARGV)], readonly=True) as state:
            now = time.time()
            rows = [counters(n, d, now, int(d["maxmem_mb"]) * 1024) for n, d in state["domains"].items()]
            dom0_cpu = dom0_cpu_seconds(state, now)
        dom0 = DomainCounters(
            name="Domain-0",
            state="-----r",
            cpu_seconds=int(dom0_cpu),
            cpu_percent=DOM0_CPU * 100,
            mem_kb=self.config.dom0_reserve_mb * 1024,
            maxmem_kb=None,
            vcpus=self._nr_cpus,
            nets=0,
            net_tx_kb=0,
            net_rx_kb=0,
            vbds=0,
            vbd_oo=0,
            vbd_rd=0,
            vbd_wr=0,
            vbd_rsect=0,
            vbd_wsect=0,
        )
        return [dom0, *rows]

    def backdate(self, name: str, seconds: float) -> None:
        """Make a domain look as if it had been running `seconds` longer (tests: past its boot)."""
        names.domain_name(name)
        with self._locked() as state:
            d = state["domains"].get(name)
            if d is None:
                raise KeyError(name)
            d["run_s"] = float(d.get("run_s", 0.0)) + seconds

    def set_load(self, name: str, load: str) -> None:
        """Give a domain the "idle" or "spin" profile from now on (its CPU time so far is kept)."""
        names.domain_name(name)
        if load not in PROFILES:
            raise ValueError(f"unknown load {load!r}; choose one of {sorted(PROFILES)}")
        with self._locked() as state:
            d = state["domains"].get(name)
            if d is None:
                raise KeyError(name)
            now = time.time()
            # Keep the counter continuous: what ran so far becomes an offset of the new profile's curve.
            before = cpu_seconds(name, d, now)
            d["load"] = load
            d["cpu_offset"] = before - _cpu_curve(name, d, run_seconds(d, now))
            self._event(state, f"{name}: load {load}")
