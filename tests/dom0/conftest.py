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


# --- toolstack / config tests: runners that never run anything ---------------
@dataclass
class Expected:
    argv: list[str]
    stdout: str = ""
    stderr: str = ""
    rc: int = 0


class ScriptedRunner:
    """A runner that answers from a script of expected commands, in order.

    Each `run` must be exactly the next expected argv, or the test fails;
    the answer is that entry's captured stdout/stderr/rc, and a non-zero rc
    raises CommandFailed the way LocalRunner does. Files written are kept in
    `files`. The fixture fails the test if expected commands were never run.
    """

    def __init__(self) -> None:
        self.expected: list[Expected] = []
        self.calls: list[dict] = []
        self.files: dict[str, tuple[bytes, int]] = {}
        self.busy_seconds = 0.0

    def expect(self, argv: list[str], stdout: str = "", stderr: str = "", rc: int = 0) -> ScriptedRunner:
        self.expected.append(Expected(list(argv), stdout, stderr, rc))
        return self

    def run(self, argv, *, timeout=300.0, check=True, input=None, env=None):
        from labs.dom0.errors import CommandFailed
        from labs.dom0.runner import Result

        argv = list(argv)
        self.calls.append({"argv": argv, "timeout": timeout, "check": check, "input": input, "env": env})
        if not self.expected:
            pytest.fail(f"unexpected command: {argv}")
        want = self.expected.pop(0)
        if argv != want.argv:
            pytest.fail(f"wrong command:\n  ran      {argv}\n  expected {want.argv}")
        if check and want.rc != 0:
            raise CommandFailed(f"{argv[0]} failed (exit {want.rc})", argv=argv, rc=want.rc, stderr=want.stderr)
        return Result(argv, want.rc, want.stdout, want.stderr, 0.0)

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.calls.append({"write_file": path})
        self.files[path] = (bytes(data), mode)

    def read_file(self, path: str) -> bytes:
        self.calls.append({"read_file": path})
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path][0]


class ForbiddenRunner:
    """A runner for tests that must refuse input before any command is built."""

    busy_seconds = 0.0

    def run(self, argv, **kwargs):
        pytest.fail(f"a command ran although the input should have been refused first: {list(argv)}")

    def write_file(self, path, data, mode=0o644):
        pytest.fail(f"a file was written although the input should have been refused first: {path}")

    def read_file(self, path):
        pytest.fail(f"a file was read although the input should have been refused first: {path}")


@pytest.fixture
def scripted_runner() -> Iterator[ScriptedRunner]:
    runner = ScriptedRunner()
    yield runner
    if runner.expected:
        pytest.fail(f"expected commands never ran: {[e.argv for e in runner.expected]}")


@pytest.fixture
def forbidden_runner() -> ForbiddenRunner:
    return ForbiddenRunner()


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixture_text():
    """Read a file of tests/dom0/fixtures (see its README for where each comes from)."""

    def read(name: str) -> str:
        return (FIXTURES / name).read_text()

    return read
