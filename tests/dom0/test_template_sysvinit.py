"""Template builds: the sysvinit variant, a dom0 kernel instead of one in the tree, and failures that say why.

Command by command with tests/e2e/test_template_build.py's FakeDom0Runner;
tests/e2e/test_template_build_real.py runs the real debootstrap into the
same failures, and tests/e2e/test_debian_guest_on_xen.py boots the result.
"""

from __future__ import annotations

import pytest

from labs.dom0.errors import Dom0Error, InvalidName
from labs.dom0.template import (
    BASE_PACKAGES,
    HVC0_GETTY,
    MIN_FREE_MB,
    TemplateBuilder,
    TemplateSpec,
    packages_for,
    render_inittab,
)
from tests.e2e.test_template_build import PARTIAL, PATH, FakeDom0Runner

DEBIAN_INITTAB = (
    "id:2:initdefault:\n"
    "si::sysinit:/etc/init.d/rcS\n"
    "l2:2:wait:/etc/init.d/rc 2\n"
    "1:2345:respawn:/sbin/getty --noclear 38400 tty1\n"
    "2:23:respawn:/sbin/getty 38400 tty2\n"
    "6:23:respawn:/sbin/getty 38400 tty6\n"
    "#T0:23:respawn:/sbin/getty -L ttyS0 9600 vt100\n"
)


def spec(**kw) -> TemplateSpec:
    return TemplateSpec(**{"path": PATH, **kw})


def test_sysvinit_and_a_dom0_kernel_change_only_the_init_and_the_kernel_package():
    assert packages_for(spec()) == BASE_PACKAGES
    sysv = packages_for(spec(init="sysvinit", kernel="/boot/vmlinux-domu"))
    assert sysv == ("sysvinit-core", "kmod", "ifupdown", "iproute2", "netbase", "openssh-server", "procps", "less")
    assert "linux-image-amd64" in packages_for(spec(init="sysvinit"))


def test_render_inittab_leaves_one_getty_on_hvc0():
    out = render_inittab(DEBIAN_INITTAB)
    active = [line for line in out.splitlines() if line and not line.startswith("#") and "getty" in line]
    assert active == [HVC0_GETTY]
    assert "#1:2345:respawn:/sbin/getty --noclear 38400 tty1" in out
    assert "l2:2:wait:/etc/init.d/rc 2" in out and "#T0:23:respawn" in out
    assert render_inittab(out) == out


def test_a_sysvinit_build_writes_inittab_and_the_host_key_hook_not_systemd_units():
    runner = FakeDom0Runner()
    runner.files[f"{PARTIAL}/etc/inittab"] = DEBIAN_INITTAB.encode()
    result = TemplateBuilder(runner).build(spec(init="sysvinit", kernel="/boot/vmlinux-domu", ramdisk="/boot/initrd"))
    files = {p: d.decode() for p, d in runner.files.items()}
    assert HVC0_GETTY in files[f"{PARTIAL}/etc/inittab"].splitlines()
    assert "ssh-keygen -A" in files[f"{PARTIAL}/etc/default/ssh"]
    assert not [p for p in files if "/etc/systemd/" in p]
    assert not [c for c in runner.calls if c[0] == "ln"]
    # The clones boot the dom0's kernel: no /boot listing is needed.
    assert (result.kernel, result.ramdisk) == ("/boot/vmlinux-domu", "/boot/initrd")
    assert not [c for c in runner.calls if c[:2] == ["ls", "-1"]]
    assert ["find", f"{PARTIAL}/var/lib/apt/lists", "-maxdepth", "1", "-type", "f", "-name", "*_*", "-delete"] in (
        runner.calls
    )
    lines = TemplateBuilder.plan(spec(init="sysvinit", kernel="/boot/vmlinux-domu"))
    assert "--include=sysvinit-core," in lines[0] and "linux-image" not in lines[0]
    assert f"one getty, on hvc0, in {PARTIAL}/etc/inittab" in lines


@pytest.mark.parametrize(
    "bad", [{"init": "upstart"}, {"kernel": "boot/vmlinuz"}, {"kernel": "/boot/x y"}, {"ramdisk": "/boot/initrd"}]
)
def test_bad_init_or_kernel_is_refused_before_any_command(bad):
    runner = FakeDom0Runner()
    with pytest.raises(InvalidName):
        TemplateBuilder(runner).build(spec(**bad))
    assert runner.calls == []


def test_too_little_space_is_refused_before_debootstrap():
    runner = FakeDom0Runner()
    runner.free_mb = 12
    with pytest.raises(Dom0Error) as caught:
        TemplateBuilder(runner).build(spec())
    assert str(caught.value) == (
        f"out of disk space: /srv/xenpanel/templates has 12 MiB free, a template needs at least {MIN_FREE_MB} MiB"
    )
    assert "debootstrap" not in runner.commands()


@pytest.mark.parametrize(
    ("stderr", "cause"),
    [
        (
            "E: Failed getting release file http://deb.debian.org/debian/dists/bookworm/Release",
            "cannot reach the mirror",
        ),
        ("W: Failure trying to run: chroot ... dpkg: error: No space left on device", "out of disk space in"),
        ("E: Couldn't find these debs: vim-tiny", ""),
    ],
    ids=["mirror", "disk", "other"],
)
def test_a_failed_bootstrap_names_its_cause_and_leaves_no_partial_tree(stderr, cause):
    runner = FakeDom0Runner(fail={"debootstrap": (1, stderr)})
    real_run = runner.run

    def quiet_log(argv, **kw):  # debootstrap.log adds nothing here
        return real_run(["true"], **kw) if argv[0] == "tail" else real_run(argv, **kw)

    runner.run = quiet_log  # type: ignore[method-assign]
    with pytest.raises(Dom0Error) as caught:
        TemplateBuilder(runner).build(spec())
    message = str(caught.value)
    assert message.startswith("debootstrap failed (exit 1)")
    if cause:
        assert cause in message, message
    else:
        assert message == "debootstrap failed (exit 1)"
    assert stderr in caught.value.detail()
    assert runner.calls[-1] == ["rm", "-rf", "--one-file-system", "--", PARTIAL]
    assert not [c for c in runner.calls if c[0] == "mv"]


def test_a_disk_that_filled_is_named_even_when_debootstrap_blames_the_download():
    # debootstrap hides wget's "No space left on device" behind "Failed getting release file".
    runner = FakeDom0Runner(fail={"debootstrap": (1, "E: Failed getting release file http://m/debian/...")})

    def free_after_start(argv, **kw):
        runner.free_mb = 2 if any(a[0] == "debootstrap" for a in runner.calls) else 77683
        return real_run(argv, **kw)

    real_run = runner.run
    runner.run = free_after_start  # type: ignore[method-assign]
    with pytest.raises(
        Dom0Error, match=r"^debootstrap failed \(exit 1\): out of disk space in /srv/xenpanel/templates$"
    ):
        TemplateBuilder(runner).build(spec())
