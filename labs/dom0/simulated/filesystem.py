"""Root filesystems on simulated volumes: cloning, per-guest files, swap.

A volume holds nothing until `clone_template` puts a filesystem on it (or
`make_swap` a swap area); a removed and recreated volume is empty again. The
per-guest files are rendered by the real rootfs module (`guest_files`,
`set_root_password`), so tests read exactly what a real host would write.
"""

from __future__ import annotations

import os

from .. import names
from ..base import CloneMethod, FsType, GuestFiles
from ..errors import InvalidName, RootfsError
from ..rootfs import guest_files, set_root_password
from . import accounting
from .accounting import MIB, THIN_FILE_BYTES, THIN_FINISH_BYTES
from .failures import rootfs_error
from .faults import FaultsMixin
from .state import Record, State
from .templates import TREE_MB

# The template's /etc/shadow, for setting root's password in a clone.
TEMPLATE_SHADOW = "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
# The real host's `mktemp -d` directory (a mount point, or staged files), as the history shows it.
_TMP = "/tmp/xenpanel-rootfs.SIMULATED"


class FilesystemMixin(FaultsMixin):
    """The `Dom0Host` root filesystem methods."""

    def clone_template(self, template: str, device: str, fs_type: FsType, method: CloneMethod) -> None:
        """Put the template's filesystem on `device`, as XenHost does.

        mkfs/copy: `template` is a directory on the dom0; the volume gets a new
        filesystem holding it (and loses whatever it held).
        thin: `template` is the golden LV and `device` already is its thin
        snapshot (snapshot_volume), holding its filesystem; the clone is only
        checked, grown and given its own UUID.
        """
        if method == "thin":
            names.volume_name(template)
        else:
            template = names.abs_path(template).rstrip("/") or "/"
        lv = self._device_lv(device)
        if fs_type not in ("ext4", "ext3"):
            raise InvalidName(f"invalid filesystem type {fs_type!r}: use ext4 or ext3")
        if method not in ("mkfs", "copy", "thin"):
            raise InvalidName(f"invalid clone method {method!r}: use mkfs, copy or thin")
        argvs = _clone_argvs(template, device, fs_type, method)
        main = 0 if method == "thin" else 1
        with self._op("clone_template", argvs, lv or device, main=main) as state:
            vol = state["volumes"].get(lv) if lv else None
            if method == "thin":
                self._finish_thin_clone(state, vol, device, argvs[0])
                return
            if self._templates is not None and template not in self._templates:
                raise RootfsError(
                    f"template directory {template} does not exist on the host", argv=["test", "-d", template]
                )
            what = f"cloning {template} into {device}"
            self._volume_or_fail(state, lv, device, what, argvs[main])
            self._refuse_in_use(state, device, what, argvs[main])
            # mkfs -d writes the whole tree, into the thin pool when the volume is thin (a golden LV).
            tree_mb = state.get("templates", {}).get(template, {}).get("size_mb", TREE_MB)
            if not accounting.thin_write(self.config, state, state["volumes"][lv], tree_mb * MIB):
                raise rootfs_error(what, argvs[main], f"{device}: Input/output error")
            state["volumes"][lv].update(
                content="fs", template=template, fs_type=fs_type, method=method, files={}, modes={}
            )

    def _finish_thin_clone(self, state: State, vol: Record | None, device: str, argv: list[str]) -> None:
        """e2fsck, resize2fs and tune2fs on a thin snapshot: it must hold a filesystem, and the pool room to write."""
        if vol is None or vol.get("content") != "fs":
            raise RootfsError(
                f"thin clone of {device}: e2fsck found problems (exit 8)",
                argv=argv,
                rc=8,
                stderr=f"e2fsck: Bad magic number in super-block while trying to open {device}\n",
            )
        if not accounting.thin_write(self.config, state, vol, THIN_FINISH_BYTES):
            raise RootfsError(
                f"thin clone of {device}: e2fsck found problems (exit 8)",
                argv=argv,
                rc=8,
                stderr=f"e2fsck: Input/output error while writing block on {device}\n",
            )
        vol.update(method="thin")

    def customize_rootfs(self, device: str, files: GuestFiles) -> None:
        lv = self._device_lv(device)
        # Guest path -> (text, mode), except /etc/shadow; validates everything before any command.
        rendered = {f.guest_path: (f.data, f.mode) for f in guest_files(files)}
        argvs = [
            ["e2cp", "-O", "0", "-G", "0", "-P", f"{mode:o}", f"{_TMP}/{os.path.basename(path)}", f"{device}:{path}"]
            for path, (_, mode) in rendered.items()
        ]
        what = f"customizing {device}"
        with self._op("customize_rootfs", argvs, lv or device) as state:
            vol = self._volume_or_fail(state, lv, device, what, argvs[0])
            _require_fs(vol, device, what, argvs[0])
            if accounting.in_use_by(state, device) is not None:
                # Editing a running guest's filesystem from dom0 corrupts it.
                raise rootfs_error(what, argvs[0], f"{device} is in use by a running domain", e2tool=True)
            if not accounting.thin_write(self.config, state, vol, THIN_FILE_BYTES * len(rendered)):
                raise rootfs_error(what, argvs[0], "e2cp: Input/output error", e2tool=True)
            files_now = vol.setdefault("files", {})
            if files.root_password_hash:
                files_now["/etc/shadow"] = set_root_password(
                    files_now.get("/etc/shadow", TEMPLATE_SHADOW), files.root_password_hash
                )
            files_now.update({path: text for path, (text, _) in rendered.items()})
            # Modes as the real host leaves them: each written file's, and a directory's when
            # customize makes it (an existing one is left alone); sshd wants /root/.ssh 0700.
            modes = vol["modes"] = vol.get("modes") or {}
            modes.update({path: mode for path, (_, mode) in rendered.items()})
            for path in rendered:
                directory = os.path.dirname(path)
                modes.setdefault(directory, 0o700 if directory == "/root/.ssh" else 0o755)

    def make_swap(self, device: str) -> None:
        lv = self._device_lv(device)
        argv = ["mkswap", "-f", device]
        what = f"mkswap on {device}"
        with self._op("make_swap", [argv], lv or device) as state:
            vol = state["volumes"].get(lv) if lv else None
            if vol is None:
                raise rootfs_error(what, argv, f"mkswap: cannot open {device}: No such file or directory")
            if accounting.in_use_by(state, device) is not None:
                raise rootfs_error(what, argv, f"mkswap: {device}: Device or resource busy")
            vol.update(content="swap", template=None, fs_type=None, method=None, files={}, modes={})

    def read_guest_file(self, device: str, path: str) -> str:
        lv = self._device_lv(device)
        names.abs_path(path)
        argv = ["e2cp", f"{device}:{path}", "-"]
        what = f"reading {path} from {device}"
        with self._op("read_guest_file", [argv], lv or device, readonly=True) as state:
            vol = self._volume_or_fail(state, lv, device, what, argv)
            _require_fs(vol, device, what, argv)
            text: str | None = vol.get("files", {}).get(path)
            if text is None:
                raise rootfs_error(what, argv, "e2cp: File not found by ext2_lookup", e2tool=True)
        return text

    def guest_edits_file(self, name: str, path: str, text: str | None) -> None:
        """The guest writes `text` to `path` on its volume `name`, or deletes it (None): tests of save points.

        Not part of `Dom0Host`: what a student does inside the VM, where no command of dom0's reaches.
        """
        names.volume_name(name)
        names.abs_path(path)
        with self._locked() as state:
            vol = state["volumes"].get(name)
            if vol is None or vol.get("content") != "fs":
                raise ValueError(f"{name} holds no filesystem")
            files = vol.setdefault("files", {})
            if text is None:
                files.pop(path, None)
            else:
                files[path] = text

    # ------------------------------------------------------------ helpers
    def _device_lv(self, device: str) -> str | None:
        """The LV behind a device path (as the real rootfs module wants: absolute); None if not ours."""
        names.abs_path(device)
        parts = device.split("/")
        if len(parts) == 4 and parts[1] == "dev" and parts[2] == self.config.volume_group:
            return names.volume_name(parts[3])
        return None

    @staticmethod
    def _volume_or_fail(state: State, lv: str | None, device: str, what: str, argv: list[str]) -> Record:
        vol: Record | None = state["volumes"].get(lv) if lv else None
        if vol is None:
            raise rootfs_error(what, argv, f"The file {device} does not exist and no size was specified.")
        return vol

    @staticmethod
    def _refuse_in_use(state: State, device: str, what: str, argv: list[str]) -> None:
        user = accounting.in_use_by(state, device)
        if user is not None:
            line = f"{device} is apparently in use by the system; will not make a filesystem here!"
            raise rootfs_error(what, argv, line)


def _require_fs(vol: Record, device: str, what: str, argv: list[str]) -> None:
    if vol.get("content") != "fs":
        line = f"{os.path.basename(argv[0])}: Bad magic number in super-block while opening filesystem {device}"
        raise rootfs_error(what, argv, line, e2tool=True)


def _clone_argvs(template: str, device: str, fs_type: FsType, method: CloneMethod) -> list[list[str]]:
    """The commands XenHost runs for this clone method (thin: the finishing of the snapshot)."""
    mkfs = f"mkfs.{fs_type}"
    if method == "mkfs":
        return [["test", "-d", template], [mkfs, "-q", "-F", "-d", template, device]]
    if method == "copy":
        return [
            ["test", "-d", template],
            [mkfs, "-q", "-F", device],
            ["mount", "-t", fs_type, "-o", "nodev,nosuid,noexec", device, _TMP],
            ["cp", "-a", f"{template}/.", f"{_TMP}/"],
            ["umount", _TMP],
        ]
    return [
        ["e2fsck", "-f", "-p", device],
        ["resize2fs", device],
        ["tune2fs", "-U", "random", device],
        ["blkid", "-p", "-o", "value", "-s", "UUID", device],
    ]
