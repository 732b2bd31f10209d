"""The dom0 interface: value types and the protocols both hosts implement.

`labs.dom0.host.XenHost` runs real commands (xl/xm, LVM, mkfs) through one
runner; `labs.dom0.simulated.SimulatedHost` is a faithful state machine with
the same methods, the same errors and the same memory accounting. Jobs only
see `Dom0Host`. Nothing here imports Django.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from . import names

Toolstack = Literal["xl", "xm"]
RootDevice = Literal["xvda", "hda"]
FsType = Literal["ext4", "ext3"]
CloneMethod = Literal["mkfs", "copy", "thin"]

# Where `xl save` images go: the directory the recipe's xendomains saves to at
# shutdown (XENDOMAINS_SAVE) and restores from at boot, so one image per guest.
SAVE_DIR = "/var/lib/xen/save"


def save_path(domain: str) -> str:
    """The save image of a domain, named as xendomains names its own (the domain's name)."""
    return f"{SAVE_DIR}/{names.domain_name(domain)}"


# xl list state letters, in column order: running, blocked, paused,
# shutdown, crashed, dying.
STATE_LETTERS = "rbpscd"


@dataclass(frozen=True)
class Domain:
    """One row of `xl list` / `xl list -l`."""

    name: str
    domid: int
    memory_mb: int
    vcpus: int
    state: str  # the six-column string, e.g. "-b----" or "--p---"
    maxmem_mb: int | None = None
    # The table's Time(s): CPU seconds the domain has used since it was built (a reboot builds a new
    # domain, so it starts again from 0). A counter, not part of what makes two rows the same domain.
    cpu_seconds: float | None = field(default=None, compare=False)

    @property
    def letter(self) -> str:
        """The single most telling state letter (r b p s c d), '' when none is set."""
        for letter in "cdsp" + "rb":
            if letter in self.state:
                return letter
        # No flag at all ("------"): runnable, waiting for a CPU. A busy host
        # (the QEMU testbed under load) lists a booting guest so; it runs.
        if self.state and set(self.state) == {"-"}:
            return "r"
        return ""


@dataclass(frozen=True)
class DomainCounters:
    """One domain's row of `xentop -b`: the running totals Xen keeps for it.

    Everything is cumulative since the domain was built, summed over its
    network interfaces and virtual disks, in xentop's own units: kilobytes
    for the network, requests and 512-byte sectors for the disks. `cpu_percent`
    is xentop's share of one physical CPU over its last interval (0.0 in the
    first block it prints). `maxmem_kb` is None for "no limit".
    """

    name: str
    state: str
    cpu_seconds: int
    cpu_percent: float
    mem_kb: int
    maxmem_kb: int | None
    vcpus: int
    nets: int
    net_tx_kb: int
    net_rx_kb: int
    vbds: int
    vbd_oo: int
    vbd_rd: int
    vbd_wr: int
    vbd_rsect: int
    vbd_wsect: int

    @property
    def net_rx_bytes(self) -> int:
        return self.net_rx_kb * 1024

    @property
    def net_tx_bytes(self) -> int:
        return self.net_tx_kb * 1024

    @property
    def disk_read_bytes(self) -> int:
        return self.vbd_rsect * 512

    @property
    def disk_write_bytes(self) -> int:
        return self.vbd_wsect * 512


@dataclass(frozen=True)
class HostInfo:
    """What `xl info` says about the host."""

    total_memory_mb: int
    free_memory_mb: int
    xen_version: str
    nr_cpus: int = 0


@dataclass(frozen=True)
class Volume:
    name: str
    size_bytes: int
    path: str


@dataclass(frozen=True)
class VolumeGroupInfo:
    name: str
    size_bytes: int
    free_bytes: int
    extent_size_bytes: int


@dataclass(frozen=True)
class ThinPoolUsage:
    """How full a thin pool is, as `lvs` reports it (percent of the pool's data and metadata areas).

    A thin pool that reaches 100 % makes every thin volume in it fail writes,
    so this is what tells an operator to grow it before the guests notice.
    `metadata_percent` is None when LVM left it out (older captures did).
    """

    name: str
    size_bytes: int
    data_percent: float
    metadata_percent: float | None


@dataclass(frozen=True)
class GuestFiles:
    """Per-guest files written into a cloned root filesystem."""

    hostname: str
    fqdn: str
    address: str  # dotted quad
    netmask: str
    gateway: str
    broadcast: str
    root_device: RootDevice = "xvda"
    fs_type: FsType = "ext4"
    nameservers: tuple[str, ...] = ()
    root_password_hash: str = ""  # crypt(3) string for /etc/shadow, "" = leave as is
    authorized_keys: str = ""  # written to /root/.ssh/authorized_keys when non-empty


@dataclass(frozen=True)
class DomainSpec:
    """Everything needed to render /etc/xen/<name>.cfg."""

    name: str
    kernel: str
    memory_mb: int
    root_target: str  # /dev/<vg>/<root lv>
    swap_target: str = ""  # /dev/<vg>/<swap lv>, "" = no swap disk
    ramdisk: str = ""
    maxmem_mb: int | None = None
    vcpus: int = 1
    root_device: RootDevice = "xvda"
    bridge: str = "xenbr0"
    mac: str = ""
    extra_cmdline: str = ""
    guest_type: Literal["pv", "pvh"] = "pv"


class Dom0Host(Protocol):
    """The operations provisioning and lifecycle jobs need from a dom0."""

    toolstack: Toolstack

    # --- host ---
    def info(self) -> HostInfo: ...
    def bridge_exists(self, bridge: str) -> bool: ...
    def bridge_addresses(self, bridge: str) -> tuple[str, ...]: ...

    # --- storage (names are LV names inside the host's volume group) ---
    def volume_group(self) -> VolumeGroupInfo: ...
    def list_volumes(self) -> list[Volume]: ...
    def create_volume(self, name: str, size_mb: int) -> Volume: ...
    def snapshot_volume(self, origin: str, name: str) -> Volume: ...
    def copy_volume(self, origin: str, name: str) -> Volume: ...
    def thin_pool_usage(self) -> ThinPoolUsage: ...
    def remove_volume(self, name: str) -> bool: ...

    # --- root filesystem ---
    def clone_template(self, template: str, device: str, fs_type: FsType, method: CloneMethod) -> None: ...
    def customize_rootfs(self, device: str, files: GuestFiles) -> None: ...
    def make_swap(self, device: str) -> None: ...
    def read_guest_file(self, device: str, path: str) -> str: ...

    # --- domain config ---
    def write_config(self, spec: DomainSpec, autostart: bool = True) -> str: ...
    def remove_config(self, name: str) -> bool: ...
    def config_path(self, name: str) -> str: ...

    # --- toolstack verbs ---
    def list_domains(self) -> list[Domain]: ...
    def domain_counters(self) -> list[DomainCounters]: ...
    def create(self, name: str) -> None: ...
    def shutdown(self, name: str, wait: bool = False, timeout: float = 120) -> None: ...
    def reboot(self, name: str) -> None: ...
    def destroy(self, name: str) -> None: ...
    def pause(self, name: str) -> None: ...
    def unpause(self, name: str) -> None: ...
    def mem_set(self, name: str, memory_mb: int) -> None: ...
    def save(self, name: str, path: str) -> None: ...
    def restore(self, path: str) -> None: ...
    def saved_image_exists(self, path: str) -> bool: ...
    def remove_saved_image(self, path: str) -> bool: ...
    def restart_failure(self, name: str) -> str: ...
    def console_command(self, name: str) -> list[str]: ...


@dataclass
class HostConfig:
    """How to reach and lay out one dom0; built by the panel from a Host row."""

    name: str
    volume_group: str
    toolstack: Toolstack = "xl"
    thin_pool: str = ""
    bridge: str = "xenbr0"
    config_dir: str = "/etc/xen"
    auto_dir: str = "/etc/xen/auto"
    dom0_reserve_mb: int = 1024
    # Simulated hosts only: where the state file lives, the step delay and
    # the host's memory and disk sizes.
    sim_dir: str = ""
    sim_delay: float = 0.0
    sim_total_memory_mb: int = 16384
    sim_vg_size_mb: int = 200 * 1024
    extra: dict[str, Any] = field(default_factory=dict)
