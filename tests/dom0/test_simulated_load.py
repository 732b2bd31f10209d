"""The simulated dom0's load: CPU time, network and disk counters that behave like a real guest's.

An idle guest stays near 0 %, the demo's runaway guest spins near 97 %, a
pause stops the clock, a reboot builds a new domain whose counter starts
again. The curves are pure functions of a domain's record and the time, so
most checks read them at chosen moments instead of sleeping.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labs.dom0.base import DomainSpec, HostConfig
from labs.dom0.simulated import SimulatedHost, load
from labs.dom0.toolstack import XENTOP_ARGV


@pytest.fixture
def sim(tmp_path: Path) -> SimulatedHost:
    return SimulatedHost(HostConfig(name="dom0-load", volume_group="vg0", sim_dir=str(tmp_path / "sim")))


def _start(sim: SimulatedHost, name: str, vcpus: int = 1) -> None:
    root = sim.create_volume(f"vm-{name}.raiz", 64)
    sim.clone_template("/modelo", root.path, "ext4", "mkfs")
    sim.write_config(DomainSpec(name=name, kernel="/boot/vmlinuz", memory_mb=128, root_target=root.path, vcpus=vcpus))
    sim.create(name)


def _percent(name: str, record: dict, start: float, end: float) -> float:
    """CPU % of the domain's vCPUs between two moments, as the panel works it out from two ticks."""
    used = load.cpu_seconds(name, record, end) - load.cpu_seconds(name, record, start)
    return 100 * used / ((end - start) * record["vcpus"])


def test_the_first_guest_spins_and_the_next_idles(sim):
    _start(sim, "runaway")
    _start(sim, "quiet")
    doms = sim.domains()
    assert (doms["runaway"]["load"], doms["quiet"]["load"]) == ("spin", "idle")
    t0 = doms["quiet"]["run_at"]
    # After the boot (about 20 s at 60 %), minute by minute over an hour.
    for minute in range(1, 60):
        start, end = t0 + 60 * minute, t0 + 60 * (minute + 1)
        assert 0.1 <= _percent("quiet", doms["quiet"], start, end) <= 1.2
        assert 93 <= _percent("runaway", doms["runaway"], start, end) <= 99.5
    assert 30 <= _percent("quiet", doms["quiet"], t0, t0 + 10) <= 65  # booting


def test_counters_never_go_back_while_the_domain_lives(sim):
    _start(sim, "g1", vcpus=2)
    d = sim.domains()["g1"]
    t0 = d["run_at"]
    times = [t0 + s * 0.7 for s in range(20000)]
    cpu = [load.cpu_seconds("g1", d, t) for t in times]
    assert all(b >= a for a, b in zip(cpu, cpu[1:], strict=False))
    # Two vCPUs both spin: never more CPU time than two CPUs' worth of seconds.
    assert cpu[-1] <= 2 * (times[-1] - t0) + 1e-6
    rows = [load.counters("g1", d, t, None) for t in times[::500]]
    for field in ("net_rx_kb", "net_tx_kb", "vbd_rsect", "vbd_wsect", "vbd_rd", "vbd_wr"):
        values = [getattr(r, field) for r in rows]
        assert values == sorted(values) and values[-1] > 0, field


def test_list_domains_and_xentop_report_the_curves(sim):
    _start(sim, "g1")
    listed = {d.name: d for d in sim.list_domains()}
    assert listed["g1"].cpu_seconds is not None and listed["Domain-0"].cpu_seconds is not None
    counters = {c.name: c for c in sim.domain_counters()}
    assert set(counters) == {"Domain-0", "g1"}
    g1 = counters["g1"]
    assert (g1.mem_kb, g1.maxmem_kb, g1.vcpus, g1.nets, g1.vbds) == (128 * 1024, 128 * 1024, 1, 1, 1)
    assert g1.state == "-----r" and counters["Domain-0"].maxmem_kb is None
    # It is what `xentop -b -i 2 -d 1 -f` would print; nothing ran.
    assert sim.history[-1] == XENTOP_ARGV


def test_a_pause_stops_the_clock_and_a_reboot_starts_it_again(sim):
    _start(sim, "g1")
    sim.pause("g1")
    paused = sim.domains()["g1"]
    at = paused["run_s"]
    assert load.run_seconds(paused, paused["run_s"] + 10_000) == at
    sim.unpause("g1")
    d = sim.domains()["g1"]
    assert d["run_at"] is not None and load.run_seconds(d, d["run_at"] + 5) == pytest.approx(at + 5)

    before = {x.name: x for x in sim.list_domains()}["g1"]
    sim.reboot("g1")
    after = {x.name: x for x in sim.list_domains()}["g1"]
    assert after.domid != before.domid
    # A new domain: its CPU time starts from 0 (lower than the old one's once that had run a while),
    # and the runaway loop did not survive the reboot.
    rebuilt = sim.domains()["g1"]
    assert rebuilt["run_s"] == 0.0 and rebuilt["load"] == "idle"
    assert load.cpu_seconds("g1", rebuilt, rebuilt["run_at"]) == 0.0


def test_set_load_keeps_the_counter_continuous(sim):
    _start(sim, "g1")
    _start(sim, "g2")
    sim.set_load("g2", "spin")
    d = sim.domains()["g2"]
    assert d["load"] == "spin"
    now = d["run_at"] + 100
    assert load.cpu_seconds("g2", d, now + 60) - load.cpu_seconds("g2", d, now) > 50
    with pytest.raises(ValueError):
        sim.set_load("g2", "melt")


def test_backdate_ages_a_domain_past_its_boot(sim):
    _start(sim, "g1")
    _start(sim, "g2")
    sim.backdate("g2", 3600)
    d = sim.domains()["g2"]
    assert load.run_seconds(d, d["run_at"]) == 3600
    assert 0.1 <= _percent("g2", d, d["run_at"], d["run_at"] + 60) <= 1.2  # idle, not booting
