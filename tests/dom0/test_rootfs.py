"""labs.dom0.rootfs on real filesystems in image files (the same commands an LV gets).

Everything read back here is read by tools other than the class under test
(debugfs, e2ls, blkid, e2fsck) wherever that makes the check independent.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from labs.dom0.base import GuestFiles
from labs.dom0.errors import InvalidName, RootfsError
from labs.dom0.rootfs import Rootfs
from labs.dom0.runner import LocalRunner

SHADOW = "root:*:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\nalice:!:19700:0:99999:7:::\n"
HASH = "$6$saltsalt$Ow0Xy1eOOG1yX9QW2wzQ9r2bS4C3wz0s2G1yQb8Pq.z2m3x4N5v6B7n8M9a0S1d2F3g4H5j6K7l8Z9x0C1v2B3"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7a9s8d7f6g5h4j3k2l1qwertyuiopasdfghjklzx ivy@lab"


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL)


def _debugfs(image: Path, request: str) -> str:
    return _sh("debugfs", "-R", request, str(image)).stdout


def _fsck_clean(image: Path) -> None:
    r = _sh("e2fsck", "-fn", str(image), check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def _blkid(image: Path, tag: str) -> str:
    return _sh("blkid", "-p", "-o", "value", "-s", tag, str(image), check=False).stdout.strip()


def _ls(image: Path, directory: str) -> dict[str, tuple[str, str, str]]:
    """{name: (mode, uid, gid)} via e2ls -aln."""
    out = _sh("e2ls", "-aln", f"{image}:{directory}").stdout
    rows = {}
    for line in out.splitlines():
        f = line.split(None, 7)
        if len(f) == 8:
            rows[f[7]] = (f[1], f[2], f[3])
    return rows


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """A small minbase-like tree: no /etc/hosts, no /etc/network, like debootstrap minbase."""
    t = tmp_path / "modelo"
    for d in ("etc", "usr/bin", "usr/share/doc/base", "home/alice", "var/empty", "root"):
        (t / d).mkdir(parents=True)
    os.chmod(t / "root", 0o700)
    (t / "etc/hostname").write_text("modelo\n")
    (t / "etc/motd").write_text("Welcome to the lab.\n")
    # Larger than one block, so e2cp must free a multi-block extent tree.
    (t / "etc/fstab").write_text("# template fstab\n" + "#" * 20000 + "\n")
    (t / "etc/shadow").write_text(SHADOW)
    os.chown(t / "etc/shadow", 0, 42)
    os.chmod(t / "etc/shadow", 0o640)
    (t / "usr/bin/tool").write_text("#!/bin/sh\necho tool\n")
    os.chmod(t / "usr/bin/tool", 0o755)
    (t / "usr/share/doc/base/a file with spaces").write_text("spaces survive\n")
    (t / "home/alice/notes").write_text("alice's\n")
    os.chown(t / "home/alice", 1000, 1000)
    os.chown(t / "home/alice/notes", 1000, 1000)
    os.setxattr(t / "etc/motd", "user.test", b"kept")
    os.symlink("usr/bin", t / "bin")
    os.link(t / "usr/bin/tool", t / "usr/bin/tool-hardlink")
    return t


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> Path:
    d = tmp_path / "runner-tmp"
    d.mkdir()
    return d


@pytest.fixture
def runner(tmpdir_env: Path) -> LocalRunner:
    # mktemp -d on the "host" lands here, so tests can see what is left behind.
    return LocalRunner(env={"TMPDIR": str(tmpdir_env)})


@pytest.fixture
def rootfs(runner: LocalRunner) -> Rootfs:
    return Rootfs(runner)


def _image(tmp_path: Path, name: str = "root.img", size_mb: int = 64) -> Path:
    image = tmp_path / name
    with open(image, "wb") as f:
        f.truncate(size_mb * 1024 * 1024)
    return image


def _files(**over) -> GuestFiles:
    values = dict(
        hostname="virt01",
        fqdn="virt01.lab.example.edu",
        address="192.168.1.4",
        netmask="255.255.255.0",
        gateway="192.168.1.1",
        broadcast="192.168.1.255",
        nameservers=("192.168.1.1", "9.9.9.9"),
    )
    values.update(over)
    return GuestFiles(**values)


def _no_mounts_under(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return not any(str(path) in line for line in f)


# --- clone ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["mkfs", "copy"])
@pytest.mark.parametrize("fs_type", ["ext4", "ext3"])
def test_clone_copies_the_template(rootfs, template, tmp_path, tmpdir_env, method, fs_type):
    image = _image(tmp_path)
    rootfs.clone(str(template), str(image), fs_type=fs_type, method=method)

    _fsck_clean(image)
    assert _blkid(image, "TYPE") == fs_type
    assert rootfs.read_file(str(image), "/etc/motd") == "Welcome to the lab.\n"
    assert _sh("e2cp", f"{image}:/usr/share/doc/base/a file with spaces", "-").stdout == "spaces survive\n"
    # xattr, symlink, hard link, owner and mode all survive.
    assert '"kept"' in _debugfs(image, "ea_get /etc/motd user.test")
    assert 'Fast link dest: "usr/bin"' in _debugfs(image, "stat /bin")
    usr_bin = _ls(image, "/usr/bin")
    assert usr_bin["tool"][0] == "-rwxr-xr-x"
    inodes = _sh("e2ls", "-i", f"{image}:/usr/bin").stdout.split()
    assert inodes[inodes.index("tool") - 1] == inodes[inodes.index("tool-hardlink") - 1]
    assert _ls(image, "/home/alice")["notes"][1:] == ("1000", "1000")
    assert _ls(image, "/etc")["shadow"] == ("-rw-r-----", "0", "42")
    assert _ls(image, "/root")["."][0] == "drwx------"
    # Nothing left mounted or staged on the host.
    assert _no_mounts_under(tmpdir_env)
    assert list(tmpdir_env.iterdir()) == []


def test_clones_get_their_own_filesystem_uuid(rootfs, template, tmp_path):
    a, b = _image(tmp_path, "a.img"), _image(tmp_path, "b.img")
    rootfs.clone(str(template), str(a))
    rootfs.clone(str(template), str(b))
    uuid_a, uuid_b = rootfs.fs_uuid(str(a)), rootfs.fs_uuid(str(b))
    assert uuid_a and uuid_b and uuid_a != uuid_b
    assert uuid_a == _blkid(a, "UUID")


def test_new_uuid_gives_a_thin_style_clone_its_own_uuid(rootfs, template, tmp_path):
    # A thin snapshot is a block copy of the golden image: same UUID until changed.
    golden = _image(tmp_path, "golden.img")
    rootfs.clone(str(template), str(golden))
    clone = tmp_path / "clone.img"
    _sh("cp", "--sparse=always", str(golden), str(clone))
    assert _blkid(clone, "UUID") == _blkid(golden, "UUID")
    new = rootfs.new_uuid(str(clone))
    assert new != _blkid(golden, "UUID")
    assert new == _blkid(clone, "UUID")
    _fsck_clean(clone)


def test_clone_onto_an_old_filesystem_replaces_it(rootfs, template, tmp_path):
    image = _image(tmp_path)
    rootfs.clone(str(template), str(image), fs_type="ext3", method="copy")
    rootfs.customize(str(image), _files())
    rootfs.clone(str(template), str(image), fs_type="ext4")
    _fsck_clean(image)
    assert _blkid(image, "TYPE") == "ext4"
    assert rootfs.read_file(str(image), "/etc/hostname") == "modelo\n"


# --- customize --------------------------------------------------------------------
EXPECTED_HOSTS = """\
127.0.0.1\tlocalhost
192.168.1.4\tvirt01.lab.example.edu\tvirt01

# The following lines are desirable for IPv6 capable hosts
::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""

EXPECTED_INTERFACES = """\
# Written by xenpanel for virt01.
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet static
\taddress 192.168.1.4
\tnetmask 255.255.255.0
\tbroadcast 192.168.1.255
\tgateway 192.168.1.1
\tdns-nameservers 192.168.1.1 9.9.9.9
"""


@pytest.mark.parametrize("method", ["mkfs", "copy"])
def test_customize_writes_the_per_guest_files(rootfs, template, tmp_path, tmpdir_env, method):
    image = _image(tmp_path)
    rootfs.clone(str(template), str(image), method=method)
    rootfs.customize(str(image), _files(root_password_hash=HASH, authorized_keys=KEY + "\n\n"))
    dev = str(image)

    assert rootfs.read_file(dev, "/etc/hostname") == "virt01\n"
    assert rootfs.read_file(dev, "/etc/hosts") == EXPECTED_HOSTS
    assert rootfs.read_file(dev, "/etc/network/interfaces") == EXPECTED_INTERFACES
    fstab = rootfs.read_file(dev, "/etc/fstab").splitlines()
    assert "/dev/xvda1\t/\text4\tdefaults,errors=remount-ro\t0\t1" in fstab
    assert "/dev/xvda2\tnone\tswap\tsw,nofail\t0\t0" in fstab
    assert "proc\t/proc\tproc\tdefaults\t0\t0" in fstab
    # Root's password field replaced, nothing else in shadow changed, owner and mode kept.
    shadow = rootfs.read_file(dev, "/etc/shadow")
    assert shadow == SHADOW.replace("root:*:", f"root:{HASH}:")
    assert _ls(image, "/etc")["shadow"] == ("-rw-r-----", "0", "42")
    assert rootfs.read_file(dev, "/root/.ssh/authorized_keys") == KEY + "\n"
    assert _ls(image, "/root")[".ssh"] == ("drwx------", "0", "0")
    assert _ls(image, "/root/.ssh")["authorized_keys"] == ("-rw-------", "0", "0")
    # minbase lacks /etc/network: created as a normal directory.
    assert _ls(image, "/etc")["network"] == ("drwxr-xr-x", "0", "0")
    assert _ls(image, "/etc")["hosts"] == ("-rw-r--r--", "0", "0")
    # Independent reader: debugfs sees the same hostname.
    assert _debugfs(image, "cat /etc/hostname") == "virt01\n"
    # The rest of the template is untouched.
    assert rootfs.read_file(dev, "/etc/motd") == "Welcome to the lab.\n"
    _fsck_clean(image)
    assert list(tmpdir_env.iterdir()) == []


def _snapshot(rootfs: Rootfs, image: Path) -> dict[str, object]:
    paths = ["/etc/hostname", "/etc/hosts", "/etc/fstab", "/etc/network/interfaces", "/etc/shadow"]
    state: dict[str, object] = {p: rootfs.read_file(str(image), p) for p in paths}
    for directory in ("/etc", "/etc/network", "/root/.ssh"):
        state[directory] = {k: v for k, v in _ls(image, directory).items() if k not in (".", "..")}
    state["/root/.ssh/authorized_keys"] = rootfs.read_file(str(image), "/root/.ssh/authorized_keys")
    return state


@pytest.mark.parametrize("fs_type", ["ext4", "ext3"])
def test_customize_twice_gives_the_same_result_and_a_clean_fs(rootfs, template, tmp_path, fs_type):
    image = _image(tmp_path)
    rootfs.clone(str(template), str(image), fs_type=fs_type)
    files = _files(root_password_hash=HASH, authorized_keys=KEY, fs_type=fs_type)
    rootfs.customize(str(image), files)
    first = _snapshot(rootfs, image)
    _fsck_clean(image)
    rootfs.customize(str(image), files)
    assert _snapshot(rootfs, image) == first
    _fsck_clean(image)
    # Another guest's values, then back: the files follow the last call exactly.
    rootfs.customize(str(image), _files(hostname="virt02", fqdn="virt02.lab.example.edu", address="192.168.1.5"))
    assert rootfs.read_file(str(image), "/etc/hostname") == "virt02\n"
    rootfs.customize(str(image), files)
    assert _snapshot(rootfs, image) == first
    _fsck_clean(image)


def test_customize_takes_a_fixed_handful_of_commands(rootfs, runner, template, tmp_path):
    # Each command is an ssh round trip on a remote dom0: the count must not
    # grow with the number of files (one tar stages them all, one e2cp per
    # directory and owner, one debugfs inspects, one reads back).
    image = _image(tmp_path)
    rootfs.clone(str(template), str(image))
    files = _files(root_password_hash=HASH, authorized_keys=KEY)
    rootfs.customize(str(image), files)
    seen = len(runner.history)
    rootfs.customize(str(image), files)
    assert [r.argv[0] for r in runner.history[seen:]] == [
        "debugfs",  # ls -l of /etc, /etc/network, /root, /root/.ssh + cat /etc/shadow
        "mktemp",
        "tar",
        "e2cp",  # /etc: hostname, hosts, fstab
        "e2cp",  # /etc/network/interfaces
        "e2cp",  # /root/.ssh/authorized_keys
        "e2cp",  # /etc/shadow (its own owner and mode)
        "debugfs",  # read-back
        "rm",
    ]


def test_old_hosts_get_hda_and_ext3_in_fstab(rootfs, template, tmp_path):
    image = _image(tmp_path)
    rootfs.clone(str(template), str(image), fs_type="ext3", method="copy")
    rootfs.customize(str(image), _files(root_device="hda", fs_type="ext3", gateway="", nameservers=()))
    fstab = rootfs.read_file(str(image), "/etc/fstab")
    assert "/dev/hda1\t/\text3\tdefaults,errors=remount-ro\t0\t1\n" in fstab
    assert "/dev/hda2\tnone\tswap\tsw,nofail\t0\t0\n" in fstab
    assert "xvda" not in fstab
    interfaces = rootfs.read_file(str(image), "/etc/network/interfaces")
    assert "gateway" not in interfaces and "dns-nameservers" not in interfaces
    # No password or keys asked for: shadow untouched, no /root/.ssh.
    assert rootfs.read_file(str(image), "/etc/shadow") == SHADOW
    assert ".ssh" not in _ls(image, "/root")
    _fsck_clean(image)


def test_short_hostname_without_domain(rootfs, template, tmp_path):
    image = _image(tmp_path)
    rootfs.clone(str(template), str(image))
    rootfs.customize(str(image), _files(fqdn=""))
    assert "192.168.1.4\tvirt01\n" in rootfs.read_file(str(image), "/etc/hosts")


def test_customize_refuses_to_write_through_a_guest_symlink(rootfs, template, tmp_path, tmpdir_env):
    # An absolute symlink in the guest must never reach dom0's files, and
    # e2tools would corrupt the fs replacing it: refuse, change nothing.
    victim = tmp_path / "dom0-file"
    victim.write_text("dom0's own\n")
    os.symlink(str(victim), template / "etc/hosts")
    image = _image(tmp_path)
    rootfs.clone(str(template), str(image))
    with pytest.raises(RootfsError, match="/etc/hosts .* not a regular file"):
        rootfs.customize(str(image), _files())
    assert victim.read_text() == "dom0's own\n"
    assert rootfs.read_file(str(image), "/etc/hostname") == "modelo\n"
    _fsck_clean(image)
    assert list(tmpdir_env.iterdir()) == []


class _SilentlyFailingE2cp(LocalRunner):
    """e2cp that writes nothing yet exits 0 with no output, as e2tools can."""

    def run(self, argv, **kw):
        argv = list(argv)
        if argv[0] == "e2cp" and ":" in argv[-1]:
            argv = ["true"]
        return super().run(argv, **kw)


def test_a_write_that_silently_did_nothing_is_caught_by_the_read_back(template, tmp_path, tmpdir_env):
    image = _image(tmp_path)
    Rootfs(LocalRunner()).clone(str(template), str(image))
    rootfs = Rootfs(_SilentlyFailingE2cp(env={"TMPDIR": str(tmpdir_env)}))
    with pytest.raises(RootfsError, match="/etc/hostname, /etc/hosts, /etc/fstab, /etc/network/interfaces did not"):
        rootfs.customize(str(image), _files())
    assert list(tmpdir_env.iterdir()) == []


def test_customize_on_a_device_without_a_filesystem_fails_cleanly(rootfs, tmp_path, tmpdir_env, runner):
    image = _image(tmp_path, size_mb=8)
    with pytest.raises(RootfsError, match="no readable ext2/3/4 filesystem") as e:
        rootfs.customize(str(image), _files())
    assert e.value.argv[:3] == ["debugfs", "-f", "-"]
    assert [r.argv[0] for r in runner.history] == ["debugfs"]  # nothing written
    assert list(tmpdir_env.iterdir()) == []


def test_password_needs_a_shadow_file(rootfs, template, tmp_path, tmpdir_env):
    (template / "etc/shadow").unlink()
    image = _image(tmp_path)
    rootfs.clone(str(template), str(image))
    with pytest.raises(RootfsError, match="no /etc/shadow"):
        rootfs.customize(str(image), _files(root_password_hash=HASH))
    assert list(tmpdir_env.iterdir()) == []
    _fsck_clean(image)


# --- swap and reads ----------------------------------------------------------------
def test_mkswap_makes_a_swap_signature(rootfs, tmp_path):
    swap = _image(tmp_path, "swap.img", 16)
    rootfs.mkswap(str(swap))
    assert _blkid(swap, "TYPE") == "swap"
    labelled = _image(tmp_path, "swap2.img", 16)
    rootfs.mkswap(str(labelled), label="virt01-swap")
    assert _blkid(labelled, "TYPE") == "swap"
    assert _blkid(labelled, "LABEL") == "virt01-swap"


def test_read_file_of_a_missing_path_raises(rootfs, template, tmp_path):
    image = _image(tmp_path)
    rootfs.clone(str(template), str(image))
    with pytest.raises(RootfsError) as e:
        rootfs.read_file(str(image), "/etc/nope")
    assert e.value.argv[0] == "e2cp"


def test_check_reports_a_damaged_filesystem(rootfs, template, tmp_path):
    image = _image(tmp_path)
    rootfs.clone(str(template), str(image))
    rootfs.check(str(image))
    # Zero the primary superblock's magic area: e2fsck -n must fail.
    with open(image, "r+b") as f:
        f.seek(1024)
        f.write(b"\0" * 1024)
    with pytest.raises(RootfsError) as e:
        rootfs.check(str(image))
    assert e.value.argv[:2] == ["e2fsck", "-fn"] and e.value.rc != 0


# --- failures leave nothing behind ---------------------------------------------------
@pytest.mark.parametrize("method", ["mkfs", "copy"])
def test_a_template_too_big_fails_cleanly(rootfs, template, tmp_path, tmpdir_env, method):
    with open(template / "usr/share/doc/base/big.bin", "wb") as f:
        f.write(os.urandom(24 * 1024 * 1024))
    image = _image(tmp_path, size_mb=16)
    with pytest.raises(RootfsError) as e:
        rootfs.clone(str(template), str(image), method=method)
    assert e.value.rc not in (0, None)
    assert e.value.argv[0] in ("mkfs.ext4", "cp")
    assert "cloning" in str(e.value)
    assert _no_mounts_under(tmpdir_env)
    assert list(tmpdir_env.iterdir()) == []
    assert e.value.created == []


def test_a_missing_template_fails_before_touching_the_device(rootfs, tmp_path, runner):
    image = _image(tmp_path)
    with pytest.raises(RootfsError, match="does not exist"):
        rootfs.clone(str(tmp_path / "no-such-template"), str(image))
    assert [r.argv[0] for r in runner.history] == ["test"]
    assert _blkid(image, "TYPE") == ""


@pytest.mark.parametrize(
    "call",
    [
        lambda r, t, d: r.clone(t, "/dev/vg0/has space"),
        lambda r, t, d: r.clone(t, "relative/img"),
        lambda r, t, d: r.clone(t + "/../etc", d),
        lambda r, t, d: r.clone(t, d, fs_type="xfs"),
        lambda r, t, d: r.clone(t, d, method="rsync"),
        lambda r, t, d: r.clone("$(reboot)", d),
        lambda r, t, d: r.customize(d, _files(hostname="Bad_Host")),
        lambda r, t, d: r.customize(d, _files(hostname="-rf")),
        lambda r, t, d: r.customize(d, _files(fqdn="virt01.example.edu;reboot")),
        lambda r, t, d: r.customize(d, _files(address="192.168.1.400")),
        lambda r, t, d: r.customize(d, _files(netmask="255.0.255.0")),
        lambda r, t, d: r.customize(d, _files(gateway="gw")),
        lambda r, t, d: r.customize(d, _files(nameservers=("1.1.1.1\nnameserver 6.6.6.6",))),
        lambda r, t, d: r.customize(d, _files(root_device="sda")),
        lambda r, t, d: r.customize(d, _files(fs_type="btrfs")),
        lambda r, t, d: r.customize(d, _files(root_password_hash="plaintext")),
        lambda r, t, d: r.customize(d, _files(authorized_keys="ssh-ed25519 AAAA\x00")),
        lambda r, t, d: r.customize("/dev/vg0/x;y", _files()),
        lambda r, t, d: r.read_file(d, "/etc/../etc/shadow"),
        lambda r, t, d: r.read_file(d, "etc/hosts"),
        lambda r, t, d: r.mkswap("/dev/vg0/a b"),
        lambda r, t, d: r.mkswap(d, label="a-label-longer-than-16"),
        lambda r, t, d: r.mkswap(d, label="-L"),
    ],
)
def test_invalid_input_is_refused_before_any_command_runs(rootfs, runner, template, tmp_path, call):
    image = _image(tmp_path)
    with pytest.raises(InvalidName):
        call(rootfs, str(template), str(image))
    assert runner.history == []


def test_thin_is_not_a_copy_method(rootfs, template, tmp_path, runner):
    with pytest.raises(RootfsError, match="snapshot"):
        rootfs.clone(str(template), str(_image(tmp_path)), method="thin")
    assert runner.history == []
