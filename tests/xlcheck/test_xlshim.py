"""The xl checker itself: it runs the real xl, the shim answers only read-only calls."""

from __future__ import annotations

import re

import pytest

from labs.dom0.runner import LocalRunner
from xlcheck.xlcheck import ensure_xl, xl_dry_run, xl_env

CONFIG = """\
name = "probe"
kernel = "/boot/vmlinuz"
memory = 128
disk = ['format=raw,vdev=xvda1,access=rw,target=/dev/vg0/probe']
vif = ['bridge=xenbr0']
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "probe.cfg"
    path.write_text(CONFIG)
    return str(path)


def test_xl_is_the_real_binary_and_needs_the_shim(config_file):
    tool = ensure_xl()
    plain = {"LD_LIBRARY_PATH": tool.library_path, "XENSTORED_PATH": "/dev/null"}
    r = LocalRunner().run([tool.xl, "-N", "create", config_file], check=False, timeout=30, env=plain)
    assert r.rc != 0
    assert "cannot init xl context" in r.stderr


def test_dry_run_prints_the_domain_config():
    rc, cfg, problems = xl_dry_run(CONFIG)
    assert (rc, problems) == (0, [])
    assert cfg["c_info"]["name"] == "probe"
    assert cfg["b_info"]["target_memkb"] == 128 * 1024
    assert cfg["disks"][0]["pdev_path"] == "/dev/vg0/probe"


def test_shim_answers_only_read_only_hypercalls(tmp_path):
    trace = tmp_path / "trace"
    rc, cfg, problems = xl_dry_run(CONFIG, env={"XLSHIM_TRACE": str(trace)})
    assert rc == 0 and cfg is not None and problems == []
    lines = trace.read_text().splitlines()

    version = [line for line in lines if line.startswith("xen_version ")]
    sysctl = [line for line in lines if line.startswith("sysctl ")]
    other = [line for line in lines if line.startswith("hypercall ")]
    assert version and sysctl
    # XENVER_version reports Xen 4.17 ((4 << 16) | 17)
    assert "xen_version cmd=0 -> 262161" in version
    # the only sysctl answered is physinfo (3), and it succeeds
    assert all(re.fullmatch(r"sysctl cmd=3 -> 0", line) for line in sysctl), sysctl
    # everything else (memory_op...) fails: nothing pretends to change a domain
    assert all(line.endswith("-> ENOSYS") for line in other), other
    ioctls = [line for line in lines if line.startswith("ioctl ")]
    assert all(line.endswith("-> ENOTTY") for line in ioctls), ioctls


def test_a_real_create_fails_under_the_shim(config_file):
    tool = ensure_xl()
    r = LocalRunner().run([tool.xl, "create", config_file], check=False, timeout=30, env=xl_env(tool))
    assert r.rc != 0
    assert "libxl: error" in r.stderr


def test_overrides_after_the_file_are_applied():
    rc, cfg, problems = xl_dry_run(CONFIG, args=("memory=192",))
    assert (rc, problems) == (0, [])
    assert cfg["b_info"]["target_memkb"] == 192 * 1024
