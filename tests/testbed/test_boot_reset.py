"""Testbed._start resets a machine whose dom0 kernel stalls, and keeps the ssh port; no QEMU here.

A stand-in "QEMU" (a short Python process) writes the serial console: nothing on a stalled boot, the
boot stages on a good one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.testbed import testbed as tb

GOOD = "(XEN) Xen version 4.17.7\\nXENPANEL-INITRD role=dom0\\nXENPANEL-DOM0-READY\\n"


def _bed(tmp_path: Path, monkeypatch, stalls: int) -> tb.Testbed:
    bed = tb.Testbed(tmp_path / "out")
    bed.run_dir = tmp_path / "run"
    bed.run_dir.mkdir()
    bed.ssh_port = 40123  # as power_on() finds it
    count = tmp_path / "boots"
    count.write_text("0")
    script = (
        "import pathlib, time\n"
        f"c = pathlib.Path({str(count)!r}); n = int(c.read_text()) + 1; c.write_text(str(n))\n"
        f"if n > {stalls}: pathlib.Path({str(bed.serial_log)!r}).write_text({GOOD!r}.replace('\\\\n', '\\n'))\n"
        "time.sleep(30)\n"
    )
    monkeypatch.setattr(bed, "_qemu_argv", lambda: [sys.executable, "-c", script])
    monkeypatch.setattr(bed, "_start_ssh_master", lambda: None)
    monkeypatch.setattr(bed, "ssh", lambda *a, **k: None)
    monkeypatch.setattr(tb, "KERNEL_STALL_SECONDS", 1.0)
    return bed


def test_a_stalled_dom0_kernel_is_reset_and_the_boot_goes_on_on_the_same_port(tmp_path, monkeypatch):
    bed = _bed(tmp_path, monkeypatch, stalls=1)
    try:
        timings = bed._start()
    finally:
        bed.kill()
    assert timings["boot_resets"] == 1 and "dom0_ready_s" in timings
    assert bed.ssh_port == 40123
    assert (tmp_path / "boots").read_text() == "2"
    assert len(list(bed.run_dir.glob("serial-*-stalled.log"))) == 1


def test_it_gives_up_after_its_resets(tmp_path, monkeypatch):
    bed = _bed(tmp_path, monkeypatch, stalls=99)
    with pytest.raises(tb.BootStalled, match="did not start within"):
        bed._start()
    assert (tmp_path / "boots").read_text() == str(1 + tb.STALL_RESETS)
    assert bed.proc is None


def test_a_good_boot_is_not_reset(tmp_path, monkeypatch):
    bed = _bed(tmp_path, monkeypatch, stalls=0)
    try:
        timings = bed._start()
    finally:
        bed.kill()
    assert "boot_resets" not in timings and (tmp_path / "boots").read_text() == "1"
