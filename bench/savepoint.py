#!/usr/bin/env python3
"""Benchmark: a save point and a return to it, for a small and a large disk, on the Xen testbed.

    flock /tmp/xenpanel-testbed.lock .venv/bin/python bench/savepoint.py         # boots its own testbed
    .venv/bin/python bench/savepoint.py --testbed-port N                         # a running one (testbed.py up)

What is timed is the disk work of the panel's save point jobs (labs.jobs.save_points), through the same
labs.dom0 calls on a real dom0 with device-mapper: "take" is the save point (thin: `lvcreate -s` of the
root; plain LVM: a new LV and `dd` of the root into it), "return" is removing the root and a fresh clone
of the save point (thin snapshot, or LV + dd). The root is written full first (dd from /dev/zero: thin
volumes then map every block), so a copy has all of it to copy. Shutting the VM down and starting it
again do not depend on the disk's size and are left out (bench/e2e.py times boots).

Goal: with a thin pool, take + return (median over the rounds) for the large disk is at most 1.5 times
the small disk's. The full copies are timed beside them for comparison (they grow with the disk; no goal).
Prints its figures last, with the machine's load average (`uptime`), and exits 1 when the goal is missed.
Other parts of issue 16's benchmark (xl save / restore) add their own function to PARTS.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clone import testbed_runner, timed  # noqa: E402  (bench/clone.py: boot or attach, and a stopwatch)

from labs.dom0.base import HostConfig  # noqa: E402
from labs.dom0.host import XenHost  # noqa: E402
from labs.dom0.runner import Runner  # noqa: E402

THIN_RATIO_GOAL = 1.5
POOL = "xpbench-sp-pool"

# A part runs on the testbed and returns (figure lines, missed goals).
Part = Callable[[Runner, argparse.Namespace], tuple[list[str], list[str]]]


def _round_trip(host: XenHost, method: str, root: str, point: str) -> tuple[float, float]:
    """(take, return) seconds: what labs.jobs.save_points does to the volumes."""
    clone = host.snapshot_volume if method == "thin" else host.copy_volume
    take = timed(lambda: clone(root, point))

    def back() -> None:
        host.remove_volume(root)
        clone(point, root)

    back_s = timed(back)
    host.remove_volume(point)  # the next round takes a new one
    return take, back_s


def save_points(runner: Runner, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Thin snapshots and full copies of a small and a large root, take and return, interleaved rounds."""
    sizes = {"small": args.small_mb, "large": args.large_mb}
    host = XenHost(HostConfig(name="bench", volume_group=args.testbed_vg, thin_pool=POOL), runner=runner)
    made: list[str] = []
    times: dict[tuple[str, str], dict[str, list[float]]] = {}
    try:
        host.lvm.create_thin_pool(sum(sizes.values()) + 256)
        made.append(POOL)
        for method in ("thin", "copy"):
            for label, mb in sizes.items():
                root = f"xpbench-sp-{method}-{label}.raiz"
                host.lvm.create(root, mb, thin=method == "thin")
                made.insert(0, root)
                # Exactly the volume's size (LVM sizes are whole 4 MiB extents): past its end dd fails (ENOSPC).
                full = [f"of={host.lvm.path(root)}", "bs=1M", f"count={mb}", "oflag=direct", "status=none"]
                runner.run(["dd", "if=/dev/zero", *full], timeout=1800)
                times[(method, label)] = {"take": [], "return": []}
        for i in range(args.rounds):
            # Alternate the order, so a slow moment of the machine hits both sizes alike.
            order = list(sizes) if i % 2 == 0 else list(reversed(sizes))
            for method in ("thin", "copy"):
                for label in order:
                    root = f"xpbench-sp-{method}-{label}.raiz"
                    take, back = _round_trip(host, method, root, f"xpbench-sp-{method}-{label}.sp")
                    times[(method, label)]["take"].append(take)
                    times[(method, label)]["return"].append(back)
    finally:
        for name in made:
            host.remove_volume(name)
            if name in (f"xpbench-sp-{m}-{s}.raiz" for m in ("thin", "copy") for s in sizes):
                host.remove_volume(name.removesuffix(".raiz") + ".sp")
    lines = [f"save points ({args.rounds} rounds, medians; VG {args.testbed_vg}):"]
    totals: dict[tuple[str, str], float] = {}
    for (method, label), t in times.items():
        take, back = statistics.median(t["take"]), statistics.median(t["return"])
        totals[(method, label)] = statistics.median(a + b for a, b in zip(t["take"], t["return"], strict=True))
        lines.append(
            f"  {method:4} {label:5} ({sizes[label]:5d} MiB): take {take:6.2f}s, return {back:6.2f}s,"
            f" both {totals[(method, label)]:6.2f}s"
        )
    misses = []
    for method in ("thin", "copy"):
        ratio = totals[(method, "large")] / totals[(method, "small")]
        if method == "thin":
            ok = ratio <= THIN_RATIO_GOAL
            verdict = "PASS" if ok else "MISSED"
            if not ok:
                misses.append(f"thin save point + return, large/small {ratio:.2f}x > {THIN_RATIO_GOAL}")
            lines.append(f"  thin large/small: {ratio:.2f}x (goal <= {THIN_RATIO_GOAL}: {verdict})")
        else:
            lines.append(f"  copy large/small: {ratio:.2f}x (full copies grow with the disk; no goal)")
    return lines, misses


PARTS: list[Part] = [save_points]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--testbed-port", type=int, help="ssh port of a running testbed (else one is booted)")
    p.add_argument("--testbed-key", help="its ssh key (default: the testbed dir's ssh/id_ed25519)")
    p.add_argument("--testbed-vg", default="vg0")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--small-mb", type=int, default=64)
    p.add_argument("--large-mb", type=int, default=1024)
    args = p.parse_args(argv)
    runner, close = testbed_runner(args)
    figures: list[str] = []
    misses: list[str] = []
    try:
        for part in PARTS:
            lines, missed = part(runner, args)
            figures += lines
            misses += missed
    finally:
        close()
    print("\n" + "\n".join(figures))
    print("load: " + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    for miss in misses:
        print(f"GOAL MISSED: {miss}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
