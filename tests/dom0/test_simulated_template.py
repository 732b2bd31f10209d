"""The simulated dom0 builds templates and golden LVs as the real one does, and runs no command doing it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from labs.dom0.base import HostConfig
from labs.dom0.errors import Dom0Error, InvalidName, LvmError, VolumeExists, VolumeNotFound
from labs.dom0.simulated import SimulatedHost
from labs.dom0.template import (
    LS_ALIAS_LINE,
    TMOUT_LINE,
    RunnerTemplateHost,
    TemplateHost,
    TemplateSpec,
    static_files,
    template_ops,
)
from tests.e2e.test_template_build import FakeDom0Runner

PATH = "/srv/xenpanel/templates/debian-12"


@pytest.fixture
def no_process(monkeypatch):
    """Any process started from here on fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"the simulated dom0 started a process: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", refuse)


def _sim(tmp_path: Path, **kw) -> SimulatedHost:
    return SimulatedHost(HostConfig(name="dom0-sim", volume_group="vg0", sim_dir=str(tmp_path / "sim"), **kw))


def test_a_build_leaves_the_real_modules_files_and_answers_like_the_real_builder(tmp_path, no_process):
    sim = _sim(tmp_path)
    assert template_ops(sim) is sim and isinstance(sim, TemplateHost)
    log: list[str] = []
    result = sim.build_template(TemplateSpec(path=PATH), log=log.append)
    assert result.path == PATH
    assert result.kernel.startswith(f"{PATH}/boot/vmlinuz-") and result.ramdisk.startswith(f"{PATH}/boot/initrd.img-")
    assert result.size_mb > 0 and "openssh-server" in result.packages
    tree = sim.templates()[PATH]
    for path, text in static_files(TemplateSpec(path=PATH)).items():
        assert tree["files"][path] == text
    profile = tree["files"]["/etc/profile"]
    assert profile.splitlines()[-2:] == [LS_ALIAS_LINE, TMOUT_LINE]
    assert "/etc/systemd/system/getty.target.wants/serial-getty@hvc0.service" in tree["links"]
    # The history has the argv a real dom0 would have run; the log has the build's plan.
    assert sim.history[-2][0] == "debootstrap" and sim.history[-1] == ["mv", "-T", "--", f"{PATH}.partial", PATH]
    assert any(line.startswith("(simulated) debootstrap --variant=minbase") for line in log)


def test_an_existing_tree_is_kept_unless_replace_and_bad_values_are_refused(tmp_path, no_process):
    sim = _sim(tmp_path)
    sim.build_template(TemplateSpec(path=PATH))
    with pytest.raises(Dom0Error, match="already exists"):
        sim.build_template(TemplateSpec(path=PATH))
    sim.build_template(TemplateSpec(path=PATH, replace=True))
    before = len(sim.history)
    with pytest.raises(InvalidName):
        sim.build_template(TemplateSpec(path="/etc"))
    with pytest.raises(InvalidName):
        sim.build_template(TemplateSpec(path=PATH, mirror="http://mirror/debian $(reboot)"))
    assert len(sim.history) == before


def test_a_built_tree_can_be_cloned_and_a_golden_lv_made_of_it(tmp_path, no_process):
    sim = _sim(tmp_path, thin_pool="pool0", extra={"sim_templates": []})
    sim.set_thin_pool_size(2000)
    # A template directory that was never built does not exist on this host.
    new = sim.create_thin_volume("golden.new", 1024)
    with pytest.raises(Dom0Error, match="does not exist"):
        sim.clone_template(PATH, new.path, "ext4", "mkfs")
    sim.build_template(TemplateSpec(path=PATH))
    sim.clone_template(PATH, new.path, "ext4", "mkfs")
    # mkfs -d wrote the tree into the pool.
    assert sim.thin_pool_usage().data_percent > 20
    golden = sim.rename_volume("golden.new", "golden")
    assert golden.path == "/dev/vg0/golden" and "golden.new" not in sim.volumes()
    clone = sim.snapshot_volume("golden", "vm-a.raiz")
    sim.clone_template("golden", clone.path, "ext4", "thin")
    assert sim.history[-5][:4] == ["lvcreate", "-y", "-s", "-kn"]


def test_thin_volume_and_rename_errors_are_lvms(tmp_path, no_process):
    with pytest.raises(LvmError, match="no thin pool"):
        _sim(tmp_path).create_thin_volume("golden", 64)
    sim = _sim(tmp_path, thin_pool="pool0")
    sim.create_thin_volume("golden", 64)
    assert sim.history[-1] == ["lvcreate", "-y", "-V", "64m", "-T", "vg0/pool0", "-n", "golden"]
    with pytest.raises(VolumeExists):
        sim.create_thin_volume("golden", 64)
    with pytest.raises(VolumeNotFound):
        sim.rename_volume("missing", "other")
    sim.create_thin_volume("other", 64)
    with pytest.raises(VolumeExists):
        sim.rename_volume("golden", "other")


class LvmAnswers(FakeDom0Runner):
    """Answers `lvs` about one volume of 1 GiB, as LVM's JSON report does."""

    def run(self, argv, **kw):
        result = super().run(argv, **kw)
        if argv[0] == "lvs":
            name = argv[-1].split("/")[-1]
            report = {"report": [{"lv": [{"lv_name": name, "lv_size": str(1024 * 1024 * 1024)}]}]}
            return type(result)(result.argv, 0, json.dumps(report), "", 0.01)
        return result


def test_the_real_dom0_runs_the_same_steps_through_its_runner():
    runner = LvmAnswers()
    ops = RunnerTemplateHost(runner, HostConfig(name="dom0-a", volume_group="vg0", thin_pool="pool0"))
    assert ops.create_thin_volume("golden.new", 1024).path == "/dev/vg0/golden.new"
    assert runner.calls[0] == ["lvcreate", "-y", "-V", "1024m", "-T", "vg0/pool0", "-n", "golden.new"]
    assert ops.rename_volume("golden.new", "golden").path == "/dev/vg0/golden"
    assert ["lvrename", "vg0", "golden.new", "golden"] in runner.calls
    commands = [c[0] for c in runner.calls]
    assert set(commands) == {"lvcreate", "lvrename", "lvs"}


def test_a_sysvinit_tree_with_the_dom0_s_kernel_is_built_as_the_real_one(tmp_path, no_process):
    sim = _sim(tmp_path)
    spec = TemplateSpec(path=PATH, init="sysvinit", kernel="/boot/vmlinuz-6.1.0-xen", ramdisk="/boot/initrd-xen")
    result = sim.build_template(spec)
    assert (result.kernel, result.ramdisk) == ("/boot/vmlinuz-6.1.0-xen", "/boot/initrd-xen")
    assert "linux-image-amd64" not in result.packages and "sysvinit-core" in result.packages
    tree = sim.templates()[PATH]
    inittab = tree["files"]["/etc/inittab"].splitlines()
    assert "#2:23:respawn:/sbin/getty 38400 tty2" in inittab and any("hvc0" in line for line in inittab)
    assert tree["links"] == {} and "/etc/default/ssh" in tree["files"]
