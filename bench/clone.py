#!/usr/bin/env python3
"""Benchmark: how long does cloning one guest's root filesystem take, per method?

    .venv/bin/python bench/clone.py                     # debootstrap minbase template (cached)
    .venv/bin/python bench/clone.py --template /modelo --rounds 7
    .venv/bin/python bench/clone.py --target /dev/loop5  # a real block device (it is overwritten!)
    .venv/bin/python bench/clone.py --testbed            # also thin snapshots in the Xen testbed

Local part: the methods are run in interleaved rounds (so machine noise hits
them alike) into the same target, and each median is compared with the
baseline measured in the same run: the bare `mkfs.ext4 -q -F -d TEMPLATE DEV`
command, with no xenpanel code around it. "default" is what provisioning
does (`Rootfs.clone` with its defaults), so its ratio is our overhead.

Testbed part (`--testbed`): inside a real Xen dom0 with device-mapper, a
golden thin volume is made from a small and from a large template, and
guests are cloned from each as thin snapshots (`Lvm.snapshot` + a new fs
UUID). Their time must not grow with the template; `mkfs -d` into a plain LV
is measured there too, for comparison.

Needs root (mount, losetup, tune2fs). Run as a script; it imports labs.dom0
only (no Django).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labs.dom0.base import GuestFiles  # noqa: E402
from labs.dom0.lvm import Lvm  # noqa: E402
from labs.dom0.rootfs import Rootfs  # noqa: E402
from labs.dom0.runner import LocalRunner, Runner  # noqa: E402

CACHE = Path("/var/tmp/xenpanel-bench")
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
GUEST = GuestFiles(
    hostname="virt01",
    fqdn="virt01.lab.example.edu",
    address="192.168.1.4",
    netmask="255.255.255.0",
    gateway="192.168.1.1",
    broadcast="192.168.1.255",
    nameservers=("192.168.1.1",),
)


# --- template -------------------------------------------------------------------
def debian_mirror() -> str:
    """The bookworm mirror apt already uses on this machine (deb822 sources)."""
    text = SOURCES.read_text() if SOURCES.exists() else ""
    for stanza in text.split("\n\n"):
        uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
        suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
        if uris and suites and "bookworm" in suites.group(1).split():
            return uris.group(1)
    return "http://deb.debian.org/debian"


def ensure_template(path: Path | None) -> Path:
    """`--template`, or a debootstrap minbase tree cached under /var/tmp/xenpanel-bench/."""
    if path:
        if not path.is_dir():
            sys.exit(f"--template {path}: not a directory")
        return path.resolve()
    template = CACHE / "minbase-bookworm"
    if (template / "etc/debian_version").exists():
        return template
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="minbase.", dir=CACHE))
    mirror = debian_mirror()
    print(f"building the template: debootstrap --variant=minbase bookworm {template} {mirror} ...", flush=True)
    started = time.monotonic()
    p = subprocess.run(
        ["debootstrap", "--variant=minbase", "bookworm", str(work), mirror],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        sys.exit(f"debootstrap failed (exit {p.returncode}):\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    # Like the recipe's template: no package caches in every guest.
    subprocess.run(["chroot", str(work), "apt-get", "clean"], stdin=subprocess.DEVNULL, capture_output=True)
    work.rename(template)
    print(f"  built in {time.monotonic() - started:.1f} s", flush=True)
    return template


def tree_size(path: Path) -> tuple[int, int]:
    """(bytes, files) of a template tree, for the report."""
    total = files = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_size
            files += 1
    return total, files


# --- local benchmark ------------------------------------------------------------
class Target:
    """An image file recreated empty before each clone, or a block device used as is.

    Recreating the file gives every method the same start (a fresh sparse
    file), as a fresh LV gives every guest the same start on a dom0.
    """

    def __init__(self, path: Path, size_gb: int) -> None:
        self.path = path
        self.size = size_gb * 1024**3
        self.is_block = path.exists() and path.is_block_device()

    def reset(self) -> None:
        if self.is_block:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "wb") as f:
            f.truncate(self.size)

    def remove(self) -> None:
        if not self.is_block:
            self.path.unlink(missing_ok=True)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def run_local(args: argparse.Namespace, template: Path) -> int:
    target = Target(Path(args.target), args.size_gb)
    swap = Target(target.path.with_name("swap.img"), 1) if not target.is_block else None
    runner = LocalRunner()
    rootfs = Rootfs(runner)
    dev = str(target.path)
    baseline, default = "baseline: bare mkfs.ext4 -d", "default: Rootfs.clone() = mkfs.ext4 -d"

    def bare_mkfs() -> None:
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-d", str(template), dev],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
        )

    methods: dict[str, Callable[[], object]] = {
        baseline: bare_mkfs,
        default: lambda: rootfs.clone(str(template), dev),
        "mkfs.ext3 -d": lambda: rootfs.clone(str(template), dev, fs_type="ext3"),
        "recipe: mkfs.ext3 + mount + cp -a": lambda: rootfs.clone(str(template), dev, fs_type="ext3", method="copy"),
        "mkfs.ext4 + mount + cp -a": lambda: rootfs.clone(str(template), dev, fs_type="ext4", method="copy"),
    }
    others = [name for name in methods if name not in (baseline, default)]
    times: dict[str, list[float]] = {name: [] for name in methods}
    extra: dict[str, list[float]] = {"customize (e2tools, 4 files + read-back)": [], "mkswap 1 GiB": []}
    pair_ratios: list[float] = []
    overheads: list[float] = []

    size, files = tree_size(template)
    print(f"template: {template} ({size / 2**20:.0f} MiB, {files} files)")
    print(f"target:   {dev} ({'block device' if target.is_block else f'{args.size_gb} GiB sparse image file'})")
    print(f"rounds:   {args.rounds}, {'cold' if args.cold else 'warm'} page cache\n", flush=True)
    try:
        for rnd in range(args.rounds):
            # Baseline and default run back to back (alternating which goes
            # first) so each pair sees the same machine load; the others
            # rotate so no method always runs first.
            pair = [baseline, default] if rnd % 2 == 0 else [default, baseline]
            k = rnd % len(others)
            for name in pair + others[k:] + others[:k]:
                target.reset()
                if args.cold:
                    drop_caches()
                seen = len(runner.history)
                times[name].append(timed(methods[name]))
                if name == default:
                    # Our own cost: the clone's time minus the mkfs command's.
                    mkfs_s = sum(r.seconds for r in runner.history[seen:] if r.argv[0] == "mkfs.ext4")
                    overheads.append(times[name][-1] - mkfs_s)
                if rnd == 0:
                    rootfs.check(dev)  # each method's result is a clean filesystem
            pair_ratios.append(times[default][-1] / times[baseline][-1])
            # One full guest's remaining steps, on the last clone.
            extra["customize (e2tools, 4 files + read-back)"].append(timed(lambda: rootfs.customize(dev, GUEST)))
            if swap:
                swap.reset()
                extra["mkswap 1 GiB"].append(timed(lambda: rootfs.mkswap(str(swap.path))))
            print(f"  round {rnd + 1}/{args.rounds} done", flush=True)
        rootfs.check(dev)
    finally:
        target.remove()
        if swap:
            swap.remove()

    base = statistics.median(times[baseline])
    print(f"\n{'method':44} {'median':>8} {'min':>7} {'max':>7} {'x baseline':>10}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:44} {med:7.3f}s {min(values):6.3f}s {max(values):6.3f}s {med / base:9.2f}x")
    for name, values in extra.items():
        if values:
            print(f"{name:44} {statistics.median(values):7.3f}s {min(values):6.3f}s {max(values):6.3f}s")
    ratio = statistics.median(pair_ratios)
    own_ms = statistics.median(overheads) * 1000
    print(f"\nxenpanel's own time per default clone (clone minus its mkfs): median {own_ms:.1f} ms")
    print(f"default / baseline, median of {len(pair_ratios)} back-to-back pairs: {ratio:.2f}x")
    verdict = "PASS" if ratio <= 1.1 else "FAIL"
    print(f"goal: default <= 1.10x baseline: {verdict}")
    return 0 if ratio <= 1.1 else 1


# --- testbed benchmark ----------------------------------------------------------
def testbed_runner(args: argparse.Namespace):
    """(runner, closer): attach to a running testbed by port, or boot one."""
    sys.path.insert(0, str(ROOT / "tests" / "testbed"))
    from testbed import Testbed, testbed_dir

    if args.testbed_port:
        from labs.dom0.runner import SshRunner

        key = Path(args.testbed_key or testbed_dir() / "ssh" / "id_ed25519")
        return SshRunner("root@127.0.0.1", port=args.testbed_port, key=str(key)), lambda: None
    # Not build(): the testbed's owner may be rebuilding it right now, and
    # two builds into one directory would clash. Build it first, once.
    if not (testbed_dir() / "dom0.img").exists():
        sys.exit(f"no testbed in {testbed_dir()}: run `.venv/bin/python tests/testbed/testbed.py build` first")
    tb = Testbed()
    timings = tb.boot()
    print("testbed: boot " + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()), flush=True)
    return tb.runner(), tb.shutdown


def run_testbed(args: argparse.Namespace) -> int:
    runner, close = testbed_runner(args)
    try:
        return _thin_bench(runner, args)
    finally:
        close()


def _thin_bench(runner: Runner, args: argparse.Namespace) -> int:
    vg = args.testbed_vg
    lvm = Lvm(runner, vg, thin_pool="xpbench-pool")
    rootfs = Rootfs(runner)
    big_mb = args.big_mb
    work = runner.run(["mktemp", "-d", "-t", "xpbench.XXXXXXXX"]).stdout.strip()
    small, large = f"{work}/small", f"{work}/large"
    made: list[str] = []
    try:
        # Two templates that differ only by a big file of random data (zeros
        # would be skipped by mkfs -d and make the large one look small).
        runner.run(["mkdir", "-p", f"{small}/etc", f"{small}/usr"])
        runner.run(["cp", "-a", "/etc/.", f"{small}/etc/"])
        runner.run(["cp", "-a", "/usr/lib/os-release", f"{small}/usr/"])
        runner.run(["cp", "-a", small, large])
        runner.run(["dd", "if=/dev/urandom", f"of={large}/big.bin", "bs=1M", f"count={big_mb}", "status=none"])
        sizes = {t: int(runner.run(["du", "-sm", "--apparent-size", t]).stdout.split()[0]) for t in (small, large)}
        pool_mb = 2 * (big_mb + 256) + 256
        lvm.create_thin_pool(pool_mb)
        made.append("xpbench-pool")
        ssh_rtt = [timed(lambda: runner.run(["true"])) for _ in range(3)]
        rows: list[tuple[str, list[float]]] = [("ssh round trip (`true`), for scale", ssh_rtt)]
        totals: dict[str, float] = {}
        for label, template in (("small", small), ("large", large)):
            golden = f"xpbench-golden-{label}"
            lvm.create(golden, big_mb + 256, thin=True)
            made.insert(0, golden)
            rootfs.clone(template, lvm.path(golden))
            snap_t, uuid_t, total_t, mkfs_t = [], [], [], []
            for i in range(args.testbed_rounds):
                name = f"xpbench-{label}-{i}"
                snap_t.append(timed(lambda name=name, golden=golden: lvm.snapshot(golden, name)))
                made.insert(0, name)
                uuid_t.append(timed(lambda name=name: rootfs.new_uuid(lvm.path(name))))
                total_t.append(snap_t[-1] + uuid_t[-1])
                plain = f"xpbench-plain-{label}"
                lvm.create(plain, big_mb + 256)
                made.insert(0, plain)
                mkfs_t.append(timed(lambda template=template, plain=plain: rootfs.clone(template, lvm.path(plain))))
                lvm.remove(plain)
                made.remove(plain)
            rootfs.check(lvm.path(f"xpbench-{label}-0"))
            mib = sizes[template]
            rows += [
                (f"{label} template ({mib} MiB): thin snapshot (Lvm.snapshot)", snap_t),
                (f"{label} template ({mib} MiB): new fs UUID (tune2fs -U)", uuid_t),
                (f"{label} template ({mib} MiB): thin clone total", total_t),
                (f"{label} template ({mib} MiB): mkfs.ext4 -d into a plain LV", mkfs_t),
            ]
            totals[label] = statistics.median(total_t)
        print(f"\ntestbed (Xen 4.17 dom0 under QEMU TCG, VG {vg}, {args.testbed_rounds} rounds):")
        print(f"{'step':64} {'median':>8} {'min':>7} {'max':>7}")
        for name, values in rows:
            print(f"{name:64} {statistics.median(values):7.2f}s {min(values):6.2f}s {max(values):6.2f}s")
        growth = totals["large"] / totals["small"]
        ok = growth <= 1.5
        print(f"\nthin clone time, large / small template: {growth:.2f}x ({'flat: PASS' if ok else 'GROWS: FAIL'})")
        return 0 if ok else 1
    finally:
        for name in made:
            lvm.remove(name)
        runner.run(["rm", "-rf", "--", work], check=False)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--template", type=Path, help="template directory (default: cached debootstrap minbase)")
    p.add_argument("--target", default=str(CACHE / "target.img"), help="image file or block device to clone into")
    p.add_argument("--size-gb", type=int, default=20, help="size of the image file target (default 20, as a guest)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cold", action="store_true", help="drop the page cache before each clone")
    p.add_argument("--no-local", action="store_true", help="skip the local methods (testbed only)")
    p.add_argument("--testbed", action="store_true", help="also measure thin snapshots in the Xen testbed")
    p.add_argument("--testbed-port", type=int, help="ssh port of a running testbed (else one is booted)")
    p.add_argument("--testbed-key", help="its ssh key (default: the testbed dir's ssh/id_ed25519)")
    p.add_argument("--testbed-vg", default="vg0")
    p.add_argument("--testbed-rounds", type=int, default=3)
    p.add_argument("--big-mb", type=int, default=256, help="size of the large template's extra data (MiB)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench/clone.py needs root (mkfs on devices, mount, tune2fs)")
    rc = 0
    if not args.no_local:
        rc |= run_local(args, ensure_template(args.template))
    if args.testbed:
        rc |= run_testbed(args)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
