"""What the simulated host has left, and who holds what: memory as Xen counts it, extents as LVM does.

- memory: free = total - dom0 - every present domain's memory (paused and
  shutting-down domains still hold theirs);
- the volume group: 4 MiB extents, sizes rounded up; thin snapshots take
  nothing from it, the thin pool itself does;
- the thin pool: thin volumes take whole chunks of it as they are written.

Pure functions of the host's config and its state (state.py), called under
the state lock.
"""

from __future__ import annotations

from ..base import HostConfig
from .state import Record, State

MIB = 1024 * 1024
EXTENT_BYTES = 4 * MIB
# The thin pool (when the host has one) holds a quarter of the VG until
# set_thin_pool_size() says otherwise (kept in the shared state, like
# everything a real host would remember), and that much of the VG is not
# free, as on a real host. A thin snapshot takes no pool space until something is
# written to it, and then whole chunks (LVM's default chunk is 64 KiB):
# finishing a clone rewrites superblocks, group descriptors and bitmaps
# (e2fsck, resize2fs, tune2fs -U), each customized file costs a couple of
# chunks (its block, its inode's block), and guest_writes() models the guest.
THIN_CHUNK_BYTES = 64 * 1024
THIN_FINISH_BYTES = 4 * MIB
THIN_FILE_BYTES = 2 * THIN_CHUNK_BYTES
# Metadata (the chunk mappings) is modelled as growing at a quarter of the
# data's rate: a simplification, LVM's real ratio depends on the chunk and
# metadata area sizes.
THIN_METADATA_RATIO = 0.25
# With LVM's default thin_pool_autoextend_threshold (100), lvcreate refuses
# a new thin volume only once the pool's data or metadata is full.
THIN_POOL_REFUSE_PERCENT = 100.0


def extents(size_mb: int) -> int:
    """LVM rounds a size up to whole 4 MiB extents."""
    return -(-size_mb * MIB // EXTENT_BYTES)


# --- memory ---------------------------------------------------------------------
def free_memory(config: HostConfig, state: State) -> int:
    used: int = sum(d["memory_mb"] for d in state["domains"].values())
    return config.sim_total_memory_mb - config.dom0_reserve_mb - used


def in_use_by(state: State, path: str) -> str | None:
    """The present domain that has `path` as a disk, if any."""
    for name, d in state["domains"].items():
        if path in d.get("disks", []):
            return str(name)
    return None


# --- the volume group -------------------------------------------------------------
def vg_extents(config: HostConfig) -> int:
    return config.sim_vg_size_mb * MIB // EXTENT_BYTES


def free_extents(config: HostConfig, state: State) -> int:
    # Thin snapshots live in the thin pool and take nothing more from the VG;
    # the pool itself is an LV of the VG, made when the dom0 was set up.
    used: int = sum(v["extents"] for v in state["volumes"].values() if not v.get("thin"))
    if config.thin_pool:
        used += pool_size_bytes(config, state) // EXTENT_BYTES
    return vg_extents(config) - used


# --- the thin pool --------------------------------------------------------------------
def pool_size_bytes(config: HostConfig, state: State) -> int:
    size: int | None = state.get("thin_pool_bytes")
    return size if size else extents(max(config.sim_vg_size_mb // 4, 1)) * EXTENT_BYTES


def pool_used_bytes(state: State) -> int:
    used: int = sum(v.get("pool_bytes", 0) for v in state["volumes"].values() if v.get("thin"))
    return used


def pool_percents(config: HostConfig, state: State) -> tuple[float, float]:
    """(data, metadata) percent of the thin pool, rounded as lvs prints them."""
    data = 100.0 * pool_used_bytes(state) / pool_size_bytes(config, state)
    return round(data, 2), round(data * THIN_METADATA_RATIO, 2)


def pool_threshold_line(config: HostConfig) -> str:
    # What lvcreate says, for a pool that is full and for the injected fault alike.
    pool = f"{config.volume_group}/{config.thin_pool or 'pool'}"
    return f"Cannot create new thin volume, free space in thin pool {pool} reached threshold."


def thin_write(config: HostConfig, state: State, vol: Record, nbytes: int) -> bool:
    """Take `nbytes` (whole chunks) of pool space for writes to a thin volume; False when the pool is full.

    A thin volume never holds more of its own chunks than its size. A
    full pool fails the write (an I/O error on the real host) after
    filling what was left.
    """
    if not vol.get("thin"):
        return True
    chunks = -(-nbytes // THIN_CHUNK_BYTES) * THIN_CHUNK_BYTES
    own: int = vol.get("pool_bytes", 0)
    size: int = vol["extents"] * EXTENT_BYTES
    want = min(chunks, size - own)
    room = pool_size_bytes(config, state) - pool_used_bytes(state)
    vol["pool_bytes"] = own + max(min(want, room), 0)
    return want <= room
