"""Domain config files: render `/etc/xen/<name>.cfg` and store it on the host.

`render_xl` writes the xl.cfg(5) form (Xen >= 4.2): `cmdline=`, keyword disk
specs (`format=raw,vdev=xvda1,access=rw,target=...`, target last as xl-disk-
configuration(5) requires) and `type="pvh"` for PVH guests. `render_xm`
writes the classic form of the 2007 recipe (`root=`, `extra=`,
`phy:/dev/vg/lv,hda1,w`) for hosts that still run xm; xl reads it too.

A config file is parsed by xl's own lexer and its disk and vif entries are
split on commas and `=`, so a stray quote, newline, comma or `=` in any value
would let a name add settings of its own. Every value therefore passes a
strict allow-list (names.py) before rendering, and the renderer checks again
that nothing it quotes can leave its string: refusals are InvalidName.

`ConfigStore` writes the file atomically through the runner and links it into
/etc/xen/auto, the directory the xendomains service starts (and saves and
restores) on dom0 reboot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import names
from .base import DomainSpec
from .errors import CommandFailed, InvalidName
from .runner import Runner

MAX_VCPUS = 128
# Kernel command line words: key=value or bare flags, e.g. `console=hvc0`,
# `console=ttyS0,115200n8`, `ro`, `quiet`. No quotes, `$`, `;`, backslashes,
# spaces inside a word or a leading dash.
_CMDLINE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=/+,@-]*")
_CMDLINE_MAX = 1024
# Characters that may never appear inside a rendered string value, whatever
# validated it: they end the string or the line.
_UNSAFE_IN_STRING = re.compile(r"[\"'\\\n\r\x00]")
# ... and inside one field of a disk or vif spec, where they start a new field.
_UNSAFE_IN_SPEC_FIELD = re.compile(r"[,=\s]")

HEADER = "# Written by xenpanel for domain {name}. Edits here are overwritten.\n"


@dataclass(frozen=True)
class _Checked:
    """A DomainSpec whose every value passed validation."""

    name: str
    kernel: str
    ramdisk: str
    memory_mb: int
    maxmem_mb: int | None
    vcpus: int
    root_dev: str  # xvda1 / hda1
    swap_dev: str  # xvda2 / hda2
    root_target: str
    swap_target: str
    bridge: str
    mac: str
    extra_cmdline: str
    guest_type: str


def _cmdline(value: str) -> str:
    if not isinstance(value, str) or len(value) > _CMDLINE_MAX:
        raise InvalidName(f"invalid kernel command line {value!r}: too long or not text")
    words = value.split(" ") if value else []
    for word in words:
        if not _CMDLINE_WORD.fullmatch(word) or ".." in word:
            raise InvalidName(
                f"invalid kernel command line word {word!r}: use letters, digits and _ . : = / + , @ -,"
                " one space between words"
            )
    return value


def check_spec(spec: DomainSpec) -> _Checked:
    """Validate every value of `spec`; InvalidName on the first bad one."""
    name = names.domain_name(spec.name)
    memory = names.memory_mb(spec.memory_mb)
    maxmem = None
    if spec.maxmem_mb is not None:
        maxmem = names.memory_mb(spec.maxmem_mb)
        if maxmem < memory:
            raise InvalidName(f"invalid maxmem {maxmem}: below memory {memory}")
    if not isinstance(spec.vcpus, int) or isinstance(spec.vcpus, bool) or not 1 <= spec.vcpus <= MAX_VCPUS:
        raise InvalidName(f"invalid vcpus {spec.vcpus!r}: use 1-{MAX_VCPUS}")
    if spec.root_device not in ("xvda", "hda"):
        raise InvalidName(f"invalid root device {spec.root_device!r}: use 'xvda' or 'hda'")
    if spec.guest_type not in ("pv", "pvh"):
        raise InvalidName(f"invalid guest type {spec.guest_type!r}: use 'pv' or 'pvh'")
    return _Checked(
        name=name,
        kernel=names.abs_path(spec.kernel),
        ramdisk=names.abs_path(spec.ramdisk) if spec.ramdisk else "",
        memory_mb=memory,
        maxmem_mb=maxmem,
        vcpus=spec.vcpus,
        root_dev=f"{spec.root_device}1",
        swap_dev=f"{spec.root_device}2",
        root_target=names.abs_path(spec.root_target),
        swap_target=names.abs_path(spec.swap_target) if spec.swap_target else "",
        bridge=names.bridge(spec.bridge),
        mac=names.mac(spec.mac) if spec.mac else "",
        extra_cmdline=_cmdline(spec.extra_cmdline),
        guest_type=spec.guest_type,
    )


def _string(value: str) -> str:
    """A double-quoted config string; refuses anything that could end it."""
    if _UNSAFE_IN_STRING.search(value):
        raise InvalidName(f"refusing to render {value!r}: it contains a quote, backslash or line break")
    return f'"{value}"'


def _spec(fields: list[tuple[str, str]], sep: str = ",") -> str:
    """A single-quoted disk/vif spec from (key, value) pairs; key "" = positional."""
    parts = []
    for key, value in fields:
        if not value or _UNSAFE_IN_SPEC_FIELD.search(value) or _UNSAFE_IN_STRING.search(value):
            raise InvalidName(f"refusing to render {value!r} into a device spec")
        parts.append(f"{key}={value}" if key else value)
    return "'" + sep.join(parts) + "'"


def _list(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _cmdline_words(c: _Checked) -> tuple[str, str]:
    """(root part, rest) of the guest kernel's command line."""
    rest = "console=hvc0" + (f" {c.extra_cmdline}" if c.extra_cmdline else "")
    return f"root=/dev/{c.root_dev} ro", rest


# A guest that powers off or crashes is gone (the panel shows it stopped and
# can start it again); a reboot from inside the guest restarts it.
_ACTIONS = [
    'on_poweroff = "destroy"',
    'on_reboot = "restart"',
    'on_crash = "destroy"',
]


def render_xl(spec: DomainSpec) -> str:
    """The xl.cfg(5) text for a PV (or PVH) guest booted from a dom0 kernel."""
    c = check_spec(spec)
    root, rest = _cmdline_words(c)
    lines = [f"name = {_string(c.name)}"]
    if c.guest_type == "pvh":
        # PV is the default; leaving `type` out keeps the file readable by
        # xl before 4.10, which knew only `builder=`.
        lines.append('type = "pvh"')
    lines.append(f"kernel = {_string(c.kernel)}")
    if c.ramdisk:
        lines.append(f"ramdisk = {_string(c.ramdisk)}")
    lines += [
        f"cmdline = {_string(f'{root} {rest}')}",
        f"memory = {c.memory_mb}",
    ]
    if c.maxmem_mb is not None:
        lines.append(f"maxmem = {c.maxmem_mb}")
    lines.append(f"vcpus = {c.vcpus}")
    disks = [
        _spec([("format", "raw"), ("vdev", c.root_dev), ("access", "rw"), ("target", c.root_target)]),
    ]
    if c.swap_target:
        disks.append(_spec([("format", "raw"), ("vdev", c.swap_dev), ("access", "rw"), ("target", c.swap_target)]))
    lines.append(f"disk = {_list(disks)}")
    vif = ([("mac", c.mac)] if c.mac else []) + [("bridge", c.bridge)]
    lines.append(f"vif = {_list([_spec(vif)])}")
    lines += _ACTIONS
    return HEADER.format(name=c.name) + "\n".join(lines) + "\n"


def render_xm(spec: DomainSpec) -> str:
    """The classic xm form (Xen 3.x, the 2007 recipe): PV only, `phy:` disks, `root=` + `extra=`."""
    c = check_spec(spec)
    if c.guest_type != "pv":
        raise InvalidName(f"invalid guest type {c.guest_type!r} for xm: xm only starts PV guests")
    root, rest = _cmdline_words(c)
    lines = [
        f"name = {_string(c.name)}",
        f"kernel = {_string(c.kernel)}",
    ]
    if c.ramdisk:
        lines.append(f"ramdisk = {_string(c.ramdisk)}")
    lines.append(f"memory = {c.memory_mb}")
    if c.maxmem_mb is not None:
        lines.append(f"maxmem = {c.maxmem_mb}")
    lines += [
        f"vcpus = {c.vcpus}",
        f"root = {_string(root.removeprefix('root='))}",
        f"extra = {_string(rest)}",
    ]
    disks = [_spec([("", f"phy:{c.root_target}"), ("", c.root_dev), ("", "w")])]
    if c.swap_target:
        disks.append(_spec([("", f"phy:{c.swap_target}"), ("", c.swap_dev), ("", "w")]))
    lines.append(f"disk = {_list(disks)}")
    vif = ([("mac", c.mac)] if c.mac else []) + [("bridge", c.bridge)]
    lines.append(f"vif = {_list([_spec(vif, sep=', ')])}")
    lines += _ACTIONS
    return HEADER.format(name=c.name) + "\n".join(lines) + "\n"


def render(spec: DomainSpec, toolstack: str = "xl") -> str:
    if toolstack == "xl":
        return render_xl(spec)
    if toolstack == "xm":
        return render_xm(spec)
    raise ValueError(f"unknown toolstack {toolstack!r}")


class ConfigStore:
    """Domain config files in `config_dir`, with autostart links in `auto_dir`."""

    def __init__(self, runner: Runner, config_dir: str = "/etc/xen", auto_dir: str = "/etc/xen/auto") -> None:
        self.runner = runner
        self.config_dir = names.abs_path(config_dir).rstrip("/") or "/"
        self.auto_dir = names.abs_path(auto_dir).rstrip("/") or "/"

    def path(self, name: str) -> str:
        return f"{self.config_dir}/{names.domain_name(name)}.cfg"

    def auto_path(self, name: str) -> str:
        return f"{self.auto_dir}/{names.domain_name(name)}.cfg"

    def write(self, name: str, text: str, autostart: bool = True) -> str:
        """Write the config atomically; link (or unlink) it in the autostart directory. Returns its path."""
        path, link = self.path(name), self.auto_path(name)
        if "\x00" in text:
            raise InvalidName(f"refusing to write a config for {name!r}: NUL byte in the text")
        self.runner.write_file(path, text.encode(), 0o644)
        if autostart:
            self.runner.run(["mkdir", "-p", "--", self.auto_dir])
            # -n: replace an existing link itself, never follow it into a directory.
            self.runner.run(["ln", "-sfn", "--", path, link])
        else:
            self.runner.run(["rm", "-f", "--", link])
        return path

    def _exists(self, flag: str, path: str) -> bool:
        return self.runner.run(["test", flag, path], check=False).rc == 0

    def exists(self, name: str) -> bool:
        return self._exists("-e", self.path(name))

    def autostart(self, name: str) -> bool:
        """True when the autostart link exists (even if its target is gone)."""
        return self._exists("-L", self.auto_path(name))

    def remove(self, name: str) -> bool:
        """Remove the config and its autostart link; False when neither existed."""
        path, link = self.path(name), self.auto_path(name)
        existed = self._exists("-e", path) or self._exists("-L", link)
        if existed:
            self.runner.run(["rm", "-f", "--", path, link])
        return existed

    def read(self, name: str) -> str | None:
        """The config's text, or None when there is no config for `name`."""
        path = self.path(name)
        try:
            return self.runner.read_file(path).decode()
        except FileNotFoundError:
            return None
        except CommandFailed:
            # Over ssh `cat` fails the same way for a missing file; tell the
            # two apart instead of hiding a real error.
            if not self._exists("-e", path):
                return None
            raise
