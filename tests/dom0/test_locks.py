"""labs.dom0.locks: a lock held by one process at a time on a dom0, dropped by the kernel when its holder dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from labs.dom0 import locks
from labs.dom0.errors import InvalidName


def _hold(lock_dir: str, name: str, ready) -> None:
    with locks.held(lock_dir, name):
        ready.set()
        time.sleep(60)


def _holder(lock_dir: str, name: str):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold, args=(lock_dir, name, ready))
    proc.start()
    assert ready.wait(10)
    return proc


def _free(lock_dir: str, name: str) -> bool:
    import fcntl

    fd = os.open(os.path.join(lock_dir, f"{name}.lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_one_holder_at_a_time_and_a_killed_holder_leaves_no_lock(tmp_path):
    lock_dir = str(tmp_path / "locks")
    proc = _holder(lock_dir, "dom0-a+guest-7")
    try:
        assert not _free(lock_dir, "dom0-a+guest-7")
        with locks.held(lock_dir, "dom0-a+guest-8"):  # another guest's lock is not this one
            pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # as a worker killed in the middle of a job
        proc.join(10)
    assert _free(lock_dir, "dom0-a+guest-7")
    with locks.held(lock_dir, "dom0-a+guest-7"):  # the retry takes it at once
        assert not _free(lock_dir, "dom0-a+guest-7")
    assert oct(os.stat(lock_dir).st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("name", ["", "../etc/passwd", "a/b", "-x", "a" * 129, "guest 7"])
def test_a_lock_name_is_never_a_path(tmp_path, name):
    with pytest.raises(InvalidName), locks.held(str(tmp_path), name):
        pass
    assert list(tmp_path.iterdir()) == []
