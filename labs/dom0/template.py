"""Build a guest template directory on a dom0: the seed recipe's /modelo, with today's tools.

    builder = TemplateBuilder(runner)
    spec = TemplateSpec(path="/srv/xenpanel/templates/debian-12", suite="bookworm",
                        mirror="http://deb.debian.org/debian")
    result = builder.build(spec)        # debootstrap (or mmdebstrap), then the seed's touches

What a guest needs to boot and be used is installed (systemd-sysv as init, or
sysvinit-core, the recipe's own era; ifupdown for the /etc/network/interfaces
xenpanel writes, openssh-server, a kernel + initrd that dom0 hands to
`xl create`, unless the clones boot a kernel of the dom0's as in the recipe), plus the seed's touches: one
console getty, on hvc0 (the only console a PV guest has), and the `ls` colour
alias and `TMOUT=1200` at the end of /etc/profile. Anything that must differ per clone (ssh host keys,
machine-id) is removed so each guest makes its own at first boot. The recipe's
other steps have nothing left to do on today's Debian: there is no /lib/tls to
rename, and shadow passwords (its pwconv) are the default.

The tree is built in `<path>.partial` and renamed into place at the end, so
a crash never leaves a half-built template where clones are taken from; a
failed build removes its partial tree and names the cause (mirror
unreachable, disk full) in its error.
Every command is an argv list run through the runner; nothing imports Django.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from . import names
from .base import HostConfig, Volume
from .errors import CommandFailed, Dom0Error, InvalidName
from .runner import Runner

Tool = Literal["debootstrap", "mmdebstrap"]
TOOLS: tuple[str, ...] = ("debootstrap", "mmdebstrap")
Init = Literal["systemd", "sysvinit"]
INITS: tuple[str, ...] = ("systemd", "sysvinit")

# What every template gets: init, the network files xenpanel writes, remote
# login, and a kernel with an initrd for the PV guest (xen-blkfront and
# xen-netfront are in Debian's initramfs with MODULES=most, the default).
BASE_PACKAGES: tuple[str, ...] = (
    "systemd-sysv",
    "udev",
    "kmod",
    "ifupdown",
    "iproute2",
    "netbase",
    "openssh-server",
    "linux-image-amd64",
    "procps",
    "less",
)
# Only a systemd guest needs these; a sysvinit one gets sysvinit-core instead
# and lives on the devtmpfs its initrd mounted (udev's coldplug is slow work
# for a guest whose only devices are a disk, a NIC and a console).
SYSTEMD_PACKAGES = frozenset({"systemd-sysv", "udev"})
SYSVINIT_PACKAGE = "sysvinit-core"
# Not installed when the clones boot a kernel of the dom0's (spec.kernel).
KERNEL_PACKAGE = "linux-image-amd64"
# A bootstrap downloads and unpacks a few hundred packages: minutes, not seconds.
BOOTSTRAP_TIMEOUT = 3600.0
# Never build over (or `rm -rf`) a directory the dom0 itself lives in.
PROTECTED = frozenset(
    "/ /bin /boot /dev /etc /home /lib /lib64 /opt /proc /root /run /sbin /srv /sys /tmp /usr /var".split()
)
TMOUT_LINE = "export TMOUT=1200"
LS_ALIAS_LINE = "alias ls='ls --color=auto'"
HVC0_GETTY = "hvc0:2345:respawn:/sbin/getty 38400 hvc0"
# Less than this free where the tree is built and a minimal bookworm (about
# 250 MiB unpacked, its .debs beside it) cannot finish: refused before it starts.
MIN_FREE_MB = 400
# What debootstrap / mmdebstrap print when the mirror cannot be reached, or the disk fills.
_UNREACHABLE = re.compile(
    r"Failed getting release file|Couldn't download|Connection refused|Could not resolve|Temporary failure"
    r"|Network is unreachable|No route to host|Failed to fetch|unable to resolve",
    re.I,
)
_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded", re.I)
# debootstrap hides wget's own error ("Failed getting release file" when the
# disk is full too): this little left after a failure means the disk filled.
FULL_MB = 16

_SUITE = re.compile(r"[a-z][a-z0-9-]{1,31}")
_ARCH = re.compile(r"[a-z0-9]{2,16}")
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]{1,62}")
# http(s)://host[:port][/path]: no credentials, query strings, spaces or quotes.
_MIRROR = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~+-]+)*/?")


def suite(value: str) -> str:
    if not isinstance(value, str) or not _SUITE.fullmatch(value):
        raise InvalidName(f"invalid suite {value!r}: use a Debian code name such as bookworm")
    return value


def mirror(value: str) -> str:
    if not isinstance(value, str) or not _MIRROR.fullmatch(value):
        raise InvalidName(f"invalid mirror {value!r}: use an http:// or https:// URL without credentials")
    return value


def package(value: str) -> str:
    if not isinstance(value, str) or not _PACKAGE.fullmatch(value):
        raise InvalidName(f"invalid package name {value!r}")
    return value


def template_path(value: str) -> str:
    path = names.abs_path(value).rstrip("/") or "/"
    if path in PROTECTED:
        raise InvalidName(f"invalid template path {value!r}: a system directory, not a template's own")
    return path


@dataclass(frozen=True)
class TemplateSpec:
    """What to build and where; validated by `TemplateBuilder.check()` before any command runs."""

    path: str
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    tool: Tool = "debootstrap"
    arch: str = "amd64"
    extra_packages: tuple[str, ...] = ()
    # Replace an existing template at `path` (the admin's "rebuild"); else refuse.
    replace: bool = False
    root_device: str = "xvda"
    fs_type: str = "ext4"
    init: Init = "systemd"
    # A kernel (and initrd) on the dom0 that the clones boot, as in the recipe;
    # empty: install linux-image-amd64 in the tree and boot that.
    kernel: str = ""
    ramdisk: str = ""


@dataclass
class TemplateResult:
    path: str
    kernel: str
    ramdisk: str
    size_mb: int
    packages: tuple[str, ...] = ()
    log: list[str] = field(default_factory=list)


def packages_for(spec: TemplateSpec) -> tuple[str, ...]:
    base = [
        SYSVINIT_PACKAGE if spec.init == "sysvinit" and name in SYSTEMD_PACKAGES else name
        for name in BASE_PACKAGES
        if not (spec.kernel and name == KERNEL_PACKAGE)
    ]
    seen: dict[str, None] = {}
    for name in (*base, *spec.extra_packages):
        seen[package(name)] = None
    return tuple(seen)


def bootstrap_argv(spec: TemplateSpec, target: str) -> list[str]:
    """The debootstrap / mmdebstrap command line (minbase + what a guest needs)."""
    include = "--include=" + ",".join(packages_for(spec))
    if spec.tool == "debootstrap":
        head = ["debootstrap", "--variant=minbase", f"--arch={spec.arch}", "--components=main", include]
    elif spec.tool == "mmdebstrap":
        head = ["mmdebstrap", "--variant=minbase", f"--architectures={spec.arch}", "--components=main", include]
    else:
        raise InvalidName(f"invalid template tool {spec.tool!r}: use one of {', '.join(TOOLS)}")
    return [*head, suite(spec.suite), target, mirror(spec.mirror)]


def render_fstab(spec: TemplateSpec) -> str:
    # Clones get their own fstab from xenpanel; this one lets the template boot as is.
    if spec.root_device not in ("xvda", "hda") or spec.fs_type not in ("ext4", "ext3"):
        raise InvalidName(f"invalid root device/filesystem {spec.root_device!r}/{spec.fs_type!r}")
    disk = f"/dev/{spec.root_device}"
    return (
        "# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n"
        "proc\t/proc\tproc\tdefaults\t0\t0\n"
        f"{disk}1\t/\t{spec.fs_type}\tdefaults,errors=remount-ro\t0\t1\n"
        f"{disk}2\tnone\tswap\tsw,nofail\t0\t0\n"
    )


# (line, how to find it already there, why): the seed's lines at the end of /etc/profile.
PROFILE_LINES: tuple[tuple[str, str, str], ...] = (
    (LS_ALIAS_LINE, r"^\s*alias\s+ls=['\"]?ls --color=auto['\"]?\s*$", "ls lists in colour"),
    (TMOUT_LINE, r"^\s*(export\s+)?TMOUT=1200\s*$", "log idle shells out after 20 minutes"),
)


def render_profile(profile: str) -> str:
    """/etc/profile with the seed's two lines appended once each: the `ls` colour alias and the idle logout."""
    missing = [(line, why) for line, pattern, why in PROFILE_LINES if not re.search(pattern, profile, re.M)]
    if not missing:
        return profile
    tail = "" if not profile or profile.endswith("\n") else "\n"
    comment = "; ".join(why for _line, why in missing)
    lines = "".join(f"{line}\n" for line, _why in missing)
    return f"{profile}{tail}\n# xenpanel (as the 2007 recipe): {comment}.\n{lines}"


def render_inittab(inittab: str) -> str:
    """sysvinit's inittab with one getty, on hvc0: the tty gettys commented out (the recipe did it to 2-6)."""
    out = []
    for line in inittab.splitlines():
        if line != HVC0_GETTY and re.match(r"^[^#:]+:[0-9]*:respawn:\S*getty\b", line):
            line = "#" + line
        out.append(line)
    if HVC0_GETTY not in out:
        out += ["# xenpanel: a PV guest has one console, hvc0.", HVC0_GETTY]
    return "\n".join(out) + "\n"


# sysvinit's ssh init script sources this file before it checks sshd's
# configuration: make the host keys the template was built without.
SSH_DEFAULTS = (
    "# Written by xenpanel: clones have no ssh host keys (they must not share them); make them at first boot.\n"
    "[ -e /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -A >/dev/null\n"
    "SSHD_OPTS=\n"
)


def static_files(spec: TemplateSpec) -> dict[str, str]:
    """Files written into the template as they are (path inside the guest -> text)."""
    common = {
        "/etc/hostname": "modelo\n",
        "/etc/hosts": "127.0.0.1\tlocalhost\n127.0.1.1\tmodelo\n",
        "/etc/fstab": render_fstab(spec),
        "/etc/network/interfaces": (
            "# xenpanel writes each guest's own address here when it is cloned.\nauto lo\niface lo inet loopback\n"
        ),
        "/etc/apt/sources.list": f"deb {mirror(spec.mirror)} {suite(spec.suite)} main\n",
        # Empty: systemd (or dbus) makes a fresh machine-id at each clone's first boot.
        "/etc/machine-id": "",
    }
    if spec.init == "sysvinit":
        return {**common, "/etc/default/ssh": SSH_DEFAULTS}
    return {
        **common,
        # No getty on tty1..6: a PV guest has one console, hvc0 (the seed
        # commented out ttys 2-6 in inittab for the same reason).
        "/etc/systemd/logind.conf.d/xenpanel-console.conf": "[Login]\nNAutoVTs=0\nReserveVT=0\n",
        # Host keys are removed below so clones do not share them; make the
        # missing ones at sshd's first start.
        "/etc/systemd/system/ssh.service.d/xenpanel-hostkeys.conf": (
            "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n"
        ),
    }


# (link inside the guest, what it points to): the single getty on hvc0.
CONSOLE_LINKS: tuple[tuple[str, str], ...] = (
    ("/etc/systemd/system/getty.target.wants/serial-getty@hvc0.service", "/lib/systemd/system/serial-getty@.service"),
    ("/etc/systemd/system/getty@tty1.service", "/dev/null"),
)


def _kernel_version(listing: str) -> str:
    """The newest vmlinuz-<version> in a `ls` of /boot."""
    versions = sorted(
        (line.strip()[len("vmlinuz-") :] for line in listing.splitlines() if line.strip().startswith("vmlinuz-")),
        key=lambda v: [int(p) if p.isdigit() else p for p in re.split(r"[.-]", v)],
    )
    if not versions:
        raise Dom0Error("the template has no kernel in /boot (is linux-image-amd64 in the package list?)")
    return versions[-1]


class TemplateBuilder:
    """Runs a template build through a runner (local on the dom0's worker, ssh in the testbed)."""

    def __init__(self, runner: Runner, log: Callable[[str], None] | None = None) -> None:
        self.runner = runner
        self._log = log or (lambda line: None)

    @staticmethod
    def check(spec: TemplateSpec) -> TemplateSpec:
        """Validate every value that reaches a command or a file; raises InvalidName."""
        template_path(spec.path)
        suite(spec.suite)
        mirror(spec.mirror)
        if spec.tool not in TOOLS:
            raise InvalidName(f"invalid template tool {spec.tool!r}: use one of {', '.join(TOOLS)}")
        if not _ARCH.fullmatch(spec.arch):
            raise InvalidName(f"invalid architecture {spec.arch!r}")
        if spec.init not in INITS:
            raise InvalidName(f"invalid init {spec.init!r}: use one of {', '.join(INITS)}")
        if spec.ramdisk and not spec.kernel:
            raise InvalidName("a template's ramdisk goes with a kernel: give both, or neither")
        for path in (spec.kernel, spec.ramdisk):
            if path:
                names.abs_path(path)
        packages_for(spec)
        render_fstab(spec)
        return spec

    @staticmethod
    def plan(spec: TemplateSpec) -> list[str]:
        """What `build` will do, one line per command or file, for a dry run."""
        TemplateBuilder.check(spec)
        path = template_path(spec.path)
        partial = f"{path}.partial"
        lines = [" ".join(bootstrap_argv(spec, partial))]
        lines += [f"write {partial}{p}" for p in static_files(spec)]
        lines.append(f"append \"{LS_ALIAS_LINE}\" and '{TMOUT_LINE}' to {partial}/etc/profile")
        if spec.init == "sysvinit":
            lines.append(f"one getty, on hvc0, in {partial}/etc/inittab")
        else:
            lines += [f"ln -sfn {target} {partial}{link}" for link, target in CONSOLE_LINKS]
        lines.append(f"remove {partial}/etc/ssh/ssh_host_*, downloaded .debs and apt's package lists")
        lines.append(f"mv -T {partial} {path}" + (" (replacing the old tree)" if spec.replace else ""))
        return lines

    def _run(self, argv: Sequence[str], timeout: float = 300.0) -> str:
        self._log("$ " + " ".join(argv))
        return self.runner.run(argv, timeout=timeout).stdout

    def _exists(self, path: str) -> bool:
        return self.runner.run(["test", "-e", path], check=False).rc == 0

    def build(self, spec: TemplateSpec) -> TemplateResult:
        self.check(spec)
        path = template_path(spec.path)
        partial, old = f"{path}.partial", f"{path}.old"
        if self._exists(path) and not spec.replace:
            raise Dom0Error(f"{path} already exists: choose another path, or replace it (rebuild)")
        # Left over from a build that crashed: start again from nothing.
        self._run(["rm", "-rf", "--one-file-system", "--", partial])
        parent = path.rsplit("/", 1)[0] or "/"
        self._run(["mkdir", "-p", "--", parent])
        free = self._free_mb(parent)
        if free < MIN_FREE_MB:
            raise Dom0Error(
                f"out of disk space: {parent} has {free} MiB free, a template needs at least {MIN_FREE_MB} MiB"
            )
        try:
            self._bootstrap(spec, partial)
            self.customize(spec, partial)
            kernel, ramdisk = self._kernel(spec, partial, path)
            size_mb = int(self._run(["du", "-sm", "--one-file-system", "--", partial]).split()[0])
        except (Dom0Error, OSError) as e:
            error = self._explain(spec, parent, e)
            # A half-built tree is never left where a later build or a clone could take it.
            self.runner.run(["rm", "-rf", "--one-file-system", "--", partial], check=False)
            raise error from None
        if self._exists(path):
            self._run(["rm", "-rf", "--one-file-system", "--", old])
            self._run(["mv", "-T", "--", path, old])
        self._run(["mv", "-T", "--", partial, path])
        if spec.replace:
            self._run(["rm", "-rf", "--one-file-system", "--", old])
        return TemplateResult(
            path=path,
            kernel=kernel,
            ramdisk=ramdisk,
            size_mb=size_mb,
            packages=packages_for(spec),
        )

    def _free_mb(self, directory: str) -> int:
        out = self._run(["df", "--output=avail", "-B1M", "--", directory]).split()
        if len(out) < 2 or not out[-1].isdigit():
            raise Dom0Error(f"cannot tell the free space in {directory}: df printed {' '.join(out)!r}")
        return int(out[-1])

    def _bootstrap(self, spec: TemplateSpec, partial: str) -> None:
        try:
            self._run(bootstrap_argv(spec, partial), timeout=BOOTSTRAP_TIMEOUT)
        except CommandFailed as e:
            # debootstrap's own log says which package or download failed.
            log = self.runner.run(["tail", "-n", "20", f"{partial}/debootstrap/debootstrap.log"], check=False)
            raise Dom0Error(
                f"{spec.tool} failed (exit {e.rc})", argv=e.argv, rc=e.rc, stderr=(e.stderr + log.stdout).strip()
            ) from None

    def _kernel(self, spec: TemplateSpec, partial: str, path: str) -> tuple[str, str]:
        """(kernel, ramdisk) the clones boot: the dom0's when the spec names one, else the tree's own."""
        if spec.kernel:
            return spec.kernel, spec.ramdisk
        version = _kernel_version(self._run(["ls", "-1", "--", f"{partial}/boot"]))
        return f"{path}/boot/vmlinuz-{version}", f"{path}/boot/initrd.img-{version}"

    def _explain(self, spec: TemplateSpec, parent: str, error: Dom0Error | OSError) -> Dom0Error:
        """The error with its cause named first: the mirror out of reach, or the disk full."""
        if isinstance(error, OSError):
            error = Dom0Error(f"writing the template failed: {error}")
        said = f"{error.message}\n{error.stderr}"
        if _NO_SPACE.search(said) or self._free_mb(parent) < FULL_MB:
            cause = f"out of disk space in {parent}"
        elif _UNREACHABLE.search(said):
            cause = f"cannot reach the mirror {spec.mirror}"
        else:
            return error
        return Dom0Error(f"{error.message}: {cause}", argv=error.argv, rc=error.rc, stderr=error.stderr)

    def customize(self, spec: TemplateSpec, root: str) -> None:
        """The seed's touches and the per-clone cleanups, inside the bootstrapped tree at `root`."""
        for inside, text in static_files(spec).items():
            self._run(["mkdir", "-p", "--", root + inside.rsplit("/", 1)[0]])
            self._log(f"write {root}{inside}")
            self.runner.write_file(root + inside, text.encode(), mode=0o644)
        profile = self.runner.read_file(f"{root}/etc/profile").decode(errors="replace")
        self._log(f"append \"{LS_ALIAS_LINE}\" and '{TMOUT_LINE}' to {root}/etc/profile")
        self.runner.write_file(f"{root}/etc/profile", render_profile(profile).encode(), mode=0o644)
        self._one_console(spec, root)
        # Per-clone identity: sshd and systemd make new ones at first boot.
        self._run(["find", f"{root}/etc/ssh", "-maxdepth", "1", "-name", "ssh_host_*", "-delete"])
        self._run(["rm", "-f", "--", f"{root}/var/lib/dbus/machine-id"])
        # Downloaded packages and package lists only make every clone bigger (apt update fetches the lists).
        self._run(["find", f"{root}/var/cache/apt/archives", "-maxdepth", "1", "-name", "*.deb", "-delete"])
        self._run(["find", f"{root}/var/lib/apt/lists", "-maxdepth", "1", "-type", "f", "-name", "*_*", "-delete"])

    def _one_console(self, spec: TemplateSpec, root: str) -> None:
        """One getty, on hvc0: in inittab for sysvinit, as systemd links otherwise."""
        if spec.init == "sysvinit":
            inittab = self.runner.read_file(f"{root}/etc/inittab").decode(errors="replace")
            self._log(f"one getty, on hvc0, in {root}/etc/inittab")
            self.runner.write_file(f"{root}/etc/inittab", render_inittab(inittab).encode(), mode=0o644)
            return
        for link, target in CONSOLE_LINKS:
            self._run(["mkdir", "-p", "--", root + link.rsplit("/", 1)[0]])
            self._run(["ln", "-sfn", "--", target, root + link])
        # systemd's package enables tty1's getty; masked above, and not wanted either.
        self._run(["rm", "-f", "--", f"{root}/etc/systemd/system/getty.target.wants/getty@tty1.service"])


# ---------------------------------------------------------------- what a template build needs of a host
@runtime_checkable
class TemplateHost(Protocol):
    """The template work of one dom0: the tree (debootstrap) and the golden LV that thin clones snapshot.

    The golden LV is a thin volume (only thin volumes have O(1) snapshots),
    filled with `Dom0Host.clone_template(..., "mkfs")` under a temporary name
    and renamed into place, so clones never snapshot a half-built one.
    """

    def build_template(self, spec: TemplateSpec, log: Callable[[str], None] | None = None) -> TemplateResult: ...
    def create_thin_volume(self, name: str, size_mb: int) -> Volume: ...
    def rename_volume(self, name: str, new_name: str) -> Volume: ...


class RunnerTemplateHost:
    """A real dom0's template work, through the host's runner (`template_ops` makes it)."""

    def __init__(self, runner: Runner, config: HostConfig) -> None:
        from .lvm import Lvm

        self.runner = runner
        self.lvm = Lvm(runner, config.volume_group, config.thin_pool)

    def build_template(self, spec: TemplateSpec, log: Callable[[str], None] | None = None) -> TemplateResult:
        return TemplateBuilder(self.runner, log=log).build(spec)

    def create_thin_volume(self, name: str, size_mb: int) -> Volume:
        return self.lvm.create(name, size_mb, thin=True)

    def rename_volume(self, name: str, new_name: str) -> Volume:
        return self.lvm.rename(name, new_name)


def template_ops(host: object) -> TemplateHost:
    """The template work of a host the jobs got from `labs.dom0.connect`.

    The simulated host does it itself, running nothing; a real one runs the
    commands through its runner.
    """
    from .host import XenHost

    if isinstance(host, XenHost):
        return RunnerTemplateHost(host.runner, host.config)
    if isinstance(host, TemplateHost):
        return host
    raise Dom0Error(f"{type(host).__name__} cannot build templates")
