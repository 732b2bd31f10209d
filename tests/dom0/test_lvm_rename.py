"""Lvm.rename (how a golden LV built under a temporary name goes into place) against a real LVM volume group."""

from __future__ import annotations

import pytest

from labs.dom0.base import HostConfig
from labs.dom0.errors import InvalidName, VolumeExists, VolumeNotFound
from labs.dom0.lvm import Lvm
from labs.dom0.template import RunnerTemplateHost

from .test_lvm import _lvs_names


@pytest.fixture
def lvm(loop_vg) -> Lvm:
    return Lvm(loop_vg.runner, loop_vg.name, prefix_env=loop_vg.env)


def test_a_volume_takes_its_new_name(lvm, loop_vg):
    lvm.create("xenpanel-golden-1.new", 8)
    renamed = lvm.rename("xenpanel-golden-1.new", "xenpanel-golden-1")
    assert renamed.path == f"/dev/{loop_vg.name}/xenpanel-golden-1" and renamed.size_bytes == 8 * 2**20
    assert _lvs_names(loop_vg) == ["xenpanel-golden-1"]


def test_the_template_host_renames_through_lvm(loop_vg):
    lvm = Lvm(loop_vg.runner, loop_vg.name, prefix_env=loop_vg.env)
    lvm.create("golden.new", 8)
    ops = RunnerTemplateHost(loop_vg.runner, HostConfig(name="dom0-a", volume_group=loop_vg.name))
    assert ops.rename_volume("golden.new", "golden").path == f"/dev/{loop_vg.name}/golden"
    assert _lvs_names(loop_vg) == ["golden"]


def test_lvm_s_refusals_are_the_panel_s_errors(lvm, loop_vg):
    lvm.create("a", 8)
    lvm.create("b", 8)
    with pytest.raises(VolumeExists):
        lvm.rename("a", "b")
    with pytest.raises(VolumeNotFound):
        lvm.rename("missing", "c")
    with pytest.raises(InvalidName):
        lvm.rename("a", "../etc")
    assert _lvs_names(loop_vg) == ["a", "b"]
