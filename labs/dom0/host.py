"""`XenHost`: the real dom0, implementing `Dom0Host` (base.py) through one runner.

It owns no logic of its own beyond wiring: each protocol method is delegated
to the component that knows the job, all sharing the host's runner (local on
the dom0's worker, ssh for the testbed):

- `Toolstack` (toolstack.py): xl/xm verbs, `xl list`, `xl info`, `xentop`;
- `ConfigStore` + `render_xl`/`render_xm` (domconfig.py): /etc/xen/<name>.cfg;
- `Lvm` (lvm.py): the guest volumes in the host's volume group;
- `Rootfs` (rootfs.py): cloning the template, per-guest files, swap.

The storage components are imported when first used, so a host object for
toolstack work does not need them loaded.
"""

from __future__ import annotations

import posixpath
from functools import cached_property
from typing import TYPE_CHECKING

from . import names
from .base import (
    CloneMethod,
    Domain,
    DomainCounters,
    DomainSpec,
    FsType,
    GuestFiles,
    HostConfig,
    HostInfo,
    ThinPoolUsage,
    Volume,
    VolumeGroupInfo,
)
from .domconfig import ConfigStore, render
from .errors import InvalidName, RootfsError
from .runner import LocalRunner, Runner
from .toolstack import Toolstack

if TYPE_CHECKING:
    from .lvm import Lvm
    from .rootfs import Rootfs


class XenHost:
    """A real Xen dom0 reached through `runner` (default: commands run on this machine)."""

    def __init__(self, config: HostConfig, runner: Runner | None = None) -> None:
        self.config = config
        self.runner: Runner = runner if runner is not None else LocalRunner()
        self.toolstack = config.toolstack
        self.tools = Toolstack(self.runner, config.toolstack)
        self.configs = ConfigStore(self.runner, config.config_dir, config.auto_dir)

    @cached_property
    def lvm(self) -> Lvm:
        from .lvm import Lvm

        return Lvm(self.runner, self.config.volume_group, self.config.thin_pool)

    @cached_property
    def rootfs(self) -> Rootfs:
        from .rootfs import Rootfs

        return Rootfs(self.runner)

    # --- host -------------------------------------------------------------------
    def info(self) -> HostInfo:
        return self.tools.info()

    def bridge_exists(self, bridge: str) -> bool:
        # A Linux bridge has a `bridge` directory in sysfs; a plain NIC does not.
        path = f"/sys/class/net/{names.bridge(bridge)}/bridge"
        return self.runner.run(["test", "-d", path], check=False).rc == 0

    def bridge_addresses(self, bridge: str) -> tuple[str, ...]:
        """The bridge's own global addresses (CIDR). Guests on a bridge that holds one share a network with dom0."""
        out = self.runner.run(["ip", "addr", "show", "dev", names.bridge(bridge)]).stdout
        return parse_global_addresses(out)

    # --- storage ----------------------------------------------------------------
    def volume_group(self) -> VolumeGroupInfo:
        return self.lvm.vg_info()

    def list_volumes(self) -> list[Volume]:
        return self.lvm.list()

    def create_volume(self, name: str, size_mb: int) -> Volume:
        return self.lvm.create(name, size_mb)

    def snapshot_volume(self, origin: str, name: str) -> Volume:
        return self.lvm.snapshot(origin, name)

    def copy_volume(self, origin: str, name: str) -> Volume:
        return self.lvm.copy(origin, name)

    def thin_pool_usage(self) -> ThinPoolUsage:
        return self.lvm.thin_pool_usage()

    def remove_volume(self, name: str) -> bool:
        return self.lvm.remove(name)

    # --- root filesystem -----------------------------------------------------------
    def clone_template(self, template: str, device: str, fs_type: FsType, method: CloneMethod) -> None:
        """Put the template's filesystem on `device`.

        mkfs/copy: `template` is a directory on the dom0 and Rootfs copies it.
        thin: `template` is the golden LV and `device` already is its thin
        snapshot (snapshot_volume), so only the per-clone finishing is left.
        """
        if method != "thin":
            self.rootfs.clone(template, device, fs_type, method)
            return
        names.volume_name(template)
        self._finish_thin_clone(names.abs_path(device), fs_type)

    def _finish_thin_clone(self, device: str, fs_type: FsType) -> None:
        """Check, grow to the volume's size, and give the clone its own filesystem UUID."""
        if fs_type not in ("ext4", "ext3"):
            raise InvalidName(f"invalid filesystem type {fs_type!r}: use ext4 or ext3")
        # e2fsck -p: exit 1 means it fixed something and the fs is now clean;
        # resize2fs insists on a freshly checked filesystem.
        check = self.runner.run(["e2fsck", "-f", "-p", device], check=False)
        if check.rc not in (0, 1):
            raise RootfsError(
                f"thin clone of {device}: e2fsck found problems (exit {check.rc})",
                argv=check.argv,
                rc=check.rc,
                stderr=check.stderr,
            )
        grow = self.runner.run(["resize2fs", device], check=False)
        if grow.rc != 0:
            raise RootfsError(
                f"thin clone of {device}: resize2fs failed (exit {grow.rc})",
                argv=grow.argv,
                rc=grow.rc,
                stderr=grow.stderr,
            )
        # Every snapshot starts with the golden image's UUID; two guests
        # sharing one would confuse anything that mounts by UUID.
        self.rootfs.new_uuid(device)

    def customize_rootfs(self, device: str, files: GuestFiles) -> None:
        self.rootfs.customize(device, files)

    def make_swap(self, device: str) -> None:
        self.rootfs.mkswap(device)

    def read_guest_file(self, device: str, path: str) -> str:
        return self.rootfs.read_file(device, path)

    # --- domain config -----------------------------------------------------------------
    def write_config(self, spec: DomainSpec, autostart: bool = True) -> str:
        return self.configs.write(spec.name, render(spec, self.toolstack), autostart=autostart)

    def remove_config(self, name: str) -> bool:
        return self.configs.remove(name)

    def config_path(self, name: str) -> str:
        return self.configs.path(name)

    # --- toolstack verbs -----------------------------------------------------------------
    def list_domains(self) -> list[Domain]:
        return self.tools.list_domains()

    def domain_counters(self) -> list[DomainCounters]:
        return self.tools.domain_counters()

    def create(self, name: str) -> None:
        self.tools.create(self.configs.path(name))

    def shutdown(self, name: str, wait: bool = False, timeout: float = 120) -> None:
        self.tools.shutdown(name, wait=wait, timeout=timeout)

    def reboot(self, name: str) -> None:
        self.tools.reboot(name)

    def destroy(self, name: str) -> None:
        self.tools.destroy(name)

    def pause(self, name: str) -> None:
        self.tools.pause(name)

    def unpause(self, name: str) -> None:
        self.tools.unpause(name)

    def mem_set(self, name: str, memory_mb: int) -> None:
        self.tools.mem_set(name, memory_mb)

    def save(self, name: str, path: str) -> None:
        # xl does not make the image's directory; xendomains makes its own the same way (mode 0700: an
        # image holds the guest's memory).
        self.runner.run(["mkdir", "-p", "-m", "0700", posixpath.dirname(names.abs_path(path))])
        self.tools.save(name, path)

    def restore(self, path: str) -> None:
        self.tools.restore(path)

    def saved_image_exists(self, path: str) -> bool:
        return self.runner.run(["test", "-f", names.abs_path(path)], check=False).rc == 0

    def remove_saved_image(self, path: str) -> bool:
        """Delete a save image once restored (xendomains does the same): a stale one restored later, at a
        host's boot, would run the guest on a disk that has moved on since."""
        if not self.saved_image_exists(path):
            return False
        self.runner.run(["rm", "-f", "--", names.abs_path(path)])
        return True

    def restart_failure(self, name: str) -> str:
        return self.tools.restart_failure(name)

    def console_command(self, name: str) -> list[str]:
        return self.tools.console_command(name)


def parse_global_addresses(ip_addr_show: str) -> tuple[str, ...]:
    """`inet`/`inet6` addresses of scope global in `ip addr show` output (iproute2's or busybox's).

    Link-local IPv6 (fe80::/10, scope link) comes with every bridge that is up
    and reaches no other network, so it does not count.
    """
    found = []
    for line in ip_addr_show.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("inet", "inet6") and "global" in words[words.index("scope") + 1 :][:1]:
            found.append(words[1])
    return tuple(found)
