"""XenHost: the real-host facade implements all of Dom0Host and wires each method to its component."""

from __future__ import annotations

import inspect
import json

import pytest

from labs.dom0 import connect
from labs.dom0.base import Dom0Host, Domain, DomainSpec, GuestFiles, HostConfig, ThinPoolUsage, Volume
from labs.dom0.domconfig import render_xl, render_xm
from labs.dom0.errors import RootfsError
from labs.dom0.host import XenHost
from labs.dom0.runner import LocalRunner

SPEC = DomainSpec(
    name="web01",
    kernel="/boot/vmlinuz",
    memory_mb=128,
    root_target="/dev/vg0/vm-web01.raiz",
    swap_target="/dev/vg0/vm-web01.swap",
    mac="00:16:3e:5a:01:03",
)


def _protocol_methods() -> list[str]:
    return [n for n, v in vars(Dom0Host).items() if callable(v) and not n.startswith("_")]


def test_every_protocol_method_exists_with_the_same_parameters(forbidden_runner):
    host = XenHost(HostConfig(name="dom0-a", volume_group="vg0"), runner=forbidden_runner)
    methods = _protocol_methods()
    # copy_volume (save points), saved_image_exists and remove_saved_image (class hours), restart_failure
    assert len(methods) == 32
    for name in methods:
        want = list(inspect.signature(getattr(Dom0Host, name)).parameters)[1:]
        have = list(inspect.signature(getattr(host, name)).parameters)
        assert have == want, name
    assert host.toolstack == "xl"


def test_connect_builds_a_xen_host_with_the_given_runner(forbidden_runner):
    host = connect(HostConfig(name="dom0-a", volume_group="vg0", toolstack="xm"), mode="xen", runner=forbidden_runner)
    assert isinstance(host, XenHost)
    assert host.runner is forbidden_runner and host.toolstack == "xm"


@pytest.fixture
def config(tmp_path):
    return HostConfig(
        name="dom0-a",
        volume_group="vg0",
        config_dir=str(tmp_path / "xen"),
        auto_dir=str(tmp_path / "xen" / "auto"),
    )


@pytest.mark.parametrize("toolstack, render", [("xl", render_xl), ("xm", render_xm)])
def test_write_config_renders_for_the_hosts_toolstack(config, tmp_path, toolstack, render):
    (tmp_path / "xen").mkdir()
    config.toolstack = toolstack
    host = XenHost(config, runner=LocalRunner())
    path = host.write_config(SPEC)
    assert path == host.config_path("web01") == str(tmp_path / "xen" / "web01.cfg")
    assert open(path).read() == render(SPEC)
    assert (tmp_path / "xen" / "auto" / "web01.cfg").is_symlink()
    assert host.remove_config("web01") is True
    assert host.remove_config("web01") is False


@pytest.mark.parametrize("toolstack", ["xl", "xm"])
def test_create_starts_the_stored_config(config, scripted_runner, toolstack):
    config.toolstack = toolstack
    scripted_runner.expect([toolstack, "create", f"{config.config_dir}/web01.cfg"])
    XenHost(config, runner=scripted_runner).create("web01")


def test_lifecycle_verbs_reach_the_toolstack(config, scripted_runner, fixture_text):
    for argv in (
        ["xl", "shutdown", "-w", "web01"],
        ["xl", "reboot", "web01"],
        ["xl", "destroy", "web01"],
        ["xl", "pause", "web01"],
        ["xl", "unpause", "web01"],
        ["xl", "mem-set", "web01", "96m"],
        ["mkdir", "-p", "-m", "0700", "/var/lib/xen/save"],  # xl does not make the image's directory
        ["xl", "save", "web01", "/var/lib/xen/save/web01"],
        ["xl", "restore", "/var/lib/xen/save/web01"],
    ):
        scripted_runner.expect(argv)
    scripted_runner.expect(["xl", "list"], stdout=fixture_text("xl-list-4.17.txt"))
    scripted_runner.expect(["xl", "list", "-l"], stdout=fixture_text("xl-list-l-4.17.json"))
    scripted_runner.expect(["xl", "info"], stdout=fixture_text("xl-info-4.17.txt"))
    scripted_runner.expect(["xentop", "-b", "-i", "2", "-d", "1", "-f"], stdout=fixture_text("xentop-4.17.txt"))
    host = XenHost(config, runner=scripted_runner)
    host.shutdown("web01", wait=True, timeout=30)
    host.reboot("web01")
    host.destroy("web01")
    host.pause("web01")
    host.unpause("web01")
    host.mem_set("web01", 96)
    host.save("web01", "/var/lib/xen/save/web01")
    host.restore("/var/lib/xen/save/web01")
    assert Domain("web01", 3, 128, 1, "-b----", maxmem_mb=256) in host.list_domains()
    assert host.info().free_memory_mb == 878
    assert [c.name for c in host.domain_counters()] == ["Domain-0", "web01", "db02", "lab1-ana.silva"]
    assert host.console_command("web01") == ["xl", "console", "web01"]


@pytest.mark.parametrize("rc, exists", [(0, True), (1, False)])
def test_bridge_exists_looks_for_a_linux_bridge(config, scripted_runner, rc, exists):
    scripted_runner.expect(["test", "-d", "/sys/class/net/xenbr0/bridge"], rc=rc)
    assert XenHost(config, runner=scripted_runner).bridge_exists("xenbr0") is exists


def test_bridge_exists_on_this_machine(config):
    host = XenHost(config, runner=LocalRunner())
    assert host.bridge_exists("lo") is False  # a device, but not a bridge
    assert host.bridge_exists("xenpanel-none") is False


# --- storage and rootfs delegation ------------------------------------------------------------------
class Recorder:
    """Stands in for Lvm / Rootfs: records each call and returns a marker."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def method(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return f"{name}-result"

        return method


def test_storage_and_rootfs_methods_delegate(config, forbidden_runner):
    host = XenHost(config, runner=forbidden_runner)
    host.lvm, host.rootfs = Recorder(), Recorder()
    files = GuestFiles("web01", "web01.lab", "10.0.0.5", "255.255.255.0", "10.0.0.1", "10.0.0.255")
    assert host.volume_group() == "vg_info-result"
    assert host.list_volumes() == "list-result"
    assert host.create_volume("vm-web01.raiz", 1024) == "create-result"
    assert host.snapshot_volume("golden", "vm-web01.raiz") == "snapshot-result"
    assert host.remove_volume("vm-web01.raiz") == "remove-result"
    host.clone_template("/modelo", "/dev/vg0/vm-web01.raiz", "ext4", "mkfs")
    host.clone_template("/modelo", "/dev/vg0/vm-web01.raiz", "ext3", "copy")
    host.customize_rootfs("/dev/vg0/vm-web01.raiz", files)
    host.make_swap("/dev/vg0/vm-web01.swap")
    assert host.read_guest_file("/dev/vg0/vm-web01.raiz", "/etc/hostname") == "read_file-result"
    assert host.lvm.calls == [
        ("vg_info", (), {}),
        ("list", (), {}),
        ("create", ("vm-web01.raiz", 1024), {}),
        ("snapshot", ("golden", "vm-web01.raiz"), {}),
        ("remove", ("vm-web01.raiz",), {}),
    ]
    assert host.rootfs.calls == [
        ("clone", ("/modelo", "/dev/vg0/vm-web01.raiz", "ext4", "mkfs"), {}),
        ("clone", ("/modelo", "/dev/vg0/vm-web01.raiz", "ext3", "copy"), {}),
        ("customize", ("/dev/vg0/vm-web01.raiz", files), {}),
        ("mkswap", ("/dev/vg0/vm-web01.swap",), {}),
        ("read_file", ("/dev/vg0/vm-web01.raiz", "/etc/hostname"), {}),
    ]


def test_volumes_on_a_real_volume_group(loop_vg):
    host = XenHost(HostConfig(name="dom0-a", volume_group=loop_vg.name), runner=loop_vg.runner)
    assert host.volume_group().name == loop_vg.name
    volume = host.create_volume("vm-web01.raiz", 8)
    assert volume == Volume("vm-web01.raiz", 8 * 1024 * 1024, f"/dev/{loop_vg.name}/vm-web01.raiz")
    assert [v.name for v in host.list_volumes()] == ["vm-web01.raiz"]
    assert host.remove_volume("vm-web01.raiz") is True
    assert host.remove_volume("vm-web01.raiz") is False
    assert host.list_volumes() == []


# --- thin clones: the snapshot is finished in place (check, grow, new UUID) ---------------------------
def _uuid(runner: LocalRunner, device: str) -> str:
    return runner.run(["blkid", "-p", "-o", "value", "-s", "UUID", device]).stdout.strip()


def _block_count(runner: LocalRunner, device: str) -> int:
    out = runner.run(["dumpe2fs", "-h", device]).stdout
    return int(next(line for line in out.splitlines() if line.startswith("Block count:")).split(":")[1])


def test_thin_clone_is_grown_and_gets_its_own_uuid(config, tmp_path):
    runner = LocalRunner()
    image = tmp_path / "clone.img"  # stands in for the snapshot LV
    with open(image, "wb") as f:
        f.truncate(16 * 1024 * 1024)
    runner.run(["mkfs.ext4", "-q", "-F", str(image)])
    golden_uuid, blocks = _uuid(runner, str(image)), _block_count(runner, str(image))
    with open(image, "r+b") as f:
        f.truncate(32 * 1024 * 1024)  # the guest's volume is bigger than the golden image

    XenHost(config, runner=runner).clone_template("golden", str(image), "ext4", "thin")

    assert _block_count(runner, str(image)) == 2 * blocks
    assert _uuid(runner, str(image)) not in ("", golden_uuid)
    runner.run(["e2fsck", "-fn", str(image)])  # still clean


def test_thin_clone_of_something_that_is_no_filesystem_fails(config, tmp_path):
    image = tmp_path / "empty.img"
    with open(image, "wb") as f:
        f.truncate(8 * 1024 * 1024)
    with pytest.raises(RootfsError) as info:
        XenHost(config, runner=LocalRunner()).clone_template("golden", str(image), "ext4", "thin")
    assert info.value.argv[0] == "e2fsck" and info.value.rc not in (0, 1)


def test_thin_pool_usage_reads_the_hosts_pool(scripted_runner):
    columns = "lv_name,lv_size,lv_attr,data_percent,metadata_percent"
    row = {"lv_name": "pool0", "lv_size": "268435456", "lv_attr": "twi-aotz--", "data_percent": "9.50"}
    scripted_runner.expect(
        ["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", columns, "vg0/pool0"],
        stdout=json.dumps({"report": [{"lv": [{**row, "metadata_percent": "1.25"}]}]}),
    )
    host = XenHost(HostConfig(name="dom0-a", volume_group="vg0", thin_pool="pool0"), runner=scripted_runner)
    assert host.thin_pool_usage() == ThinPoolUsage("pool0", 256 * 2**20, 9.5, 1.25)


IPROUTE2_BRIDGE = """\
5: xenbr0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default qlen 1000
    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff
    inet 192.0.2.10/24 brd 192.0.2.255 scope global xenbr0
       valid_lft forever preferred_lft forever
    inet6 2001:db8::10/64 scope global
       valid_lft forever preferred_lft forever
    inet6 fe80::5054:ff:fe12:3456/64 scope link
       valid_lft forever preferred_lft forever
"""
BUSYBOX_BRIDGE_NO_ADDRESS = """\
3: xenbr0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue qlen 1000
    link/ether 9a:2b:3c:4d:5e:6f brd ff:ff:ff:ff:ff:ff
    inet6 fe80::982b:3cff:fe4d:5e6f/64 scope link
       valid_lft forever preferred_lft forever
"""


def test_global_addresses_of_a_bridge_ignore_link_local():
    from labs.dom0.host import parse_global_addresses

    assert parse_global_addresses(IPROUTE2_BRIDGE) == ("192.0.2.10/24", "2001:db8::10/64")
    assert parse_global_addresses(BUSYBOX_BRIDGE_NO_ADDRESS) == ()


def test_bridge_addresses_runs_ip_addr_show(config, scripted_runner):
    scripted_runner.expect(["ip", "addr", "show", "dev", "xenbr0"], stdout=IPROUTE2_BRIDGE)
    assert XenHost(config, runner=scripted_runner).bridge_addresses("xenbr0") == ("192.0.2.10/24", "2001:db8::10/64")
