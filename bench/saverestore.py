#!/usr/bin/env python3
"""Benchmark: `xl save` and `xl restore` of a 256 MiB guest on the Xen testbed (issue 16, class hours).

    flock /tmp/xenpanel-testbed.lock .venv/bin/python bench/saverestore.py      # boots its own testbed
    .venv/bin/python bench/saverestore.py --testbed-port N                      # a running one (testbed.py up)

A busybox guest of the testbed's tiny template, with 256 MiB, is built and booted through labs.dom0 (as
the provisioning job does), and a loop in it writes a counter to /root/counter every second. Each round
saves it to /var/lib/xen/save (the class hours' `save` job: labs.jobs.class_hours) and restores it, and
reads the counter before and after: it must go on from where it was (the process survived), not start
again. The boot (xl create until the guest's boot marker) is timed once, for comparison.

Goals: in every round the counter goes on after the restore, and xl restore (median) takes less time than
booting the guest afresh (else waking a class by restore would be no better than starting its VMs).
Run alone, bench/savepoint.py's driver runs it: figures last, with the machine's load average (`uptime`),
exit 1 when a goal is missed. `xl_save_restore` is a part of that file's PARTS' shape.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from clone import timed  # noqa: E402  (bench/clone.py: a stopwatch)

from labs.dom0.base import DomainSpec, GuestFiles, HostConfig, save_path  # noqa: E402
from labs.dom0.host import XenHost  # noqa: E402
from labs.dom0.runner import Runner  # noqa: E402
from tests.testbed import guest_shell  # noqa: E402

NAME = "xpbench-sr"
MEMORY_MB = 256
TEMPLATE_DIR = "/srv/xenpanel/templates/tiny"
BOOTED = "XENPANEL-BOOTED"
BOOT_TIMEOUT = 900


def _build(host: XenHost, vg: str) -> str:
    """The guest's root from the tiny template, its files and config (what the provisioning job writes)."""
    root = host.create_volume(f"vm-{NAME}.raiz", 64)
    host.clone_template(TEMPLATE_DIR, root.path, "ext4", "mkfs")
    host.customize_rootfs(
        root.path,
        GuestFiles(
            hostname=NAME,
            fqdn=f"{NAME}.bench",
            address="10.79.0.10",
            netmask="255.255.255.0",
            gateway="10.79.0.1",
            broadcast="10.79.0.255",
        ),
    )
    spec = DomainSpec(
        name=NAME,
        kernel="/boot/vmlinux-domu",
        ramdisk="/boot/initrd-domu.img",
        memory_mb=MEMORY_MB,
        root_target=f"/dev/{vg}/{root.name}",
        mac="00:16:3e:79:00:10",
    )
    host.write_config(spec, autostart=False)
    return root.name


def _clean(host: XenHost, runner: Runner) -> None:
    if any(d.name == NAME for d in host.list_domains()):
        host.destroy(NAME)
    runner.run(["rm", "-f", save_path(NAME)], check=False)
    host.remove_config(NAME)
    host.remove_volume(f"vm-{NAME}.raiz")


def xl_save_restore(runner: Runner, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Boot once, then `rounds` times: counter, xl save, xl restore, counter."""
    host = XenHost(HostConfig(name="bench", volume_group=args.testbed_vg), runner=runner)
    saves: list[float] = []
    restores: list[float] = []
    counts: list[tuple[int, int]] = []
    misses: list[str] = []
    _clean(host, runner)
    try:
        _build(host, args.testbed_vg)

        def boot() -> None:
            host.create(NAME)
            guest_shell.wait_marker(runner, NAME, BOOTED, timeout=BOOT_TIMEOUT)

        boot_s = timed(boot)
        guest_shell.start_counter(runner, NAME)
        for _ in range(args.rounds):
            before = guest_shell.counter(runner, NAME)
            saves.append(timed(lambda: host.save(NAME, save_path(NAME))))
            restores.append(timed(lambda: host.restore(save_path(NAME))))
            host.remove_saved_image(save_path(NAME))
            time.sleep(2)
            after = guest_shell.counter(runner, NAME)
            counts.append((before, after))
            if not after > before:
                misses.append(f"the counter did not go on after a restore ({before} -> {after})")
    finally:
        _clean(host, runner)
    save_s, restore_s = statistics.median(saves), statistics.median(restores)
    lines = [
        f"xl save / restore of a {MEMORY_MB} MiB guest ({args.rounds} rounds, medians):",
        f"  xl save    {save_s:6.1f}s  (each: {', '.join(f'{s:.1f}' for s in saves)})",
        f"  xl restore {restore_s:6.1f}s  (each: {', '.join(f'{s:.1f}' for s in restores)})",
        f"  boot (xl create to the boot marker) {boot_s:6.1f}s, once",
        "  counter before -> after each round: " + ", ".join(f"{a}->{b}" for a, b in counts),
    ]
    if restore_s >= boot_s:
        misses.append(f"xl restore {restore_s:.1f}s is not faster than a boot {boot_s:.1f}s")
    lines.append(f"  restore faster than a boot: {'PASS' if restore_s < boot_s else 'MISSED'}")
    return lines, misses


if __name__ == "__main__":
    # bench/savepoint.py's driver (testbed, figures, load average, exit status) with this part alone.
    import savepoint

    savepoint.PARTS[:] = [xl_save_restore]
    sys.exit(savepoint.main(sys.argv[1:]))
