"""labs.dom0.lvm against a real LVM volume group on a loop device (see conftest.loop_vg).

Snapshots and thin pools need device-mapper, which only the Xen testbed has;
here they are checked for their command line and their refusals.
"""

from __future__ import annotations

import json

import pytest

from labs.dom0.base import ThinPoolUsage
from labs.dom0.errors import (
    InsufficientSpace,
    InvalidName,
    LvmError,
    VolumeExists,
    VolumeGroupNotFound,
    VolumeNotFound,
)
from labs.dom0.lvm import Lvm, guest_volume_names
from labs.dom0.runner import LocalRunner, Result

MiB = 1024 * 1024


@pytest.fixture
def lvm(loop_vg) -> Lvm:
    return Lvm(loop_vg.runner, loop_vg.name, prefix_env=loop_vg.env)


def _lvs_names(loop_vg) -> list[str]:
    """What LVM itself says, independently of the class under test."""
    out = loop_vg.runner.run(["lvs", "--reportformat", "json", "-o", "lv_name", loop_vg.name]).stdout
    return sorted(row["lv_name"] for row in json.loads(out)["report"][0]["lv"])


def test_guest_volume_names_follow_the_seed_recipe():
    assert guest_volume_names("virt01") == ("vm-virt01.raiz", "vm-virt01.swap")
    assert guest_volume_names("web-1", prefix="lab3-") == ("lab3-web-1.raiz", "lab3-web-1.swap")
    for bad in ("", "has space", "-rf", "a;b", "../etc", "$(reboot)"):
        with pytest.raises(InvalidName):
            guest_volume_names(bad)


def test_vg_info_reports_the_loop_device_in_bytes(lvm, loop_vg):
    info = lvm.vg_info()
    assert info.name == loop_vg.name
    assert info.extent_size_bytes == 4 * MiB
    # 256 MiB device, 1 MiB of PV metadata: 63 whole 4 MiB extents.
    assert info.size_bytes == 63 * 4 * MiB
    assert info.free_bytes == info.size_bytes


def test_create_rounds_up_to_whole_extents_and_free_space_drops_exactly(lvm, loop_vg):
    before = lvm.vg_info()
    root = lvm.create("vm-virt01.raiz", 10)
    assert root.name == "vm-virt01.raiz"
    assert root.size_bytes == 12 * MiB  # 10 MiB rounded up to three 4 MiB extents
    assert root.path == f"/dev/{loop_vg.name}/vm-virt01.raiz"
    after_root = lvm.vg_info()
    assert after_root.free_bytes == before.free_bytes - 12 * MiB

    swap = lvm.create("vm-virt01.swap", 8)
    assert swap.size_bytes == 8 * MiB  # already whole extents: no rounding
    assert lvm.vg_info().free_bytes == before.free_bytes - 20 * MiB
    assert lvm.vg_info().size_bytes == before.size_bytes
    assert _lvs_names(loop_vg) == ["vm-virt01.raiz", "vm-virt01.swap"]


def test_list_and_exists(lvm, loop_vg):
    assert lvm.list() == []
    root, swap = guest_volume_names("virt02")
    lvm.create(swap, 4)
    lvm.create(root, 20)
    listed = lvm.list()
    assert [v.name for v in listed] == ["vm-virt02.raiz", "vm-virt02.swap"]
    assert [v.size_bytes for v in listed] == [20 * MiB, 4 * MiB]
    assert [v.path for v in listed] == [lvm.path(root), lvm.path(swap)]
    assert lvm.path(root) == f"/dev/{loop_vg.name}/vm-virt02.raiz"
    assert lvm.exists(root) and lvm.exists(swap)
    assert not lvm.exists("vm-virt03.raiz")
    assert lvm.get(root).size_bytes == 20 * MiB


def test_remove_frees_the_space_and_is_false_when_absent(lvm, loop_vg):
    before = lvm.vg_info()
    lvm.create("vm-virt04.raiz", 16)
    assert lvm.remove("vm-virt04.raiz") is True
    assert _lvs_names(loop_vg) == []
    assert lvm.vg_info().free_bytes == before.free_bytes
    assert lvm.remove("vm-virt04.raiz") is False
    assert not lvm.exists("vm-virt04.raiz")


def test_extend_grows_to_whole_extents_and_never_shrinks(lvm):
    before = lvm.vg_info().free_bytes
    lvm.create("vm-virt05.raiz", 8)
    grown = lvm.extend("vm-virt05.raiz", 18)
    assert grown.size_bytes == 20 * MiB
    assert lvm.vg_info().free_bytes == before - 20 * MiB
    # Asking for less (or the same) changes nothing and is not an error.
    assert lvm.extend("vm-virt05.raiz", 8).size_bytes == 20 * MiB
    assert lvm.extend("vm-virt05.raiz", 20).size_bytes == 20 * MiB
    assert lvm.vg_info().free_bytes == before - 20 * MiB
    with pytest.raises(InsufficientSpace) as e:
        lvm.extend("vm-virt05.raiz", 1024)
    assert e.value.argv[0] == "lvextend"
    with pytest.raises(VolumeNotFound):
        lvm.extend("vm-nope.raiz", 16)


def test_duplicate_name_raises_volume_exists(lvm, loop_vg):
    lvm.create("vm-virt01.raiz", 8)
    free = lvm.vg_info().free_bytes
    with pytest.raises(VolumeExists) as e:
        lvm.create("vm-virt01.raiz", 8)
    err = e.value
    assert err.rc == 5
    assert err.argv[0] == "lvcreate" and "vm-virt01.raiz" in err.argv
    assert f'Logical Volume "vm-virt01.raiz" already exists in volume group "{loop_vg.name}"' in err.stderr
    assert "already exists" in str(err)
    assert lvm.vg_info().free_bytes == free


def test_out_of_space_raises_insufficient_space(lvm):
    free = lvm.vg_info().free_bytes
    with pytest.raises(InsufficientSpace) as e:
        lvm.create("vm-big.raiz", 1024)
    assert e.value.rc == 5
    assert "insufficient free space" in e.value.stderr
    assert "1024m" in e.value.argv
    assert lvm.vg_info().free_bytes == free
    assert not lvm.exists("vm-big.raiz")


def test_taken_name_and_short_space_reports_the_name(lvm):
    # LVM 2.03.16 checks the name before the space (measured on Debian 12,
    # also with the 20G/50G sizes of the reference notes).
    lvm.create("vm-virt01.raiz", 8)
    with pytest.raises(VolumeExists) as e:
        lvm.create("vm-virt01.raiz", 1024)
    assert "insufficient" not in e.value.stderr.lower()


def test_exactly_the_free_space_fits_and_one_more_extent_does_not(lvm):
    free_mb = lvm.vg_info().free_bytes // MiB
    with pytest.raises(InsufficientSpace):
        lvm.create("vm-a.raiz", free_mb + 1)
    lvm.create("vm-a.raiz", free_mb)
    assert lvm.vg_info().free_bytes == 0


def test_missing_volume_group(loop_vg):
    lvm = Lvm(loop_vg.runner, "nosuchvg", prefix_env=loop_vg.env)
    with pytest.raises(VolumeGroupNotFound) as e:
        lvm.vg_info()
    assert e.value.rc == 5 and 'Volume group "nosuchvg" not found' in e.value.stderr
    with pytest.raises(VolumeGroupNotFound):
        lvm.list()
    with pytest.raises(VolumeGroupNotFound):
        lvm.create("vm-x.raiz", 4)
    with pytest.raises(VolumeGroupNotFound):
        lvm.exists("vm-x.raiz")
    with pytest.raises(VolumeGroupNotFound):
        lvm.remove("vm-x.raiz")


def test_missing_volume(lvm, loop_vg):
    with pytest.raises(VolumeNotFound) as e:
        lvm.get("does-not-exist")
    assert f'"{loop_vg.name}/does-not-exist"' in e.value.message
    # lvremove's own "Failed to find logical volume" is mapped too: remove
    # turns it into False, so look at the mapping through a raw call.
    with pytest.raises(VolumeNotFound) as e:
        lvm._run(["lvremove", "-y", f"{loop_vg.name}/does-not-exist"])
    assert e.value.rc == 5
    assert f'Failed to find logical volume "{loop_vg.name}/does-not-exist"' in e.value.stderr


def test_other_lvm_refusals_are_lvm_errors_with_the_command(lvm):
    # Our validator allows "_tdata" in a name; LVM reserves it (rc 3). Such
    # refusals stay generic LvmErrors but keep argv, rc and LVM's message.
    with pytest.raises(LvmError) as e:
        lvm.create("vm_tdata", 4)
    assert type(e.value) is LvmError
    assert e.value.rc == 3
    assert e.value.argv[:2] == ["lvcreate", "-y"]
    assert "reserved" in str(e.value)
    assert "command: lvcreate -y" in e.value.detail()


@pytest.mark.parametrize(
    "bad", ["", "has space", "-rf", "../x", "a/b", "a;b", "$(reboot)", "x\nlvremove", "snapshot1", "pvmove0"]
)
def test_invalid_names_are_refused_before_any_command_runs(lvm, loop_vg, bad):
    runs = len(loop_vg.runner.history)
    calls = [
        lambda: lvm.create(bad, 4),
        lambda: lvm.create(bad, 4, thin=True),
        lambda: lvm.remove(bad),
        lambda: lvm.extend(bad, 8),
        lambda: lvm.exists(bad),
        lambda: lvm.get(bad),
        lambda: lvm.path(bad),
        lambda: lvm.snapshot(bad, "vm-ok.raiz"),
        lambda: lvm.snapshot("golden", bad),
    ]
    for call in calls:
        with pytest.raises(InvalidName):
            call()
    assert len(loop_vg.runner.history) == runs
    assert _lvs_names(loop_vg) == []


@pytest.mark.parametrize("size", [0, -4, "10", 1.5, True, None])
def test_invalid_sizes_are_refused_before_any_command_runs(lvm, loop_vg, size):
    runs = len(loop_vg.runner.history)
    with pytest.raises(InvalidName):
        lvm.create("vm-x.raiz", size)
    assert len(loop_vg.runner.history) == runs


def test_invalid_volume_group_or_pool_names_are_refused(loop_vg):
    for bad in ("", "vg 0", "-vg", "../vg", "vg;rm"):
        with pytest.raises(InvalidName):
            Lvm(loop_vg.runner, bad)
        with pytest.raises(InvalidName):
            Lvm(loop_vg.runner, "vg0", thin_pool=bad or "x y")


def test_thin_operations_without_a_pool_are_refused_before_any_command(lvm, loop_vg):
    runs = len(loop_vg.runner.history)
    with pytest.raises(LvmError, match="no thin pool"):
        lvm.snapshot("golden", "vm-virt01.raiz")
    with pytest.raises(LvmError, match="no thin pool"):
        lvm.create("golden", 64, thin=True)
    with pytest.raises(LvmError, match="no thin pool"):
        lvm.create_thin_pool(64)
    with pytest.raises(LvmError, match="no thin pool"):
        lvm.thin_pool_usage()
    assert len(loop_vg.runner.history) == runs


def test_thin_pool_usage_of_a_missing_pool_or_volume_group(loop_vg, lvm):
    # Real LVM answers; a pool needs device-mapper, so only the refusals run here.
    with pytest.raises(VolumeNotFound) as e:
        Lvm(loop_vg.runner, loop_vg.name, thin_pool="nopool", prefix_env=loop_vg.env).thin_pool_usage()
    assert e.value.rc == 5 and f'"{loop_vg.name}/nopool"' in e.value.stderr
    with pytest.raises(VolumeGroupNotFound):
        Lvm(loop_vg.runner, "nosuchvg", thin_pool="pool0", prefix_env=loop_vg.env).thin_pool_usage()
    # A plain volume is no thin pool: refused, not read as an empty one.
    lvm.create("vm-plain.raiz", 4)
    with pytest.raises(LvmError, match="is not a thin pool") as e:
        lvm.thin_pool_usage("vm-plain.raiz")
    assert type(e.value) is LvmError


class _RecordingRunner(LocalRunner):
    """Records argv and answers `lvs` like LVM would; runs nothing.

    Only for the thin commands, which need device-mapper (the testbed runs
    them for real): this pins the agreed command lines.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[list[str], dict]] = []

    def run(self, argv, *, timeout=300.0, check=True, input=None, env=None):
        argv = list(argv)
        self.calls.append((argv, dict(env or {})))
        stdout = ""
        if argv[0] == "lvs":
            name = argv[-1].split("/")[-1]
            stdout = json.dumps({"report": [{"lv": [{"lv_name": name, "lv_size": str(64 * MiB)}]}]})
        return Result(argv, 0, stdout, "", 0.0)


def test_thin_command_lines():
    runner = _RecordingRunner()
    lvm = Lvm(runner, "vg0", thin_pool="pool0", prefix_env={"LVM_SYSTEM_DIR": "/x"})
    lvm.create_thin_pool(1024)
    lvm.create("golden-debian12", 2048, thin=True)
    snap = lvm.snapshot("golden-debian12", "vm-virt01.raiz")
    assert snap.path == "/dev/vg0/vm-virt01.raiz"
    changes = [argv for argv, _ in runner.calls if argv[0] == "lvcreate"]
    assert changes == [
        ["lvcreate", "-y", "--type", "thin-pool", "-L", "1024m", "-n", "pool0", "vg0"],
        ["lvcreate", "-y", "-V", "2048m", "-T", "vg0/pool0", "-n", "golden-debian12"],
        # -kn: no activation-skip flag, so the disk also comes back after a
        # dom0 reboot; -ay -K: active now whatever lvm.conf says.
        ["lvcreate", "-y", "-s", "-kn", "-ay", "-K", "-n", "vm-virt01.raiz", "vg0/golden-debian12"],
    ]
    assert all(env == {"LVM_SYSTEM_DIR": "/x"} for _, env in runner.calls)


def _pool_row(**values: str) -> str:
    row = {"lv_name": "pool0", "lv_size": str(1024 * MiB), "lv_attr": "twi-aotz--", **values}
    return json.dumps({"report": [{"lv": [row]}]})


@pytest.mark.parametrize(
    ("values", "data", "metadata"),
    [
        ({"data_percent": "42.17", "metadata_percent": "7.03"}, 42.17, 7.03),
        ({"data_percent": "100.00", "metadata_percent": "12.50"}, 100.0, 12.5),
        # A column LVM leaves empty, or one the command did not ask for: unknown, not 0.
        ({"data_percent": "3.00", "metadata_percent": ""}, 3.0, None),
        ({"data_percent": "3.00"}, 3.0, None),
    ],
)
def test_thin_pool_usage_parses_lvs(scripted_runner, values, data, metadata):
    columns = "lv_name,lv_size,lv_attr,data_percent,metadata_percent"
    scripted_runner.expect(
        ["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", columns, "vg0/pool0"],
        stdout=_pool_row(**values),
    )
    usage = Lvm(scripted_runner, "vg0", thin_pool="pool0").thin_pool_usage()
    assert usage == ThinPoolUsage("pool0", 1024 * MiB, data, metadata)
    assert isinstance(usage.data_percent, float)


def test_thin_pool_usage_of_an_inactive_pool_is_an_error(scripted_runner):
    # An inactive pool prints no percentages: that is "unknown", never "empty".
    scripted_runner.expect(
        [
            "lvs",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "lv_name,lv_size,lv_attr,data_percent,metadata_percent",
            "vg0/pool0",
        ],
        stdout=_pool_row(lv_attr="twi---tz--", data_percent="", metadata_percent=""),
    )
    with pytest.raises(LvmError, match="reports no data usage"):
        Lvm(scripted_runner, "vg0", thin_pool="pool0").thin_pool_usage()
