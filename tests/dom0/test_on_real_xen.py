"""End to end on a real Xen 4.17 host (the QEMU testbed), through the labs.dom0 API only.

Everything the panel's jobs do to a dom0 happens here for real: LVM volumes
with the seed's names (vm-<name>.raiz / .swap) on device-mapper, a clone of
the bootable template, the per-guest files, swap, /etc/xen/<name>.cfg and
the xl lifecycle. The testbed is only *read* from (guest consoles, `test -e`)
to check what the API did. Phase timings go to pytest's terminal summary.
"""

from __future__ import annotations

import re

import pytest

from labs.dom0 import HostConfig, connect
from labs.dom0.base import Domain, DomainSpec, GuestFiles
from labs.dom0.errors import DomainExists, DomainNotFound, VolumeExists
from labs.dom0.lvm import guest_volume_names
from tests.testbed.fixtures import testbed, testbed_timings  # noqa: F401
from tests.testbed.testbed import Testbed
from tests.testbed.timing import Phases, until

pytestmark = pytest.mark.testbed

TEMPLATE = "/srv/xenpanel/templates/tiny"
KERNEL = "/boot/vmlinux-domu"
RAMDISK = "/boot/initrd-domu.img"
THIN_POOL = "xpthin"
BOOTED = "XENPANEL-BOOTED"
# `openssl passwd -6 -salt xenpanel student`: what the panel stores for a guest's root.
ROOT_HASH = "$6$xenpanel$CbJuHhqUeNaN80OiHlbMcom/qu6UbHlg82z16RMPecCB/XKFlwxCz4XQqjtLhJC6pEhz5QW/okyhS2qSZmGCo/"


def domain(xen, name: str) -> Domain | None:
    return next((d for d in xen.list_domains() if d.name == name), None)


def destroy(xen, name: str) -> None:
    """`xl destroy`, then wait until xl no longer lists the domain (it lingers a moment)."""
    xen.destroy(name)
    until(lambda: domain(xen, name) is None, f"{name} to be destroyed", timeout=60, interval=3)


def remove_guest(xen, name: str, volumes: tuple[str, ...]) -> tuple[bool, list[bool]]:
    """Teardown whatever a test got to: the domain if it runs, its config, then the volumes in order."""
    if domain(xen, name) is not None:
        destroy(xen, name)
    return xen.remove_config(name), [xen.remove_volume(lv) for lv in volumes]


def guest_files(name: str, address: str) -> GuestFiles:
    return GuestFiles(
        hostname=name,
        fqdn=f"{name}.lab.example.edu",
        address=address,
        netmask="255.255.255.0",
        gateway="10.10.0.1",
        broadcast="10.10.0.255",
        root_password_hash=ROOT_HASH,
        authorized_keys="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheTestbedOnly0000000000000000 e2e",
    )


@pytest.fixture
def xen(testbed: Testbed):  # noqa: F811
    return connect(
        HostConfig(name="testbed", volume_group="vg0", thin_pool=THIN_POOL), mode="xen", runner=testbed.runner()
    )


def _exists_in_dom0(tb: Testbed, path: str) -> bool:
    # -e follows links; -L sees a dangling autostart link too.
    return tb.ssh(["sh", "-c", 'test -e "$1" || test -L "$1"', "exists", path], check=False).returncode == 0


def test_guest_lifecycle_on_real_xen(testbed: Testbed, xen, testbed_timings):  # noqa: F811
    name = "e2e-web1"
    root_lv, swap_lv = guest_volume_names(name)
    assert (root_lv, swap_lv) == ("vm-e2e-web1.raiz", "vm-e2e-web1.swap")
    phase = Phases()
    try:
        with phase("lvcreate root+swap"):
            root = xen.create_volume(root_lv, 64)
            swap = xen.create_volume(swap_lv, 32)
        assert (root.path, root.size_bytes) == ("/dev/vg0/vm-e2e-web1.raiz", 64 * 2**20)
        assert {v.name for v in xen.list_volumes()} >= {root_lv, swap_lv}
        with pytest.raises(VolumeExists):
            xen.create_volume(root_lv, 64)

        with phase("clone template (mkfs -d)"):
            xen.clone_template(TEMPLATE, root.path, "ext4", "mkfs")
        with phase("customize rootfs"):
            xen.customize_rootfs(root.path, guest_files(name, "10.10.0.21"))
        assert xen.read_guest_file(root.path, "/etc/hostname") == f"{name}\n"
        assert "address 10.10.0.21" in xen.read_guest_file(root.path, "/etc/network/interfaces")
        assert xen.read_guest_file(root.path, "/etc/shadow").startswith(f"root:{ROOT_HASH}:")
        with phase("mkswap"):
            xen.make_swap(swap.path)

        spec = DomainSpec(
            name=name,
            kernel=KERNEL,
            ramdisk=RAMDISK,
            # Starts with 160 and is ballooned down to 128: xl keeps the new
            # target for the reboot below, and 96 MiB proved too little for
            # Debian's kernel to load its initrd modules (OOM, no root).
            memory_mb=160,
            maxmem_mb=192,
            root_target=root.path,
            swap_target=swap.path,
            mac="00:16:3e:5a:00:21",
            extra_cmdline="quiet",
        )
        with phase("write config"):
            path = xen.write_config(spec)
        assert path == xen.config_path(name) == f"/etc/xen/{name}.cfg"
        assert _exists_in_dom0(testbed, path) and _exists_in_dom0(testbed, f"/etc/xen/auto/{name}.cfg")

        with phase("xl create"):
            xen.create(name)
        with phase("guest boots (marker)"):
            line = testbed.wait_console(name, BOOTED, count=1)
        assert f"host={name} ip=10.10.0.21 root=/dev/xvda1" in line, line
        assert int(re.search(r"swap_kb=(\d+)", line).group(1)) > 0, line
        running = domain(xen, name)
        assert running is not None and running.domid > 0
        assert (running.memory_mb, running.maxmem_mb, running.vcpus) == (160, 192, 1), running
        assert running.letter in ("r", "b"), running
        with pytest.raises(DomainExists):
            xen.create(name)
        with pytest.raises(DomainNotFound):
            xen.pause("e2e-no-such-guest")

        with phase("pause/unpause"):
            xen.pause(name)
            assert domain(xen, name).letter == "p"
            xen.unpause(name)
            assert "p" not in domain(xen, name).state

        with phase("mem-set 128 (visible in list)"):
            xen.mem_set(name, 128)
            until(lambda: domain(xen, name).memory_mb == 128, "xl list to show 128 MiB", timeout=60, interval=3)

        with phase("xentop -b -i 2 -d 1 -f (usage counters)"):
            counters = {c.name: c for c in xen.domain_counters()}
        web = counters[name]  # the whole name: -f
        # xentop's MAXMEM is the domain's current ceiling, which mem-set moves to the new target (plus
        # Xen's slack: 132096 kB after mem-set 128 on the testbed), not the config's maxmem.
        assert abs(web.mem_kb - 128 * 1024) <= 4096 and web.mem_kb <= web.maxmem_kb <= web.mem_kb + 4096, web
        assert (web.vcpus, web.nets, web.vbds) == (1, 1, 2), web
        assert web.vbd_rsect > 0 and counters["Domain-0"].cpu_seconds > 0, counters
        cpu_before_reboot = domain(xen, name).cpu_seconds
        assert cpu_before_reboot is not None and cpu_before_reboot > 0

        with phase("reboot (marker again)"):
            xen.reboot(name)
            line = testbed.wait_console(name, BOOTED, count=2)
            rebooted = until(
                lambda: (d := domain(xen, name)) and d.domid != running.domid and d, "a new domid", interval=3
            )
        assert rebooted.domid > running.domid
        # A new domain, with its own CPU time: the usage charts must not read it as a counter that went back.
        assert rebooted.cpu_seconds is not None
        assert f"host={name} ip=10.10.0.21" in line, line

        with phase("shutdown -w (domain gone)"):
            xen.shutdown(name, wait=True, timeout=300)
            until(lambda: domain(xen, name) is None, f"{name} to leave xl list", timeout=60, interval=3)
        assert f"XENPANEL-SHUTDOWN host={name}" in testbed.console_log(name)

        with phase("create again (marker)"):
            xen.create(name)
            testbed.wait_console(name, BOOTED, count=3)
        with phase("destroy"):
            destroy(xen, name)
    finally:
        with phase("teardown"):
            removed_config, removed = remove_guest(xen, name, (root_lv, swap_lv))
        phase.report("e2e lifecycle (labs.dom0 on real Xen)", testbed_timings)

    assert removed_config and removed == [True, True]
    assert domain(xen, name) is None
    assert not {root_lv, swap_lv} & {v.name for v in xen.list_volumes()}
    assert not _exists_in_dom0(testbed, f"/etc/xen/{name}.cfg")
    assert not _exists_in_dom0(testbed, f"/etc/xen/auto/{name}.cfg")
    assert not _exists_in_dom0(testbed, root.path)


def test_thin_pool_golden_template_and_snapshot_clone(testbed: Testbed, xen, testbed_timings):  # noqa: F811
    name = "e2e-thin1"
    clone_lv, _ = guest_volume_names(name)
    golden_lv = "tiny-golden"
    phase = Phases()
    try:
        with phase("thin pool + golden LV"):
            xen.lvm.create_thin_pool(256)
            golden = xen.lvm.create(golden_lv, 64, thin=True)
            xen.clone_template(TEMPLATE, golden.path, "ext4", "mkfs")
        with phase("thin snapshot clone"):
            clone = xen.snapshot_volume(golden_lv, clone_lv)
        with phase("finish clone (fsck, resize, uuid)"):
            xen.clone_template(golden_lv, clone.path, "ext4", "thin")
        with phase("customize rootfs"):
            xen.customize_rootfs(clone.path, guest_files(name, "10.10.0.22"))
        # The clone is a clean filesystem of its own; the golden image is untouched.
        xen.rootfs.check(clone.path)
        xen.rootfs.check(golden.path)
        assert xen.read_guest_file(clone.path, "/etc/hostname") == f"{name}\n"
        assert xen.read_guest_file(golden.path, "/etc/hostname") == "tiny\n"
        assert xen.rootfs.fs_uuid(clone.path) != xen.rootfs.fs_uuid(golden.path)
        lv = testbed.ssh(["lvs", "--noheadings", "-o", "lv_attr,origin,pool_lv", f"vg0/{clone_lv}"]).stdout.split()
        assert lv[0].startswith("V") and lv[1:] == [golden_lv, THIN_POOL], lv
        # The clone's writes (fsck, resize, uuid, files) took pool space; the pool is the size made above.
        usage = xen.thin_pool_usage()
        assert usage.name == THIN_POOL and usage.size_bytes == 256 * 2**20, usage
        assert isinstance(usage.data_percent, float) and usage.data_percent > 0, usage

        xen.write_config(
            DomainSpec(
                name=name,
                kernel=KERNEL,
                ramdisk=RAMDISK,
                memory_mb=128,
                root_target=clone.path,
                extra_cmdline="quiet",
            ),
            autostart=False,
        )
        with phase("create + boot (marker)"):
            xen.create(name)
            line = testbed.wait_console(name, BOOTED)
        assert f"host={name} ip=10.10.0.22 root=/dev/xvda1" in line, line
        with phase("destroy"):
            destroy(xen, name)
    finally:
        with phase("teardown"):
            remove_guest(xen, name, (clone_lv, golden_lv, THIN_POOL))
        phase.report("e2e thin clone (labs.dom0 on real Xen)", testbed_timings)

    left = testbed.ssh(["lvs", "--noheadings", "-o", "lv_name", "vg0"]).stdout.split()
    assert not {clone_lv, golden_lv, THIN_POOL} & set(left), left
    assert not _exists_in_dom0(testbed, f"/etc/xen/{name}.cfg")


def test_a_dom0_address_on_the_guests_bridge_is_seen(testbed: Testbed, xen):  # noqa: F811
    """The health check's guest-network check reads dom0's real `ip addr show` (the testbed's bridge has none)."""
    assert xen.bridge_addresses("xenbr0") == ()
    testbed.ssh(["ip", "addr", "add", "198.51.100.7/24", "dev", "xenbr0"])
    try:
        assert xen.bridge_addresses("xenbr0") == ("198.51.100.7/24",)
    finally:
        testbed.ssh(["ip", "addr", "del", "198.51.100.7/24", "dev", "xenbr0"])
    assert xen.bridge_addresses("xenbr0") == ()
