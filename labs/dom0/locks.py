"""Locks between the jobs one dom0 runs at once: `flock` on a file per name, in a directory of the dom0.

A dom0 runs several jobs at a time (Host.jobs_at_a_time, one worker process
each). Jobs on different guests need no lock of ours: LVM serializes its own
metadata changes (its VG lock) and `xl create` its domain builds (xl's lock
file). What does need one is named here, with a file lock because the kernel
drops it when its process dies: a worker killed in the middle of a job never
leaves a lock behind for the retry to wait on.
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
