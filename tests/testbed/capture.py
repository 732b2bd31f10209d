"""Capture real Xen 4.17 / LVM outputs from the testbed into tests/dom0/fixtures/testbed/.

    .venv/bin/python tests/testbed/capture.py [OUTDIR]

Boots its own testbed, starts two guests from configs rendered by
labs.dom0.domconfig (one left running, one paused, after a mem-set), makes a
thin pool with a golden LV and a snapshot, then saves what the parsers in
labs/dom0 read: `xl list`, `xl list -l`, `xl info`, `lvs`/`vgs` JSON, `xl -N
create` JSON, and the stderr of the failures the error classifiers map.
Then, for the usage charts, a third guest with a long name: `xentop -b -i 2
-d 1 -f` and the same without -f (names cut), and `xl list` just before and
just after a reboot of cap-web1 (a new domain: its Time(s) starts again).
Everything else (LVs, guests) is done with plain commands, so the captures do
not depend on the code they will test.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from labs.dom0.base import DomainSpec  # noqa: E402
from labs.dom0.domconfig import render_xl  # noqa: E402
from tests.testbed.testbed import Testbed, build  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "dom0" / "fixtures" / "testbed"
REPORT = ["--reportformat", "json", "--units", "b", "--nosuffix"]
GUESTS = (("cap-web1", "00:16:3e:ca:00:01"), ("cap-db1", "00:16:3e:ca:00:02"))
# Longer than xentop's 10-character name column, as lab domain names are (<slug>-<username>).
LONG_GUEST = ("cap-lab1-ana.silva", "00:16:3e:ca:00:03")
XENTOP = ["xentop", "-b", "-i", "2", "-d", "1"]


def start_guest(tb: Testbed, name: str, mac: str) -> None:
    root, swap = f"/dev/vg0/vm-{name}.raiz", f"/dev/vg0/vm-{name}.swap"
    tb.ssh(["lvcreate", "-q", "-y", "-L", "64m", "-n", f"vm-{name}.raiz", "vg0"])
    tb.ssh(["lvcreate", "-q", "-y", "-L", "32m", "-n", f"vm-{name}.swap", "vg0"])
    tb.ssh(["mkfs.ext4", "-q", "-F", "-d", "/srv/xenpanel/templates/tiny", root])
    tb.ssh(["mkswap", "-f", swap])
    spec = DomainSpec(
        name=name,
        kernel="/boot/vmlinux-domu",
        ramdisk="/boot/initrd-domu.img",
        memory_mb=128,
        maxmem_mb=192,
        root_target=root,
        swap_target=swap,
        mac=mac,
        extra_cmdline="quiet",
    )
    tb.runner().write_file(f"/etc/xen/{name}.cfg", render_xl(spec).encode())
    for attempt in range(3):
        p = tb.ssh(["xl", "create", f"/etc/xen/{name}.cfg"], timeout=600, check=False)
        # Under TCG libxl's hotplug timeout fires now and then; libxl has destroyed the half-made
        # domain, so try again, as the product's create does (labs.dom0.toolstack.HOTPLUG_RETRIES).
        if p.returncode == 0 or "because of timeout" not in p.stderr or attempt == 2:
            break
        print(f"xl create {name}: libxl's hotplug timeout, trying again", flush=True)
    assert p.returncode == 0, f"xl create {name} failed (exit {p.returncode}): {p.stderr}"
    tb.wait_console(name, "XENPANEL-BOOTED")


def usage_captures(tb: Testbed, web: str) -> dict[str, str]:
    """xentop with and without -f (three guests, one paused), and xl list around a reboot of `web`."""
    start_guest(tb, *LONG_GUEST)
    files = {
        "xentop.txt": tb.ssh([*XENTOP, "-f"]).stdout,
        "xentop-cut-names.txt": tb.ssh(XENTOP).stdout,
        "xl-list-before-reboot.txt": tb.ssh(["xl", "list"]).stdout,
    }
    old = tb.ssh(["xl", "domid", web]).stdout.strip()
    tb.ssh(["xl", "reboot", web])
    deadline = time.monotonic() + 300
    while True:  # as soon as the new domain is listed, while its CPU time is still small
        p = tb.ssh(["xl", "domid", web], check=False)
        if p.returncode == 0 and p.stdout.strip() not in ("", old):
            break
        assert time.monotonic() < deadline, f"{web} did not come back from its reboot"
        time.sleep(0.5)
    files["xl-list-after-reboot.txt"] = tb.ssh(["xl", "list"]).stdout
    return files


def failure(tb: Testbed, argv: list[str]) -> dict:
    p = tb.ssh(argv, check=False)
    assert p.returncode != 0, f"{argv} was expected to fail"
    return {"argv": argv, "rc": p.returncode, "stderr": p.stderr}


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    print(f"build: {build():.1f} s", flush=True)
    with Testbed() as tb:
        print("boot: " + ", ".join(f"{k}={v:.1f}" for k, v in tb.timings.items()), flush=True)
        files: dict[str, str] = {}
        for name, mac in GUESTS:
            start_guest(tb, name, mac)
        web, db = GUESTS[0][0], GUESTS[1][0]
        tb.ssh(["xl", "mem-set", web, "96m"])
        tb.ssh(["xl", "pause", db])
        time.sleep(3)  # let the balloon reach its target before listing
        files["xl-list.txt"] = tb.ssh(["xl", "list"]).stdout
        files["xl-list-l.json"] = tb.ssh(["xl", "list", "-l"]).stdout
        files["xl-info.txt"] = tb.ssh(["xl", "info"]).stdout
        files["xl-create-dry-run.cfg"] = tb.ssh(["cat", f"/etc/xen/{web}.cfg"]).stdout
        files["xl-create-dry-run.json"] = tb.ssh(["xl", "-N", "create", f"/etc/xen/{web}.cfg"]).stdout

        tb.ssh(["lvcreate", "-q", "-y", "--type", "thin-pool", "-L", "128m", "-n", "xpthin", "vg0"])
        tb.ssh(["lvcreate", "-q", "-y", "-V", "64m", "-T", "vg0/xpthin", "-n", "tiny-golden"])
        tb.ssh(["lvcreate", "-q", "-y", "-s", "-kn", "-ay", "-K", "-n", "vm-cap-thin1.raiz", "vg0/tiny-golden"])
        files["lvs.json"] = tb.ssh(["lvs", *REPORT, "vg0"]).stdout
        files["lvs-columns.json"] = tb.ssh(
            ["lvs", *REPORT, "-o", "lv_name,lv_size,lv_attr,origin,pool_lv,data_percent,metadata_percent", "vg0"]
        ).stdout
        files["vgs.json"] = tb.ssh(["vgs", *REPORT, "vg0"]).stdout
        files["vgs-columns.json"] = tb.ssh(
            ["vgs", *REPORT, "-o", "vg_name,vg_size,vg_free,vg_extent_size", "vg0"]
        ).stdout

        errors = [
            failure(tb, ["xl", "create", f"/etc/xen/{web}.cfg"]),  # name taken
            failure(tb, ["xl", "pause", "cap-no-such-guest"]),
            failure(tb, ["xl", "destroy", "cap-no-such-guest"]),
            failure(tb, ["xl", "mem-set", web, "4096m"]),  # above maxmem
            failure(tb, ["lvcreate", "-y", "-L", "64m", "-n", f"vm-{web}.raiz", "vg0"]),  # LV exists
            failure(tb, ["lvcreate", "-y", "-L", "64g", "-n", "cap-too-big", "vg0"]),
            failure(tb, ["lvremove", "-y", "vg0/cap-no-such-lv"]),
            failure(tb, ["vgs", "nosuchvg"]),
        ]
        files["errors.json"] = json.dumps(errors, indent=2) + "\n"
        files.update(usage_captures(tb, web))
        for name, text in files.items():
            (out / name).write_text(text)
            print(f"wrote {out / name} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT))
