"""Fixtures for the dom0 layer's tests (shared: storage and toolstack).

Storage: `loop_vg` is a real LVM volume group on a loop device. This machine
has no device-mapper, so LVM runs with a private lvm.conf (LVM_SYSTEM_DIR)
that disables activation: LVM still does all its metadata work (create,
remove, extents, free space, errors) exactly as on a dom0, only no /dev node
appears. The product code is unchanged; only the runner's environment
differs. Snapshots and thin pools need device-mapper: the testbed runs them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labs.dom0.errors import Dom0Error
from labs.dom0.runner import LocalRunner

LOOP_VG_SIZE = 256 * 1024 * 1024


@dataclass
class LoopVg:
    name: str
    device: str  # /dev/loopN
    env: dict[str, str]  # what every LVM command needs: {"LVM_SYSTEM_DIR": ...}
    runner: LocalRunner


def _lvm_conf(device: str, conf_dir: Path) -> str:
    # Only our loop device is visible, so the host's own VGs (if any) are
    # neither seen nor touched; metadata backups stay in the test dir.
    return f"""\
global {{
    activation = 0
}}
devices {{
    global_filter = [ "a|^{device}$|", "r|.*|" ]
    use_devicesfile = 0
    hints = "none"
}}
backup {{
    backup = 1
    backup_dir = "{conf_dir}/backup"
    archive = 0
    archive_dir = "{conf_dir}/archive"
}}
"""


@pytest.fixture
def loop_vg(tmp_path: Path) -> Iterator[LoopVg]:
    """A 256 MiB volume group on a fresh loop device; removed afterwards, even on failure.

    CI runs as root with loop devices; a machine without them must fail
    here loudly rather than skip the storage tests.
    """
    if os.geteuid() != 0:
        pytest.fail("the LVM tests need root (losetup, pvcreate): run them as root")
    for tool in ("losetup", "pvcreate", "vgcreate", "lvcreate"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: install lvm2 / mount (scripts/setup.sh --dev)")

    image = tmp_path / "pv.img"
    with open(image, "wb") as f:
        f.truncate(LOOP_VG_SIZE)
    setup = LocalRunner()
    try:
        device = setup.run(["losetup", "-f", "--show", str(image)]).stdout.strip()
    except Dom0Error as e:
        pytest.fail(f"no loop device available for the LVM tests: {e.detail()}")

    conf_dir = tmp_path / "lvm"
    for sub in ("backup", "archive"):
        (conf_dir / sub).mkdir(parents=True)
    (conf_dir / "lvm.conf").write_text(_lvm_conf(device, conf_dir))
    env = {"LVM_SYSTEM_DIR": str(conf_dir)}
    runner = LocalRunner(env=env)
    name = f"xptest{uuid.uuid4().hex[:8]}"
    created_vg = False
    try:
        runner.run(["pvcreate", "-y", device])
        runner.run(["vgcreate", "-y", name, device])
        created_vg = True
        yield LoopVg(name=name, device=device, env=env, runner=runner)
    finally:
        errors = []
        steps = [["vgremove", "-y", "-f", name]] if created_vg else []
        steps += [["pvremove", "-y", "-ff", device]]
        for argv in steps:
            r = runner.run(argv, check=False)
            if r.rc != 0:
                errors.append(f"{' '.join(argv)}: rc {r.rc}: {r.stderr.strip()}")
        r = setup.run(["losetup", "-d", device], check=False)
        if r.rc != 0:
            errors.append(f"losetup -d {device}: rc {r.rc}: {r.stderr.strip()}")
        if errors:
            pytest.fail("loop VG teardown failed:\n" + "\n".join(errors))
