"""The template-build job with the real debootstrap on this machine, failing without the network: it says why.

- a mirror on a closed loopback port: "cannot reach the mirror <url>";
- a tiny filesystem (tmpfs): refused before debootstrap starts, with the free space it found;
- a filesystem that fills while debootstrap downloads (from a mirror on loopback whose
  Release file is bigger than the disk): "out of disk space in <dir>", although
  debootstrap itself only says "Failed getting release file".

In each case the Task fails with that message, no LabTemplate is registered and
no half-built tree is left. Needs root (tmpfs mounts, debootstrap), as the
testbed's build does; the successful build is tests/testbed/debian_template.py,
booted by test_debian_guest_on_xen.py.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from labs.dom0 import HostConfig
from labs.dom0.host import XenHost
from labs.dom0.runner import LocalRunner
from labs.jobs.template import build_template_job
from labs.models import LabTemplate, Task
from labs.services.templates import enqueue_template_build, make_spec


@pytest.fixture(autouse=True)
def _root_and_debootstrap():
    # No skip: this machine builds the testbed's templates, so it has both.
    assert os.geteuid() == 0, "template builds run debootstrap and mount a tmpfs: run the tests as root"
    assert shutil.which("debootstrap"), "debootstrap is not installed (apt-get install debootstrap)"


@pytest.fixture
def local_worker(monkeypatch):
    """The host's worker runs its commands on this machine."""
    monkeypatch.setattr(
        "labs.jobs.connect.connect_host",
        lambda h: XenHost(HostConfig(name=h.name, volume_group=h.volume_group), runner=LocalRunner()),
    )


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size_mb) -> a fresh tmpfs of that size under tmp_path, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size_mb: int) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)], check=True)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(host, path: Path, mirror: str) -> Task:
    spec = make_spec(path=str(path), suite="bookworm", mirror=mirror, init="sysvinit", kernel="/boot/vmlinux-domu")
    task = enqueue_template_build(host, "debian-12", spec)
    assert build_template_job(task.pk) == "failed"
    task.refresh_from_db()
    return task


def assert_nothing_registered(path: Path) -> None:
    assert not LabTemplate.objects.exists()
    assert not path.exists() and not Path(f"{path}.partial").exists()


@pytest.mark.django_db
def test_a_mirror_out_of_reach_fails_the_build_saying_so(host, local_worker, tmp_path):
    mirror = f"http://127.0.0.1:{closed_port()}/debian"
    path = tmp_path / "templates" / "debian-12"
    task = build(host, path, mirror)
    assert task.status == Task.Status.FAILED
    assert task.error.startswith(f"bootstrap: debootstrap failed (exit 1): cannot reach the mirror {mirror}\n"), (
        task.error
    )
    assert "Connection refused" in task.error
    assert_nothing_registered(path)


@pytest.mark.django_db
def test_a_tiny_filesystem_is_refused_before_debootstrap_starts(host, local_worker, tmpfs):
    store = tmpfs(8) / "templates"
    path = store / "debian-12"
    task = build(host, path, f"http://127.0.0.1:{closed_port()}/debian")
    assert task.status == Task.Status.FAILED
    assert task.error.startswith(
        f"bootstrap: out of disk space: {store} has 8 MiB free, a template needs at least 400 MiB"
    ), task.error
    assert "$ debootstrap" not in task.log
    assert_nothing_registered(path)


@pytest.fixture
def swollen_mirror(tmp_path):
    """A mirror on loopback whose Release file (8 MiB of junk) is bigger than the disk it is downloaded to."""
    root = tmp_path / "mirror"
    dists = root / "debian" / "dists" / "bookworm"
    dists.mkdir(parents=True)
    junk = os.urandom(8 << 20)
    for name in ("InRelease", "Release"):
        (dists / name).write_bytes(junk)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/debian"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_a_disk_that_fills_during_the_build_is_named_as_the_cause(
    host, local_worker, tmpfs, swollen_mirror, monkeypatch
):
    # Past the up-front check, so the disk really fills under debootstrap.
    monkeypatch.setattr("labs.dom0.template.MIN_FREE_MB", 1)
    store = tmpfs(4) / "templates"
    path = store / "debian-12"
    task = build(host, path, swollen_mirror)
    assert task.status == Task.Status.FAILED
    assert task.error.startswith(f"bootstrap: debootstrap failed (exit 1): out of disk space in {store}\n"), task.error
    assert_nothing_registered(path)
