"""The simulated dom0 behaves like a real Xen + LVM host: accounting, states, errors, sharing.

No Django here: the simulator is part of labs.dom0, which must not need it.
"""

from __future__ import annotations

import inspect
import multiprocessing
import time
from pathlib import Path

import pytest

from labs.dom0 import connect, names
from labs.dom0.base import Dom0Host, DomainSpec, GuestFiles, HostConfig
from labs.dom0.errors import (
    CommandFailed,
    CommandTimeout,
    DomainExists,
    DomainNotFound,
    InsufficientSpace,
    InvalidName,
    InvalidState,
    LvmError,
    NotEnoughMemory,
    RootfsError,
    ToolstackError,
    VolumeExists,
    VolumeGroupNotFound,
    VolumeNotFound,
)
from labs.dom0.simulated import EXTENT_BYTES, STEP_SECONDS, SimulatedHost

MIB = 1024 * 1024
REPORT = ["--reportformat", "json", "--units", "b", "--nosuffix"]
FILES = GuestFiles(
    hostname="web1",
    fqdn="web1.lab.example.edu",
    address="10.10.0.11",
    netmask="255.255.255.0",
    gateway="10.10.0.1",
    broadcast="10.10.0.255",
)


def _config(sim_dir: str, **kw) -> HostConfig:
    defaults = dict(
        name="dom0-sim",
        volume_group="vg0",
        sim_dir=sim_dir,
        sim_total_memory_mb=4096,
        dom0_reserve_mb=1024,
        sim_vg_size_mb=8192,
    )
    defaults.update(kw)
    return HostConfig(**defaults)


@pytest.fixture
def sim_dir(tmp_path: Path) -> str:
    return str(tmp_path / "sim")


@pytest.fixture
def make_sim(sim_dir: str):
    def make(**kw) -> SimulatedHost:
        return SimulatedHost(_config(sim_dir, **kw))

    return make


@pytest.fixture
def sim(make_sim) -> SimulatedHost:
    return make_sim()


def _disks(sim: SimulatedHost, name: str, *, clone: bool = True, swap: bool = True) -> str:
    root = sim.create_volume(f"vm-{name}.raiz", 256)
    if clone:
        sim.clone_template("/modelo", root.path, "ext4", "mkfs")
    if swap:
        sim.make_swap(sim.create_volume(f"vm-{name}.swap", 64).path)
    return root.path


def _spec(name: str, memory_mb: int = 256, maxmem_mb: int | None = None, swap: bool = True) -> DomainSpec:
    return DomainSpec(
        name=name,
        kernel="/boot/vmlinuz",
        memory_mb=memory_mb,
        maxmem_mb=maxmem_mb,
        root_target=f"/dev/vg0/vm-{name}.raiz",
        swap_target=f"/dev/vg0/vm-{name}.swap" if swap else "",
    )


def _guest(sim: SimulatedHost, name: str, memory_mb: int = 256, maxmem_mb: int | None = None) -> None:
    """A guest provisioned the way the pipeline does it, then started."""
    _disks(sim, name)
    sim.write_config(_spec(name, memory_mb, maxmem_mb))
    sim.create(name)


def _row(sim: SimulatedHost, name: str):
    rows = [d for d in sim.list_domains() if d.name == name]
    return rows[0] if rows else None


# --- memory accounting ----------------------------------------------------------
def test_info_reports_total_and_free_after_the_dom0_reserve(sim):
    info = sim.info()
    assert info.total_memory_mb == 4096
    assert info.free_memory_mb == 4096 - 1024
    assert info.xen_version.startswith("4.")


def test_create_until_memory_is_full_raises_not_enough_memory(sim):
    for i in range(6):  # 6 x 512 = 3072 = everything dom0 leaves
        _guest(sim, f"g{i}", memory_mb=512)
    assert sim.info().free_memory_mb == 0
    _disks(sim, "g6")
    sim.write_config(_spec("g6", 512))
    with pytest.raises(NotEnoughMemory) as e:
        sim.create("g6")
    assert "Out of memory" in e.value.stderr
    assert e.value.rc == 3
    assert e.value.argv == ["xl", "create", "/etc/xen/g6.cfg"]
    assert _row(sim, "g6") is None
    # The failed create took nothing; destroying a guest gives memory back.
    sim.destroy("g0")
    assert sim.info().free_memory_mb == 512
    sim.create("g6")
    assert _row(sim, "g6").state == "-b----"


def test_paused_domain_still_holds_its_memory(sim):
    _guest(sim, "web1", memory_mb=1024)
    free_running = sim.info().free_memory_mb
    sim.pause("web1")
    assert sim.info().free_memory_mb == free_running == 4096 - 1024 - 1024
    _disks(sim, "big")
    sim.write_config(_spec("big", 2560))
    with pytest.raises(NotEnoughMemory):
        sim.create("big")


def test_mem_set_changes_free_memory_and_is_capped_by_maxmem(sim):
    _guest(sim, "web1", memory_mb=512, maxmem_mb=1024)
    sim.mem_set("web1", 1024)
    assert _row(sim, "web1").memory_mb == 1024
    assert sim.info().free_memory_mb == 3072 - 1024
    sim.mem_set("web1", 256)
    assert sim.info().free_memory_mb == 3072 - 256
    with pytest.raises(ToolstackError) as e:
        sim.mem_set("web1", 1025)
    assert "memory_dynamic_max must be less than or equal to memory_static_max" in str(e.value)
    assert _row(sim, "web1").memory_mb == 256


def test_a_balloon_only_grows_into_free_memory(sim):
    _guest(sim, "a", memory_mb=1024, maxmem_mb=3072)
    _guest(sim, "b", memory_mb=1536)
    assert sim.info().free_memory_mb == 512
    sim.mem_set("a", 3072)  # xl accepts the target; Xen only has 512 MiB to give
    assert _row(sim, "a").memory_mb == 1536
    assert sim.info().free_memory_mb == 0


def test_mem_set_on_a_paused_domain_takes_effect_on_unpause(sim):
    _guest(sim, "web1", memory_mb=512, maxmem_mb=1024)
    sim.pause("web1")
    sim.mem_set("web1", 1024)
    assert _row(sim, "web1").memory_mb == 512
    sim.unpause("web1")
    assert _row(sim, "web1").memory_mb == 1024


# --- storage accounting ---------------------------------------------------------
def test_volume_sizes_round_up_to_whole_4_mib_extents(sim):
    assert sim.create_volume("a", 1).size_bytes == 4 * MIB
    assert sim.create_volume("b", 257).size_bytes == 260 * MIB
    vg = sim.volume_group()
    assert vg.extent_size_bytes == EXTENT_BYTES
    assert vg.size_bytes == 8192 * MIB
    assert vg.free_bytes == (8192 - 264) * MIB
    assert [(v.name, v.size_bytes, v.path) for v in sim.list_volumes()] == [
        ("a", 4 * MIB, "/dev/vg0/a"),
        ("b", 260 * MIB, "/dev/vg0/b"),
    ]


def test_create_volume_without_space_uses_lvms_message(make_sim):
    sim = make_sim(sim_vg_size_mb=100)  # 25 extents
    sim.create_volume("a", 60)  # 15 extents
    with pytest.raises(InsufficientSpace) as e:
        sim.create_volume("b", 41)  # 11 extents > 10 free
    assert str(e.value) == 'lvcreate: Volume group "vg0" has insufficient free space (10 extents): 11 required.'
    assert e.value.rc == 5
    assert [v.name for v in sim.list_volumes()] == ["a"]
    sim.create_volume("b", 40)  # exactly what is left
    assert sim.volume_group().free_bytes == 0


def test_create_volume_twice_raises_volume_exists_before_checking_space(make_sim):
    sim = make_sim(sim_vg_size_mb=100)
    sim.create_volume("vm-a.raiz", 80)
    with pytest.raises(VolumeExists) as e:
        sim.create_volume("vm-a.raiz", 80)  # the name is taken AND space is short
    assert 'Logical Volume "vm-a.raiz" already exists in volume group "vg0"' in str(e.value)


def test_remove_volume_frees_space_and_returns_false_when_absent(sim):
    sim.create_volume("a", 400)
    assert sim.remove_volume("a") is True
    assert sim.remove_volume("a") is False
    assert sim.volume_group().free_bytes == 8192 * MIB


def test_remove_volume_in_use_by_a_domain_is_refused(sim):
    _guest(sim, "web1")
    with pytest.raises(LvmError) as e:
        sim.remove_volume("vm-web1.raiz")
    assert "in use" in str(e.value)
    sim.destroy("web1")
    assert sim.remove_volume("vm-web1.raiz") is True


def test_snapshot_needs_a_thin_pool_and_an_existing_origin(make_sim, sim_dir):
    plain = make_sim()
    plain.create_volume("golden", 256)
    with pytest.raises(LvmError, match="no thin pool"):
        plain.snapshot_volume("golden", "vm-a.raiz")

    thin = make_sim(name="dom0-thin", thin_pool="pool0")
    with pytest.raises(VolumeNotFound, match='Failed to find logical volume "vg0/golden"'):
        thin.snapshot_volume("golden", "vm-a.raiz")
    golden = thin.create_volume("golden", 256)
    thin.clone_template("/modelo", golden.path, "ext4", "mkfs")
    free = thin.volume_group().free_bytes
    snap = thin.snapshot_volume("golden", "vm-a.raiz")
    assert snap.size_bytes == golden.size_bytes
    assert thin.volume_group().free_bytes == free  # thin: no VG space
    assert thin.volumes()["vm-a.raiz"]["content"] == "fs"  # shares the golden filesystem
    thin.clone_template("golden", snap.path, "ext4", "thin")
    assert ["tune2fs", "-U", "random", snap.path] in thin.history
    empty = thin.create_volume("empty", 16)
    with pytest.raises(RootfsError, match="e2fsck found problems"):
        thin.clone_template("golden", empty.path, "ext4", "thin")
    with pytest.raises(VolumeExists):
        thin.snapshot_volume("golden", "vm-a.raiz")


def test_the_thin_pool_takes_its_size_out_of_the_volume_group(make_sim):
    """As on a real dom0, where the pool is an LV carved at set-up: vgs does not count it as free."""
    mib = 1024 * 1024
    plain = make_sim(sim_vg_size_mb=8192)
    assert plain.volume_group().free_bytes == 8192 * mib
    thin = make_sim(name="dom0-thin", thin_pool="pool0", sim_vg_size_mb=8192)
    assert thin.volume_group().free_bytes == (8192 - 2048) * mib  # a quarter of the VG by default
    thin.set_thin_pool_size(1024)
    assert thin.volume_group().free_bytes == (8192 - 1024) * mib
    thin.create_volume("golden", 256)
    thin.snapshot_volume("golden", "vm-a.raiz")  # thin: nothing more from the VG
    assert thin.volume_group().free_bytes == (8192 - 1024 - 256) * mib


def _thin_sim(make_sim, pool_mb: int = 64) -> SimulatedHost:
    thin = make_sim(name="dom0-thin", thin_pool="pool0")
    thin.set_thin_pool_size(pool_mb)
    golden = thin.create_volume("golden", 16)
    thin.clone_template("/modelo", golden.path, "ext4", "mkfs")
    return thin


def test_thin_pool_fills_as_thin_clones_are_written_and_empties_when_removed(make_sim):
    thin = _thin_sim(make_sim)
    empty = thin.thin_pool_usage()
    assert (empty.name, empty.size_bytes, empty.data_percent, empty.metadata_percent) == ("pool0", 64 * MIB, 0.0, 0.0)
    assert ["lvs", *REPORT, "-o", "lv_name,lv_size,lv_attr,data_percent,metadata_percent", "vg0/pool0"] in thin.history
    snap = thin.snapshot_volume("golden", "vm-a.raiz")
    assert thin.thin_pool_usage().data_percent == 0.0  # a snapshot shares its origin's blocks
    thin.clone_template("golden", snap.path, "ext4", "thin")
    finished = thin.thin_pool_usage()
    assert 0 < finished.data_percent < 100 and isinstance(finished.data_percent, float)
    thin.customize_rootfs(snap.path, FILES)
    customized = thin.thin_pool_usage()
    assert customized.data_percent > finished.data_percent
    assert 0 < customized.metadata_percent < customized.data_percent
    written = thin.guest_writes("vm-a.raiz", 8)
    assert written.data_percent == pytest.approx(customized.data_percent + 12.5, abs=0.01)  # 8 of 64 MiB
    # A guest never owns more chunks than its disk holds (16 MiB here).
    assert thin.guest_writes("vm-a.raiz", 1000).data_percent == 25.0
    # Plain volumes live outside the pool.
    plain = thin.create_volume("vm-b.raiz", 16)
    thin.clone_template("/modelo", plain.path, "ext4", "mkfs")
    assert thin.guest_writes("vm-b.raiz", 8).data_percent == 25.0
    assert thin.remove_volume("vm-a.raiz")
    assert thin.thin_pool_usage().data_percent == 0.0


def test_a_full_thin_pool_refuses_snapshots_like_the_threshold_fault(make_sim):
    thin = _thin_sim(make_sim, pool_mb=32)
    thin.snapshot_volume("golden", "vm-0.raiz")
    assert thin.guest_writes("vm-0.raiz", 16).data_percent == 50.0
    thin.snapshot_volume("golden", "vm-1.raiz")
    assert thin.guest_writes("vm-1.raiz", 15).data_percent == 96.88
    snap = thin.snapshot_volume("golden", "vm-2.raiz")  # not full yet: LVM still makes it
    # Finishing the clone needs more than the last MiB: its writes fail, as on a real full pool.
    with pytest.raises(RootfsError, match="e2fsck found problems") as failed:
        thin.clone_template("golden", snap.path, "ext4", "thin")
    assert "Input/output error" in failed.value.stderr
    assert thin.thin_pool_usage().data_percent == 100.0
    with pytest.raises(InsufficientSpace) as full:
        thin.snapshot_volume("golden", "vm-3.raiz")
    assert "vm-3.raiz" not in thin.volumes()
    thin.remove_volume("vm-2.raiz")
    # The injected fault says exactly what a pool that really is full says.
    thin.remove_volume("vm-1.raiz")
    thin.inject("snapshot_volume", kind="no_space", times=1)
    with pytest.raises(InsufficientSpace) as injected:
        thin.snapshot_volume("golden", "vm-2.raiz")
    assert str(injected.value) == str(full.value)
    assert "free space in thin pool vg0/pool0 reached threshold" in str(full.value)


def test_thin_pool_usage_errors_are_the_real_ones(make_sim):
    with pytest.raises(LvmError, match="no thin pool"):
        make_sim().thin_pool_usage()
    thin = make_sim(name="dom0-thin", thin_pool="pool0")
    thin.inject("thin_pool_usage", kind="no_pool", times=1)
    with pytest.raises(VolumeNotFound, match='Failed to find logical volume "vg0/pool0"'):
        thin.thin_pool_usage()
    thin.inject("thin_pool_usage", kind="no_vg", times=1)
    with pytest.raises(VolumeGroupNotFound, match='Volume group "vg0" not found'):
        thin.thin_pool_usage()
    assert thin.thin_pool_usage().size_bytes == 8192 // 4 * MIB  # a quarter of the VG by default


# --- root filesystems ---------------------------------------------------------------
def test_clone_needs_an_existing_volume(sim):
    with pytest.raises(RootfsError, match="does not exist"):
        sim.clone_template("/modelo", "/dev/vg0/vm-nope.raiz", "ext4", "mkfs")


def test_customize_writes_the_per_guest_files_the_real_module_renders(sim):
    root = _disks(sim, "web1")
    files = GuestFiles(
        **{**FILES.__dict__, "root_password_hash": "$6$salt$hash", "authorized_keys": "ssh-ed25519 AAA k"}
    )
    sim.customize_rootfs(root, files)
    assert sim.read_guest_file(root, "/etc/hostname") == "web1\n"
    assert "10.10.0.11" in sim.read_guest_file(root, "/etc/hosts")
    interfaces = sim.read_guest_file(root, "/etc/network/interfaces")
    assert "address 10.10.0.11" in interfaces and "gateway 10.10.0.1" in interfaces
    assert "/dev/xvda1" in sim.read_guest_file(root, "/etc/fstab")
    assert sim.read_guest_file(root, "/etc/shadow").startswith("root:$6$salt$hash:")
    assert sim.read_guest_file(root, "/root/.ssh/authorized_keys") == "ssh-ed25519 AAA k\n"
    rootfs = pytest.importorskip("labs.dom0.rootfs")
    # Exactly the text the real host would write.
    assert sim.read_guest_file(root, "/etc/hosts") == rootfs.render_hosts(files)
    assert sim.read_guest_file(root, "/etc/network/interfaces") == rootfs.render_interfaces(files)
    assert sim.read_guest_file(root, "/etc/fstab") == rootfs.render_fstab(files)


def test_customize_and_read_need_a_filesystem(sim):
    root = sim.create_volume("vm-web1.raiz", 256).path
    with pytest.raises(RootfsError, match="Bad magic number"):
        sim.customize_rootfs(root, FILES)
    with pytest.raises(RootfsError):
        sim.read_guest_file(root, "/etc/hostname")
    sim.clone_template("/modelo", root, "ext4", "mkfs")
    with pytest.raises(RootfsError, match="File not found"):
        sim.read_guest_file(root, "/etc/hostname")  # not customized yet


def test_a_recreated_volume_is_empty_with_a_new_serial(sim):
    root = _disks(sim, "web1")
    sim.customize_rootfs(root, FILES)
    first = sim.volume_serial("vm-web1.raiz")
    assert sim.remove_volume("vm-web1.raiz")
    sim.create_volume("vm-web1.raiz", 256)
    assert sim.volume_serial("vm-web1.raiz") > first
    assert sim.volumes()["vm-web1.raiz"]["content"] is None
    with pytest.raises(RootfsError):
        sim.read_guest_file(root, "/etc/hostname")
    with pytest.raises(VolumeNotFound):
        sim.volume_serial("vm-nope.raiz")


def test_make_swap_marks_the_volume_as_swap(sim):
    swap = sim.create_volume("vm-web1.swap", 64).path
    sim.make_swap(swap)
    assert sim.volumes()["vm-web1.swap"]["content"] == "swap"
    with pytest.raises(RootfsError):
        sim.make_swap("/dev/vg0/vm-nope.swap")


def test_a_guest_whose_root_holds_no_filesystem_panics_and_is_gone(sim):
    _disks(sim, "web1", clone=False)
    sim.write_config(_spec("web1"))
    sim.create("web1")  # xl create itself succeeds...
    assert _row(sim, "web1") is None  # ...but the kernel cannot mount root
    assert any("no filesystem" in e for e in sim.events())


# --- configs --------------------------------------------------------------------------
def test_write_config_stores_the_rendered_text_and_autostart(sim):
    spec = _spec("web1", 256, 512)
    assert sim.write_config(spec) == "/etc/xen/web1.cfg"
    cfg = sim.configs()["web1"]
    assert cfg["autostart"] is True and cfg["auto_path"] == "/etc/xen/auto/web1.cfg"
    assert "memory = 256" in cfg["text"] and "/dev/vg0/vm-web1.raiz" in cfg["text"]
    sim.write_config(spec, autostart=False)
    assert sim.configs()["web1"]["autostart"] is False
    assert sim.config_path("web1") == "/etc/xen/web1.cfg"
    domconfig = pytest.importorskip("labs.dom0.domconfig")
    assert cfg["text"] == domconfig.render_xl(spec)


def test_remove_config(sim):
    sim.write_config(_spec("web1"))
    assert sim.remove_config("web1") is True
    assert sim.remove_config("web1") is False
    assert sim.configs() == {}


def test_create_needs_a_config_and_its_volumes(sim):
    with pytest.raises(ToolstackError, match="Failed to read config file: /etc/xen/web1.cfg"):
        sim.create("web1")
    sim.write_config(_spec("web1"))
    with pytest.raises(ToolstackError, match="failed to stat: /dev/vg0/vm-web1.raiz") as e:
        sim.create("web1")
    assert "failed to stat: /dev/vg0/vm-web1.raiz" in e.value.stderr
    # The root alone is not enough: the swap disk is missing too.
    root = sim.create_volume("vm-web1.raiz", 256).path
    sim.clone_template("/modelo", root, "ext4", "mkfs")
    with pytest.raises(ToolstackError) as e:
        sim.create("web1")
    assert "failed to stat: /dev/vg0/vm-web1.swap" in e.value.stderr
    sim.create_volume("vm-web1.swap", 64)
    sim.create("web1")
    assert _row(sim, "web1").state == "-b----"


# --- toolstack states -------------------------------------------------------------------
def test_list_domains_includes_domain_0(sim):
    dom0 = sim.list_domains()[0]
    assert (dom0.name, dom0.domid, dom0.memory_mb) == ("Domain-0", 0, 1024)


def test_create_gives_new_domids_that_are_never_reused(sim):
    _guest(sim, "a")
    first = _row(sim, "a")
    assert first.state == "-b----" and first.domid >= 1
    assert first.letter == "b"
    sim.destroy("a")
    assert _row(sim, "a") is None  # destroy: gone at once
    sim.create("a")
    assert _row(sim, "a").domid > first.domid


def test_pause_and_unpause(sim):
    _guest(sim, "web1")
    sim.pause("web1")
    assert _row(sim, "web1").state == "--p---"
    with pytest.raises(InvalidState, match="already paused"):
        sim.pause("web1")
    sim.unpause("web1")
    assert _row(sim, "web1").state == "-b----"
    with pytest.raises(ToolstackError, match="Unpausing domain: Invalid argument"):
        sim.unpause("web1")


def test_reboot_comes_back_running_with_a_new_domid(make_sim):
    sim = make_sim(extra={"delays": {"reboot": 0.3}})
    _guest(sim, "web1")
    before = _row(sim, "web1")
    sim.reboot("web1")
    during = _row(sim, "web1")
    assert during.state == "---s--" and during.domid == before.domid
    assert sim.info().free_memory_mb == 3072 - 256  # still holds its memory
    time.sleep(0.35)
    after = _row(sim, "web1")
    assert after.state == "-b----" and after.domid > before.domid


def test_instant_reboot(sim):
    _guest(sim, "web1")
    before = _row(sim, "web1").domid
    sim.reboot("web1")
    assert _row(sim, "web1").domid == before + 1
    assert _row(sim, "web1").state == "-b----"


def test_shutdown_shows_s_for_a_moment_then_the_domain_is_gone(make_sim):
    sim = make_sim(extra={"delays": {"shutdown": 0.3}})
    _guest(sim, "web1")
    started = time.monotonic()
    sim.shutdown("web1")
    assert time.monotonic() - started < 0.2  # xl shutdown returns at once
    assert _row(sim, "web1").state == "---s--"
    assert sim.info().free_memory_mb == 3072 - 256
    with pytest.raises(DomainExists):
        sim.create("web1")  # the name is still taken while it shuts down
    with pytest.raises(InvalidState):
        sim.pause("web1")
    time.sleep(0.35)
    assert _row(sim, "web1") is None
    assert sim.info().free_memory_mb == 3072


def test_shutdown_wait_returns_once_the_domain_is_gone(make_sim):
    sim = make_sim(extra={"delays": {"shutdown": 0.25}})
    _guest(sim, "web1")
    busy = sim.busy_seconds
    started = time.monotonic()
    sim.shutdown("web1", wait=True)
    assert time.monotonic() - started >= 0.25
    assert _row(sim, "web1") is None
    assert sim.busy_seconds - busy >= 0.25
    assert ["xl", "shutdown", "-w", "web1"] in sim.history


def test_a_paused_domain_shuts_down_only_once_unpaused(sim):
    _guest(sim, "web1")
    sim.pause("web1")
    with pytest.raises(CommandTimeout):
        sim.shutdown("web1", wait=True, timeout=0.2)
    assert _row(sim, "web1").state == "--p---"
    sim.unpause("web1")  # the pending request is seen now
    assert _row(sim, "web1") is None


def test_crashed_domain_stays_until_destroyed(sim):
    _guest(sim, "web1")
    sim.crash("web1")
    assert _row(sim, "web1").state == "----c-"
    with pytest.raises(InvalidState):
        sim.reboot("web1")
    sim.destroy("web1")
    assert _row(sim, "web1") is None


@pytest.mark.parametrize(
    "verb",
    [
        lambda s: s.shutdown("ghost"),
        lambda s: s.reboot("ghost"),
        lambda s: s.destroy("ghost"),
        lambda s: s.pause("ghost"),
        lambda s: s.unpause("ghost"),
        lambda s: s.mem_set("ghost", 256),
        lambda s: s.save("ghost", "/var/lib/xen/save/ghost"),
    ],
    ids=["shutdown", "reboot", "destroy", "pause", "unpause", "mem_set", "save"],
)
def test_verbs_on_a_missing_domain_raise_domain_not_found(sim, verb):
    with pytest.raises(DomainNotFound, match="ghost is an invalid domain identifier"):
        verb(sim)


def test_create_of_a_running_name_raises_domain_exists(sim):
    _guest(sim, "web1")
    with pytest.raises(DomainExists, match='Domain with name "web1" already exists'):
        sim.create("web1")


def test_save_removes_the_domain_and_restore_brings_it_back(sim):
    _guest(sim, "web1", memory_mb=512)
    domid = _row(sim, "web1").domid
    sim.save("web1", "/var/lib/xen/save/web1")
    assert _row(sim, "web1") is None
    assert sim.info().free_memory_mb == 3072
    assert sim.saved_images() == {"/var/lib/xen/save/web1": "web1"}
    sim.restore("/var/lib/xen/save/web1")
    back = _row(sim, "web1")
    assert back.memory_mb == 512 and back.domid > domid and back.state == "-b----"
    with pytest.raises(DomainExists):
        sim.restore("/var/lib/xen/save/web1")
    with pytest.raises(ToolstackError, match="Can't open restore file"):
        sim.restore("/var/lib/xen/save/nothing")


def test_console_command_and_bridges(make_sim):
    sim = make_sim()
    assert sim.console_command("web1") == ["xl", "console", "web1"]
    assert make_sim(name="old", toolstack="xm").console_command("web1") == ["xm", "console", "web1"]
    assert sim.bridge_exists("xenbr0") is True
    assert sim.bridge_exists("xenbr1") is False


def test_xm_hosts_report_missing_domains_in_xms_words(make_sim):
    sim = make_sim(name="old", toolstack="xm")
    with pytest.raises(DomainNotFound, match="Domain 'ghost' does not exist"):
        sim.pause("ghost")
    assert sim.history[-1] == ["xm", "pause", "ghost"]


# --- names are validated like the real host, before any command ------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.create_volume("-rf", 16),
        lambda s: s.create_volume("a b", 16),
        lambda s: s.create_volume("snapshot1", 16),
        lambda s: s.remove_volume("../x"),
        lambda s: s.create("web1; reboot"),
        lambda s: s.shutdown("$(id)"),
        lambda s: s.mem_set("web1", 8),
        lambda s: s.clone_template("/modelo", "/dev/vg0/../sda", "ext4", "mkfs"),
        lambda s: s.read_guest_file("/dev/vg0/vm-a.raiz", "etc/passwd"),
        lambda s: s.save("web1", "/tmp/a b"),
        lambda s: s.bridge_exists("br0;x"),
        lambda s: s.write_config(_spec("x y")),
    ],
)
def test_bad_names_are_refused_before_any_command(sim, call):
    with pytest.raises(InvalidName):
        call(sim)
    assert sim.history == []


def test_history_records_the_argv_the_real_host_would_run(sim):
    _guest(sim, "web1")
    sim.mem_set("web1", 200)
    history = sim.history
    assert ["lvcreate", "-y", "-L", "256m", "-n", "vm-web1.raiz", "vg0"] in history
    assert ["mkfs.ext4", "-q", "-F", "-d", "/modelo", "/dev/vg0/vm-web1.raiz"] in history
    assert ["mkswap", "-f", "/dev/vg0/vm-web1.swap"] in history
    assert ["xl", "create", "/etc/xen/web1.cfg"] in history
    assert history[-1] == ["xl", "mem-set", "web1", "200m"]
    sim.clear_history()
    assert sim.history == []


# --- state shared across processes ------------------------------------------------------
def _child_provisions(sim_dir: str, queue) -> None:
    sim = SimulatedHost(_config(sim_dir))
    try:
        seen = [d.name for d in sim.list_domains()]
        _guest(sim, "fromchild", memory_mb=512)
        try:
            sim.create_volume("armed", 16)
            outcome = "no fault"
        except InsufficientSpace as e:
            outcome = str(e)
        queue.put((seen, outcome))
    except Exception as e:  # report instead of dying silently
        queue.put(("error", repr(e)))


def test_state_is_shared_between_processes(sim, sim_dir):
    _guest(sim, "fromparent", memory_mb=256)
    sim.inject("create_volume", kind="no_space", match="armed")
    ctx = multiprocessing.get_context("fork")  # what RQ's work-horses are
    queue = ctx.Queue()
    child = ctx.Process(target=_child_provisions, args=(sim_dir, queue))
    child.start()
    seen, outcome = queue.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert "fromparent" in seen  # the child saw what the parent did
    assert "insufficient free space" in outcome  # and hit the fault the parent armed
    assert _row(sim, "fromchild").memory_mb == 512  # the parent sees what the child did
    assert sim.info().free_memory_mb == 3072 - 256 - 512
    # A second object on the same files is the same host.
    assert _row(SimulatedHost(_config(sim_dir)), "fromchild") is not None


def _child_fills(sim_dir: str, prefix: str, queue) -> None:
    sim = SimulatedHost(_config(sim_dir, sim_vg_size_mb=120))
    made = 0
    for i in range(10):
        try:
            sim.create_volume(f"{prefix}-{i}", 4)
            made += 1
        except InsufficientSpace:
            pass
    queue.put(made)


def test_concurrent_processes_never_lose_an_update(sim_dir):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child_fills, args=(sim_dir, f"p{n}", queue)) for n in range(4)]
    for p in procs:
        p.start()
    made = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    sim = SimulatedHost(_config(sim_dir, sim_vg_size_mb=120))
    # 40 attempts at 1 extent each, 30 extents in the VG: exactly 30 win.
    assert sum(made) == 30
    vols = sim.volumes()
    assert len(vols) == 30
    assert len({v["serial"] for v in vols.values()}) == 30
    assert sim.volume_group().free_bytes == 0


# --- fault injection ---------------------------------------------------------------------
def test_a_fault_armed_for_one_time_fails_once(sim):
    sim.inject("clone_template", error="mkfs.ext4: Could not allocate block", times=1)
    root = sim.create_volume("vm-a.raiz", 256).path
    with pytest.raises(RootfsError, match="Could not allocate block") as e:
        sim.clone_template("/modelo", root, "ext4", "mkfs")
    assert e.value.argv[0] == "mkfs.ext4"
    assert sim.faults() == []
    sim.clone_template("/modelo", root, "ext4", "mkfs")  # works the second time
    assert sim.volumes()["vm-a.raiz"]["content"] == "fs"


def test_a_fault_without_times_fails_until_cleared(sim):
    sim.inject("create_volume", kind="no_vg")
    for _ in range(2):
        with pytest.raises(VolumeGroupNotFound, match='Volume group "vg0" not found'):
            sim.create_volume("a", 4)
    sim.clear_faults()
    sim.create_volume("a", 4)


def test_a_matched_fault_only_hits_its_subject(sim):
    sim.inject("create", kind="no_memory", match="web2")
    _guest(sim, "web1")
    _disks(sim, "web2")
    sim.write_config(_spec("web2"))
    with pytest.raises(NotEnoughMemory):
        sim.create("web2")
    assert _row(sim, "web2") is None
    sim.inject("pause", kind="not_found", match="web*", times=1)
    with pytest.raises(DomainNotFound):
        sim.pause("web1")
    sim.pause("web1")


def test_an_injected_xl_error_is_classified_like_real_xl_output(sim):
    _disks(sim, "web1")
    sim.write_config(_spec("web1"))
    sim.inject("create", error="libxl: error: libxl_create.c:1234: failed to free memory for the domain", times=1)
    with pytest.raises(NotEnoughMemory):
        sim.create("web1")
    sim.inject("create", error="libxl: error: libxl_device.c:1: unable to add disk devices", times=1, rc=3)
    with pytest.raises(ToolstackError, match="unable to add disk devices") as e:
        sim.create("web1")
    assert type(e.value) is ToolstackError and e.value.rc == 3
    sim.create("web1")


def test_other_fault_kinds_raise_the_real_error_classes(sim):
    sim.inject("create_volume", kind="exists", times=1)
    with pytest.raises(VolumeExists):
        sim.create_volume("a", 4)
    sim.inject("create_volume", kind="no_space", times=1)
    with pytest.raises(InsufficientSpace, match="insufficient free space"):
        sim.create_volume("a", 4)
    sim.inject("remove_volume", kind="in_use", times=1)
    sim.create_volume("a", 4)
    with pytest.raises(LvmError, match="in use"):
        sim.remove_volume("a")
    sim.inject("write_config", times=1)
    with pytest.raises(CommandFailed):
        sim.write_config(_spec("web1"))
    sim.inject("info", kind="timeout", times=1)
    with pytest.raises(CommandTimeout):
        sim.info()
    assert sim.info().total_memory_mb == 4096


def test_inject_refuses_unknown_operations_and_kinds(sim):
    with pytest.raises(ValueError):
        sim.inject("format_disk")
    with pytest.raises(ValueError):
        sim.inject("create", kind="no_space")
    with pytest.raises(ValueError):
        sim.inject("create", times=0)
    sim.inject("clone", times=2)  # short step names work
    assert sim.faults()[0]["op"] == "clone_template"


# --- delays and busy time ---------------------------------------------------------------
def test_a_per_step_delay_is_slept_and_counted_as_busy_time(make_sim):
    sim = make_sim(extra={"delays": {"lvcreate": 0.2}})
    started = time.monotonic()
    sim.create_volume("a", 4)
    assert time.monotonic() - started >= 0.2
    assert sim.busy_seconds >= 0.2
    started = time.monotonic()
    sim.list_volumes()  # no delay for this step
    assert time.monotonic() - started < 0.15


def test_sim_delay_scales_every_step(make_sim):
    sim = make_sim(sim_delay=0.1)
    root = sim.create_volume("a", 4).path
    started = time.monotonic()
    sim.clone_template("/modelo", root, "ext4", "mkfs")
    assert time.monotonic() - started >= 0.1 * STEP_SECONDS["clone_template"]
    instant = make_sim(name="fast")
    started = time.monotonic()
    instant.clone_template("/modelo", instant.create_volume("a", 4).path, "ext4", "mkfs")
    assert time.monotonic() - started < 0.1 * STEP_SECONDS["clone_template"]


# --- same interface as the real host ---------------------------------------------------------
def _protocol_methods() -> list[str]:
    return [n for n, v in vars(Dom0Host).items() if callable(v) and not n.startswith("_")]


def _shape(func) -> list[tuple]:
    sig = inspect.signature(func)
    return [(p.name, p.kind, p.default, p.annotation) for p in sig.parameters.values()] + [sig.return_annotation]


def test_every_protocol_method_exists_with_the_same_signature():
    methods = _protocol_methods()
    assert len(methods) >= 25
    for name in methods:
        assert _shape(getattr(SimulatedHost, name)) == _shape(getattr(Dom0Host, name)), name


def test_xen_host_and_simulated_host_have_the_same_signatures():
    host = pytest.importorskip("labs.dom0.host", reason="XenHost (labs/dom0/host.py) not written yet")
    for name in _protocol_methods():
        real = inspect.signature(getattr(host.XenHost, name))
        fake = inspect.signature(getattr(SimulatedHost, name))
        assert [(p.name, p.kind, p.default) for p in real.parameters.values()] == [
            (p.name, p.kind, p.default) for p in fake.parameters.values()
        ], name


def test_connect_gives_a_simulated_host(sim_dir):
    host = connect(_config(sim_dir), mode="simulated")
    assert isinstance(host, SimulatedHost)
    assert host.toolstack == "xl"
    assert names.domain_name(host.config.name) == "dom0-sim"


def test_bridge_addresses(make_sim):
    sim = make_sim()
    assert sim.bridge_addresses("xenbr0") == ()
    sim.assign_address("xenbr0", "192.0.2.10/24")
    assert sim.bridge_addresses("xenbr0") == ("192.0.2.10/24",)
    assert sim.history[-1] == ["ip", "addr", "show", "dev", "xenbr0"]
