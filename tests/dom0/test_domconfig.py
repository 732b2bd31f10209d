"""Domain configs: every form we render goes through the REAL Xen 4.17 `xl -N create`.

xl runs here without Xen thanks to tests/xlcheck (our LD_PRELOAD shim); it
parses the file, applies libxl's defaults and prints the domain config as
JSON, which we compare with the spec. Any stderr line other than the two
harmless ones xl always prints counts as a failure. Injection attempts must
be refused before any text is rendered.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import stat

import pytest
from xlcheck.xlcheck import XlCheckError, check_config, xl_dry_run

from labs.dom0.base import DomainSpec
from labs.dom0.domconfig import ConfigStore, _spec, render, render_xl, render_xm
from labs.dom0.errors import InvalidName
from labs.dom0.runner import LocalRunner

BASE = DomainSpec(
    name="web01",
    kernel="/boot/vmlinuz-6.1.0-41-amd64",
    memory_mb=256,
    root_target="/dev/vg0/vm-web01.raiz",
    swap_target="/dev/vg0/vm-web01.swap",
    ramdisk="/boot/initrd.img-6.1.0-41-amd64",
    maxmem_mb=512,
    vcpus=2,
    bridge="xenbr0",
    mac="00:16:3e:5a:01:03",
)


def _variants():
    """Every combination we can generate: toolstack form x root device x ramdisk x swap x maxmem x type."""
    for form, root_device, ramdisk, swap, maxmem, guest_type in itertools.product(
        ("xl", "xm"), ("xvda", "hda"), (True, False), (True, False), (512, None), ("pv", "pvh")
    ):
        if form == "xm" and guest_type == "pvh":
            continue  # xm predates PVH; refusing it is tested below
        spec = dataclasses.replace(
            BASE,
            root_device=root_device,
            ramdisk=BASE.ramdisk if ramdisk else "",
            swap_target=BASE.swap_target if swap else "",
            maxmem_mb=maxmem,
            guest_type=guest_type,
        )
        label = f"{form}-{root_device}-{'rd' if ramdisk else 'nord'}-{'swap' if swap else 'noswap'}"
        label += f"-{'maxmem' if maxmem else 'nomax'}-{guest_type}"
        yield pytest.param(form, spec, id=label)


@pytest.mark.parametrize("form, spec", list(_variants()))
def test_rendered_config_passes_real_xl(form, spec):
    text = render(spec, form)
    cfg = check_config(text)  # exit 0, JSON printed, no stderr complaint

    assert cfg["c_info"]["name"] == spec.name
    assert cfg["c_info"]["type"] == spec.guest_type
    b = cfg["b_info"]
    assert b["target_memkb"] == spec.memory_mb * 1024
    assert b["max_memkb"] == (spec.maxmem_mb or spec.memory_mb) * 1024
    assert b["max_vcpus"] == spec.vcpus
    assert b["kernel"] == spec.kernel
    assert b.get("ramdisk", "") == spec.ramdisk
    root = f"/dev/{spec.root_device}1"
    assert b["cmdline"] == f"root={root} ro console=hvc0"

    disks = [(d["vdev"], d["pdev_path"], d["format"], d["readwrite"]) for d in cfg["disks"]]
    expected = [(f"{spec.root_device}1", spec.root_target, "raw", 1)]
    if spec.swap_target:
        expected.append((f"{spec.root_device}2", spec.swap_target, "raw", 1))
    assert disks == expected

    assert [(n.get("mac"), n["bridge"]) for n in cfg["nics"]] == [(spec.mac, spec.bridge)]
    assert cfg["on_reboot"] == "restart"
    # libxl leaves out values equal to its default, which is destroy for these two
    # (test_xl_shows_non_default_actions proves a different value would show).
    assert cfg.get("on_poweroff", "destroy") == "destroy"
    assert cfg.get("on_crash", "destroy") == "destroy"


def test_xl_shows_non_default_actions():
    text = render_xl(BASE).replace('on_crash = "destroy"', 'on_crash = "restart"')
    text = text.replace('on_poweroff = "destroy"', 'on_poweroff = "preserve"')
    cfg = check_config(text)
    assert cfg["on_crash"] == "restart" and cfg["on_poweroff"] == "preserve"


def test_no_mac_lets_xen_pick_one():
    cfg = check_config(render_xl(dataclasses.replace(BASE, mac="")))
    assert cfg["nics"] == [{"devid": 0, "bridge": "xenbr0"}]


def test_extra_cmdline_reaches_the_kernel_intact():
    spec = dataclasses.replace(BASE, extra_cmdline="quiet console=ttyS0,115200n8 init=/sbin/init")
    for form in ("xl", "xm"):
        cfg = check_config(render(spec, form))
        assert (
            cfg["b_info"]["cmdline"] == "root=/dev/xvda1 ro console=hvc0 quiet console=ttyS0,115200n8 init=/sbin/init"
        )


def test_xm_form_is_the_recipe_form():
    text = render_xm(dataclasses.replace(BASE, root_device="hda", maxmem_mb=None))
    assert 'root = "/dev/hda1 ro"' in text
    assert "disk = ['phy:/dev/vg0/vm-web01.raiz,hda1,w', 'phy:/dev/vg0/vm-web01.swap,hda2,w']" in text
    assert "vif = ['mac=00:16:3e:5a:01:03, bridge=xenbr0']" in text
    assert 'extra = "console=hvc0"' in text
    assert "cmdline" not in text and "maxmem" not in text


def test_xl_form_uses_keyword_disk_specs_with_target_last():
    text = render_xl(BASE)
    assert (
        "disk = ['format=raw,vdev=xvda1,access=rw,target=/dev/vg0/vm-web01.raiz', "
        "'format=raw,vdev=xvda2,access=rw,target=/dev/vg0/vm-web01.swap']"
    ) in text
    assert "type" not in text  # PV is xl's default; pvh is spelled out
    assert 'type = "pvh"' in render_xl(dataclasses.replace(BASE, guest_type="pvh"))


def test_xm_refuses_pvh():
    with pytest.raises(InvalidName, match="PV"):
        render_xm(dataclasses.replace(BASE, guest_type="pvh"))


# --- the checker itself catches what xl only warns about --------------------------------------
def test_checker_catches_a_memory_warning():
    text = render_xl(BASE).replace("memory = 256", 'memory = "lots"')
    rc, cfg, problems = xl_dry_run(text)
    assert rc == 0 and cfg is not None  # xl itself lets it through...
    assert any("memory" in line and "not a valid number" in line for line in problems)
    with pytest.raises(XlCheckError):  # ...the checker does not
        check_config(text)


def test_checker_catches_a_bad_mac_warning():
    text = render_xl(BASE).replace("mac=00:16:3e:5a:01:03", "mac=00:16:3e:5a:01:zz")
    rc, _, problems = xl_dry_run(text)
    assert rc == 0
    assert any("mac" in line for line in problems)
    with pytest.raises(XlCheckError):
        check_config(text)


@pytest.mark.parametrize(
    "mutate, complaint",
    [
        (lambda t: t.replace('name = "web01"\n', ""), "Domain name must be specified"),
        (lambda t: t.replace("kernel = ", "# kernel = "), "Neither kernel nor bootloader"),
        (lambda t: t.replace("format=raw,vdev=xvda1", "format=raw,bogus,vdev=xvda1"), "disk"),
        (lambda t: t.replace('name = "web01"', 'name = "web01'), "parsing error"),
    ],
    ids=["no-name", "no-kernel", "bad-disk", "unterminated-string"],
)
def test_checker_reports_xl_errors(mutate, complaint):
    rc, cfg, problems = xl_dry_run(mutate(render_xl(BASE)))
    assert rc != 0 and cfg is None
    assert any(complaint in line for line in problems), problems


def test_harmless_lines_are_not_problems():
    rc, _, problems = xl_dry_run(render_xl(BASE))
    assert rc == 0 and problems == []


# --- injection: refused before rendering ---------------------------------------------------------
PATH_ATTACKS = [
    "/dev/vg0/x\nkernel='/evil'",
    "/dev/vg0/x'",
    '/dev/vg0/x"',
    "/dev/vg0/x,target=/dev/sda",
    "/dev/vg0/$(reboot)",
    "/dev/vg0/../../sda",
    "-/dev/vg0/x",
    "dev/vg0/x",
    "/dev/vg0/x y",
    "/dev/vg0/x;reboot",
]
INJECTIONS = (
    [("name", v) for v in ["web01\nkernel='/evil'", "web'01", 'web"01', "web,01", "$(reboot)", "../web01", "-web01"]]
    + [(field, v) for field in ("kernel", "ramdisk", "root_target", "swap_target") for v in PATH_ATTACKS]
    + [
        ("mac", v)
        for v in [
            "00:16:3e:00:00:01,bridge=evil",
            "00:16:3e:00:00:01\n",
            "00:16:3e:00:00:01'",
            "-00:16:3e:00:00:01",
            "$(reboot)",
            "01:16:3e:00:00:01",  # multicast
        ]
    ]
    + [("bridge", v) for v in ["xenbr0,script=/evil", "xenbr0\n", "-xenbr0", "../xenbr0", "br$(x)", "a" * 16]]
    + [
        ("extra_cmdline", v)
        for v in [
            'quiet"\nkernel="/evil',
            "quiet'",
            "init=$(reboot)",
            "a;b",
            "--single",
            "init=../../bin/sh",
            "quiet\\",
            "two  spaces",
        ]
    ]
    + [
        ("memory_mb", "256"),
        ("memory_mb", 8),
        ("memory_mb", True),
        ("maxmem_mb", 128),  # below memory
        ("vcpus", 0),
        ("vcpus", "1"),
        ("root_device", "sda"),
        ("root_device", "xvda1,w"),
        ("guest_type", "hvm"),
    ]
)


@pytest.mark.parametrize("form", ["xl", "xm"])
@pytest.mark.parametrize("field, value", INJECTIONS, ids=[f"{f}={v!r}" for f, v in INJECTIONS])
def test_injection_is_refused_before_rendering(form, field, value):
    spec = dataclasses.replace(BASE, **{field: value})
    with pytest.raises(InvalidName):
        render(spec, form)


def test_spec_fields_refuse_separators_even_when_called_directly():
    # Defence in depth: the renderer's own quoting refuses what validation would.
    for bad in ["a,b", "a=b", "a b", "a'b", "a\nb", ""]:
        with pytest.raises(InvalidName):
            _spec([("target", bad)])


# --- ConfigStore: argv against a scripted runner --------------------------------------------------
def test_store_paths(forbidden_runner):
    store = ConfigStore(forbidden_runner)
    assert store.path("web01") == "/etc/xen/web01.cfg"
    assert store.auto_path("web01") == "/etc/xen/auto/web01.cfg"


def test_store_write_with_autostart(scripted_runner):
    scripted_runner.expect(["mkdir", "-p", "--", "/etc/xen/auto"])
    scripted_runner.expect(["ln", "-sfn", "--", "/etc/xen/web01.cfg", "/etc/xen/auto/web01.cfg"])
    text = render_xl(BASE)
    assert ConfigStore(scripted_runner).write("web01", text) == "/etc/xen/web01.cfg"
    assert scripted_runner.files["/etc/xen/web01.cfg"] == (text.encode(), 0o644)
    # the file is written before the link points at it
    assert scripted_runner.calls[0] == {"write_file": "/etc/xen/web01.cfg"}


def test_store_write_without_autostart_drops_the_link(scripted_runner):
    scripted_runner.expect(["rm", "-f", "--", "/etc/xen/auto/web01.cfg"])
    ConfigStore(scripted_runner).write("web01", "name = 'web01'\n", autostart=False)
    assert "/etc/xen/web01.cfg" in scripted_runner.files


def test_store_remove(scripted_runner):
    scripted_runner.expect(["test", "-e", "/etc/xen/web01.cfg"], rc=0)
    scripted_runner.expect(["rm", "-f", "--", "/etc/xen/web01.cfg", "/etc/xen/auto/web01.cfg"])
    assert ConfigStore(scripted_runner).remove("web01") is True


def test_store_remove_absent(scripted_runner):
    scripted_runner.expect(["test", "-e", "/etc/xen/web01.cfg"], rc=1)
    scripted_runner.expect(["test", "-L", "/etc/xen/auto/web01.cfg"], rc=1)
    assert ConfigStore(scripted_runner).remove("web01") is False


# --- ConfigStore on real files ---------------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    return ConfigStore(LocalRunner(), config_dir=str(tmp_path / "xen"), auto_dir=str(tmp_path / "xen" / "auto"))


def test_store_on_disk(store, tmp_path):
    (tmp_path / "xen").mkdir()
    text = render_xl(BASE)
    path = store.write("web01", text)
    assert path == str(tmp_path / "xen" / "web01.cfg")
    assert open(path).read() == text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    link = tmp_path / "xen" / "auto" / "web01.cfg"
    assert link.is_symlink() and os.readlink(link) == path
    assert store.read("web01") == text
    assert store.autostart("web01")

    # rewriting replaces the file (a new inode: readers never see half a file)
    before = os.stat(path).st_ino
    store.write("web01", text.replace("memory = 256", "memory = 384"), autostart=False)
    assert os.stat(path).st_ino != before
    assert "memory = 384" in store.read("web01")
    assert not link.exists() and not link.is_symlink()
    assert sorted(p.name for p in (tmp_path / "xen").iterdir()) == ["auto", "web01.cfg"]  # no temp files left

    store.write("web01", text)
    assert store.remove("web01") is True
    assert not os.path.exists(path) and not link.is_symlink()
    assert store.remove("web01") is False
    assert store.read("web01") is None


def test_store_removes_a_dangling_link(store, tmp_path):
    (tmp_path / "xen" / "auto").mkdir(parents=True)
    os.symlink(str(tmp_path / "xen" / "web01.cfg"), tmp_path / "xen" / "auto" / "web01.cfg")
    assert store.remove("web01") is True
    assert not (tmp_path / "xen" / "auto" / "web01.cfg").is_symlink()
