"""The simulated volume group: LVs in 4 MiB extents, thin snapshots in a thin pool, LVM's own messages.

A volume is a record in the shared state: its extents, a creation serial
(a removed and recreated volume gets a new one) and what it holds, which
filesystem.py fills in. Space is counted by accounting.py.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from .. import names
from ..base import ThinPoolUsage, Volume, VolumeGroupInfo
from ..errors import InsufficientSpace, InvalidName, LvmError, VolumeExists, VolumeNotFound
from . import accounting
from .accounting import EXTENT_BYTES, MIB, THIN_POOL_REFUSE_PERCENT
from .failures import lvm_error
from .faults import FaultsMixin
from .state import Record, State

_REPORT = ["--reportformat", "json", "--units", "b", "--nosuffix"]
# What a volume holds (filesystem.py): a snapshot or a copy holds the same.
_CONTENT = ("content", "template", "fs_type", "method", "files", "modes")


class StorageMixin(FaultsMixin):
    """The `Dom0Host` storage methods, plus the thin pool's size and guest writes for tests."""

    def volume_group(self) -> VolumeGroupInfo:
        vg = self.config.volume_group
        argv = ["vgs", *_REPORT, "-o", "vg_name,vg_size,vg_free,vg_extent_size", vg]
        with self._op("volume_group", [argv], vg, readonly=True) as state:
            free = accounting.free_extents(self.config, state)
        return VolumeGroupInfo(
            name=vg,
            size_bytes=accounting.vg_extents(self.config) * EXTENT_BYTES,
            free_bytes=free * EXTENT_BYTES,
            extent_size_bytes=EXTENT_BYTES,
        )

    def list_volumes(self) -> list[Volume]:
        vg = self.config.volume_group
        argv = ["lvs", *_REPORT, "-o", "lv_name,lv_size,lv_attr", vg]
        with self._op("list_volumes", [argv], vg, readonly=True) as state:
            vols: dict[str, int] = {n: v["extents"] for n, v in state["volumes"].items()}
        return [Volume(n, e * EXTENT_BYTES, self._vg_path(n)) for n, e in sorted(vols.items())]

    def create_volume(self, name: str, size_mb: int) -> Volume:
        names.volume_name(name)
        if not isinstance(size_mb, int) or isinstance(size_mb, bool) or size_mb < 1:
            raise InvalidName(f"invalid volume size {size_mb!r}: use a whole number of MiB from 1")
        vg = self.config.volume_group
        argv = ["lvcreate", "-y", "-L", f"{size_mb}m", "-n", name, vg]
        extents = accounting.extents(size_mb)
        with self._op("create_volume", [argv], name, extents=extents) as state:
            # LVM 2.03.16 (Debian 12) complains about a taken name before
            # looking at free space (measured by lvm.py's tests).
            if name in state["volumes"]:
                raise lvm_error(VolumeExists, argv, f'Logical Volume "{name}" already exists in volume group "{vg}"')
            free = accounting.free_extents(self.config, state)
            if extents > free:
                line = f'Volume group "{vg}" has insufficient free space ({free} extents): {extents} required.'
                raise lvm_error(InsufficientSpace, argv, line)
            state["volumes"][name] = _new_volume(state, extents)
        return Volume(name, extents * EXTENT_BYTES, self._vg_path(name))

    def snapshot_volume(self, origin: str, name: str) -> Volume:
        names.volume_name(origin)
        names.volume_name(name)
        vg = self.config.volume_group
        self._require_pool()
        argv = ["lvcreate", "-y", "-s", "-kn", "-ay", "-K", "-n", name, f"{vg}/{origin}"]
        with self._op("snapshot_volume", [argv], name) as state:
            src = state["volumes"].get(origin)
            if src is None:
                raise lvm_error(VolumeNotFound, argv, f'Failed to find logical volume "{vg}/{origin}"')
            if name in state["volumes"]:
                raise lvm_error(VolumeExists, argv, f'Logical Volume "{name}" already exists in volume group "{vg}"')
            if max(accounting.pool_percents(self.config, state)) >= THIN_POOL_REFUSE_PERCENT:
                raise lvm_error(InsufficientSpace, argv, accounting.pool_threshold_line(self.config))
            # A thin snapshot shares the origin's blocks: it holds the same
            # filesystem and files, and takes no space from the VG.
            content = {k: copy.deepcopy(src.get(k)) for k in _CONTENT}
            state["volumes"][name] = _new_volume(state, src["extents"], thin=True, origin=origin, **content)
            size: int = src["extents"] * EXTENT_BYTES
        return Volume(name, size, self._vg_path(name))

    def copy_volume(self, origin: str, name: str) -> Volume:
        """A plain volume of `origin`'s size holding the same filesystem and files (lvm.Lvm.copy: lvcreate, dd)."""
        names.volume_name(origin)
        names.volume_name(name)
        vg = self.config.volume_group
        with self._locked(readonly=True) as state:
            src = state["volumes"].get(origin)
            size_mb = src["extents"] * EXTENT_BYTES // MIB if src is not None else 1
        lvcreate = ["lvcreate", "-y", "-L", f"{size_mb}m", "-n", name, vg]
        dd = ["dd", f"if={self._vg_path(origin)}", f"of={self._vg_path(name)}", "bs=4M", "iflag=direct"]
        argvs = [lvcreate, [*dd, "oflag=direct", "conv=fsync", "status=none"]]
        extents = accounting.extents(size_mb)
        with self._op("copy_volume", argvs, name, extents=extents) as state:
            src = state["volumes"].get(origin)
            if src is None:
                raise lvm_error(VolumeNotFound, lvcreate, f'Failed to find logical volume "{vg}/{origin}"')
            if name in state["volumes"]:
                raise lvm_error(
                    VolumeExists, lvcreate, f'Logical Volume "{name}" already exists in volume group "{vg}"'
                )
            free = accounting.free_extents(self.config, state)
            if extents > free:
                line = f'Volume group "{vg}" has insufficient free space ({free} extents): {extents} required.'
                raise lvm_error(InsufficientSpace, lvcreate, line)
            content = {k: copy.deepcopy(src.get(k)) for k in _CONTENT}
            state["volumes"][name] = _new_volume(state, extents, **content)
        return Volume(name, extents * EXTENT_BYTES, self._vg_path(name))

    def thin_pool_usage(self) -> ThinPoolUsage:
        vg, pool = self.config.volume_group, self._require_pool()
        columns = "lv_name,lv_size,lv_attr,data_percent,metadata_percent"
        argv = ["lvs", *_REPORT, "-o", columns, f"{vg}/{pool}"]
        with self._op("thin_pool_usage", [argv], pool, readonly=True) as state:
            data, metadata = accounting.pool_percents(self.config, state)
            size = accounting.pool_size_bytes(self.config, state)
        return ThinPoolUsage(pool, size, data, metadata)

    def remove_volume(self, name: str) -> bool:
        names.volume_name(name)
        vg = self.config.volume_group
        argv = ["lvremove", "-y", f"{vg}/{name}"]
        with self._op("remove_volume", [argv], name) as state:
            if name not in state["volumes"]:
                return False
            if accounting.in_use_by(state, self._vg_path(name)) is not None:
                raise lvm_error(LvmError, argv, f"Logical volume {vg}/{name} in use.")
            del state["volumes"][name]
        return True

    # ------------------------------------------------ the thin pool (tests, benchmarks)
    def set_thin_pool_size(self, size_mb: int) -> None:
        """Make the thin pool `size_mb` MiB (whole extents), as lvextend would grow it (tests, benchmarks)."""
        self._require_pool()
        with self._locked() as state:
            state["thin_pool_bytes"] = accounting.extents(size_mb) * EXTENT_BYTES

    def guest_writes(self, name: str, size_mb: int) -> ThinPoolUsage | None:
        """A guest writes `size_mb` MiB of new data to its volume `name` (tests, benchmarks).

        Only thin volumes take pool space; returns the pool's usage afterwards
        (None on a host without a thin pool). Writes past a full pool are lost,
        as the guest's I/O errors are.
        """
        names.volume_name(name)
        with self._locked() as state:
            vol = state["volumes"].get(name)
            if vol is None:
                raise VolumeNotFound(f'Failed to find logical volume "{self.config.volume_group}/{name}"')
            if not accounting.thin_write(self.config, state, vol, size_mb * MIB):
                self._event(state, f"thin pool full: writes to {name} fail")
        return self.thin_pool_usage() if self.config.thin_pool else None

    # ------------------------------------------------------------ helpers
    def _vg_path(self, lv: str) -> str:
        return f"/dev/{self.config.volume_group}/{lv}"

    def _require_pool(self) -> str:
        if not self.config.thin_pool:
            # lvm.Lvm refuses before running anything.
            raise LvmError(f'volume group "{self.config.volume_group}" has no thin pool configured for this host')
        return self.config.thin_pool


def _new_volume(state: State, extents: int, **extra: Any) -> Record:
    serial = state["next_serial"]
    state["next_serial"] = serial + 1
    vol: Record = {"extents": extents, "serial": serial, "content": None, "created_at": time.time()}
    vol.update(extra)
    return vol
