"""The testbed itself: real Xen in dom0, the runner over ssh, the tiny template, xenpanel in dom0.

These drive dom0 with plain commands (not labs.dom0), so a failure here points
at the testbed and not at the code under test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from pathlib import Path

import django
import pytest
import redis

from tests.testbed.fixtures import HOST_FROM_DOM0, postgres_port, redis_port
from tests.testbed.testbed import Testbed

pytestmark = pytest.mark.testbed

PROJECT = Path(__file__).resolve().parents[2]


def test_dom0_runs_xen_417_with_lvm_bridge_and_guest_kit(testbed: Testbed):
    info = testbed.ssh(["xl", "info"]).stdout
    assert re.search(r"^xen_major\s*:\s*4$", info, re.M), info
    assert re.search(r"^xen_minor\s*:\s*17$", info, re.M), info
    assert "Domain-0" in testbed.ssh(["xl", "list"]).stdout
    vg_size = int(testbed.ssh(["vgs", "--noheadings", "--units", "b", "--nosuffix", "-o", "vg_size", "vg0"]).stdout)
    # The VG fills the LVM disk (4096 MiB by default) minus LVM's metadata area.
    assert testbed.lvm_size_mb * 2**20 - 8 * 2**20 <= vg_size <= testbed.lvm_size_mb * 2**20
    assert testbed.ssh(["cat", "/sys/class/net/xenbr0/bridge/bridge_id"]).stdout.strip()
    # Guest kernel/initrd and the bootable template directory the e2e tests clone.
    testbed.ssh(["test", "-s", "/boot/vmlinux-domu", "-a", "-s", "/boot/initrd-domu.img"])
    testbed.ssh(["test", "-x", "/srv/xenpanel/templates/tiny/sbin/init"])
    # Device-mapper targets LVM needs for plain, snapshot and thin volumes.
    targets = testbed.ssh(["dmsetup", "targets"]).stdout
    for target in ("striped", "snapshot", "thin-pool", "thin"):
        assert re.search(rf"^{target}\s", targets, re.M), targets
    assert testbed.ready_line.startswith("XENPANEL-DOM0-READY")
    assert testbed.timings["dom0_ready_s"] < testbed.timings["ssh_ready_s"]


def test_runner_keeps_argv_intact_over_ssh(testbed: Testbed):
    runner = testbed.runner()
    tricky = ["a b", "it's", '"q"', "$(touch /tmp/pwned)", "x;y", "", "*"]
    result = runner.run(["python3", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *tricky])
    assert result.stdout.strip() == json.dumps(tricky)
    assert testbed.ssh(["test", "-e", "/tmp/pwned"], check=False).returncode == 1
    data = b"line one\nline 'two' $(three)\n\x00\xff"
    runner.write_file("/tmp/xenpanel-roundtrip", data, mode=0o600)
    assert testbed.ssh(["stat", "-c", "%a", "/tmp/xenpanel-roundtrip"]).stdout.strip() == "600"
    digest = testbed.ssh(["sha256sum", "/tmp/xenpanel-roundtrip"]).stdout.split()[0]
    assert digest == hashlib.sha256(data).hexdigest()


GUEST_CFG = """\
name = "tb-tiny"
kernel = "/boot/vmlinux-domu"
ramdisk = "/boot/initrd-domu.img"
extra = "console=hvc0 quiet"
root = "/dev/xvda1 ro"
memory = 128
vcpus = 1
disk = ['phy:/dev/vg0/tb-tiny-root,xvda1,w', 'phy:/dev/vg0/tb-tiny-swap,xvda2,w']
vif = ['bridge=xenbr0']
"""


def test_tiny_template_boots_from_an_mkfs_clone_with_its_own_name_and_address(testbed: Testbed, testbed_timings):
    sh = testbed.ssh
    timings: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        sh("lvcreate -q -y -L 64M -n tb-tiny-root vg0 && lvcreate -q -y -L 32M -n tb-tiny-swap vg0")
        sh("mkfs.ext4 -q -d /srv/xenpanel/templates/tiny /dev/vg0/tb-tiny-root && mkswap -q /dev/vg0/tb-tiny-swap")
        # The per-guest files, with `address` in CIDR form (the e2e test covers netmask).
        sh(
            "mkdir -p /mnt/tb && mount /dev/vg0/tb-tiny-root /mnt/tb && echo tb-tiny > /mnt/tb/etc/hostname && "
            "printf 'auto eth0\\niface eth0 inet static\\n    address 192.0.2.10/24\\n    gateway 192.0.2.1\\n' "
            "> /mnt/tb/etc/network/interfaces && echo '/dev/xvda2 none swap sw 0 0' >> /mnt/tb/etc/fstab && "
            "umount /mnt/tb"
        )
        testbed.runner().write_file("/etc/xen/tb-tiny.cfg", GUEST_CFG.encode())
        timings["clone_s"] = time.monotonic() - t0

        t0 = time.monotonic()
        sh(["xl", "create", "/etc/xen/tb-tiny.cfg"])
        timings["xl_create_s"] = time.monotonic() - t0
        line = testbed.wait_console("tb-tiny", "XENPANEL-BOOTED")
        timings["booted_s"] = time.monotonic() - t0
        assert "host=tb-tiny ip=192.0.2.10 root=/dev/xvda1" in line, line
        assert int(re.search(r"swap_kb=(\d+)", line).group(1)) > 0, line

        t0 = time.monotonic()
        sh(["xl", "shutdown", "-w", "tb-tiny"], timeout=300)
        # -w returns once the guest is down; xl's monitor removes the domain a moment later.
        deadline = time.monotonic() + 60
        while sh(["xl", "list", "tb-tiny"], check=False).returncode == 0:
            assert time.monotonic() < deadline, "tb-tiny still listed 60 s after xl shutdown -w"
            time.sleep(2)
        timings["shutdown_s"] = time.monotonic() - t0
        assert "XENPANEL-SHUTDOWN host=tb-tiny" in testbed.console_log("tb-tiny")
    finally:
        sh("xl destroy tb-tiny 2>/dev/null; umount /mnt/tb 2>/dev/null; rm -f /etc/xen/tb-tiny.cfg", check=False)
        sh("lvremove -q -y vg0/tb-tiny-root vg0/tb-tiny-swap", check=False)
        testbed_timings.add("tiny template, raw commands", timings)
    assert "tb-tiny" not in sh(["lvs", "--noheadings", "-o", "lv_name", "vg0"]).stdout


def test_install_xenpanel_in_dom0_imports_and_reaches_host_redis_and_postgres(testbed: Testbed, testbed_timings):
    timings = testbed.install_xenpanel(PROJECT)
    testbed_timings.add("install_xenpanel", timings)
    # build() put a venv of exactly these pinned wheels into the image (pip
    # under emulation takes minutes), so only the code was copied.
    assert timings.get("venv_reused") == 1.0, timings
    assert testbed.ssh(["test", "-f", "/opt/xenpanel/labs/dom0/runner.py"]).returncode == 0
    # The venv is dom0's own (Debian's python3.11), not a copy of the host's.
    cfg = testbed.ssh(["cat", "/opt/xenpanel/.venv/pyvenv.cfg"]).stdout
    assert "home = /usr/bin" in cfg and "version = 3.11." in cfg, cfg
    # A redeploy replaces the code: nothing of the old tree is left behind.
    testbed.ssh(["touch", "/opt/xenpanel/stale-file"])
    again = testbed.install_xenpanel(PROJECT)
    assert again.get("venv_reused") == 1.0, again
    assert testbed.ssh(["test", "-e", "/opt/xenpanel/stale-file"], check=False).returncode == 1

    db = int(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13").rsplit("/", 1)[-1] or 0)
    key = f"xenpanel-testbed-{secrets.token_hex(4)}"
    # The dom0 settings profile, as a worker in dom0 loads it (no SECRET_KEY: it refuses one), with
    # Redis and PostgreSQL reached through the guestfwd rules.
    env = {
        "DJANGO_SETTINGS_MODULE": "xenpanel.settings_dom0",
        "REDIS_URL": f"redis://{HOST_FROM_DOM0}:{redis_port()}/{db}",
        "DATABASE_URL": f"postgres://postgres@{HOST_FROM_DOM0}:{postgres_port()}/postgres",
    }
    code = (
        "import sys, django\n"
        "django.setup()\n"
        "import django_rq, psycopg, rq\n"
        "from django.db import connection\n"
        "redis = django_rq.get_connection('default')\n"
        "assert redis.ping() is True\n"
        "redis.set(sys.argv[1], 'from-dom0 django ' + django.get_version(), ex=300)\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('select 40 + 2')\n"
        "    print('pg', cursor.fetchone()[0], connection.vendor)\n"
        "print('imports ok', django.get_version(), rq.__version__, psycopg.__version__)\n"
    )
    out = testbed.ssh(
        ["sh", "-c", 'cd /opt/xenpanel && exec env "$@"', "run"]
        + [f"{k}={v}" for k, v in env.items()]
        + ["/opt/xenpanel/.venv/bin/python", "-c", code, key],
        timeout=600,
    ).stdout
    assert "pg 42 postgresql" in out, out
    assert "imports ok 5.2" in out, out
    # The key dom0 wrote is in THIS host's Redis: the guestfwd reached 127.0.0.1.
    host_redis = redis.Redis(host="127.0.0.1", port=redis_port(), db=db)
    try:
        assert host_redis.get(key) == f"from-dom0 django {django.get_version()}".encode()
    finally:
        host_redis.delete(key)
