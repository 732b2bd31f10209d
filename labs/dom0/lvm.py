"""LVM volumes for guest disks: one logical volume per disk inside the host's VG.

Every command is an argv list built from names that passed labs.dom0.names,
run through the host's runner with `-y` (LVM must never wait for an answer:
stdin is /dev/null, and a prompt answered "n" from /dev/null fails with rc 5).
Reports are read as JSON in bytes (`--units b --nosuffix`), where every value
is a string. LVM's error messages are mapped to the errors.py classes, keeping
argv, rc and stderr for the job log.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Mapping

from . import names
from .base import ThinPoolUsage, Volume, VolumeGroupInfo
from .errors import (
    CommandFailed,
    InsufficientSpace,
    InvalidName,
    LvmError,
    VolumeExists,
    VolumeGroupNotFound,
    VolumeNotFound,
)
from .runner import DEFAULT_TIMEOUT, Runner

_REPORT = ["--reportformat", "json", "--units", "b", "--nosuffix"]
# A full copy of a guest's disk (plain-LVM save points): minutes for a large one on a busy host.
COPY_TIMEOUT = 3600.0

# (pattern, class), first match wins. LVM stops at its first complaint, so
# only one of these appears per failure: with a taken name AND too little
# space, LVM 2.03.16 (Debian 12) reports the name (measured; older notes
# said space, so the test pins what this version does).
_ERRORS: list[tuple[re.Pattern[str], type[LvmError]]] = [
    (re.compile(r"insufficient free space", re.I), InsufficientSpace),
    (re.compile(r"already exists in volume group", re.I), VolumeExists),
    (re.compile(r'Volume group "[^"]*" not found', re.I), VolumeGroupNotFound),
    (re.compile(r"Failed to find logical volume", re.I), VolumeNotFound),
    # lvrename's own words for a missing volume.
    (re.compile(r'Existing logical volume "[^"]*" not found', re.I), VolumeNotFound),
]


def guest_volume_names(domain: str, prefix: str = "vm-") -> tuple[str, str]:
    """The seed recipe's LV names for a guest: (`vm-<domain>.raiz`, `vm-<domain>.swap`)."""
    names.domain_name(domain)
    root, swap = f"{prefix}{domain}.raiz", f"{prefix}{domain}.swap"
    # The prefix is configuration, not user text, but it still ends up in argv.
    return names.volume_name(root), names.volume_name(swap)


def _message_line(stderr: str) -> str:
    """The line of LVM's stderr worth showing: not its warnings, not the help hint."""
    for line in stderr.splitlines():
        line = line.strip()
        if not line or line.startswith("WARNING:") or line.startswith("Rounding up"):
            continue
        if line.startswith("Run `") or "File descriptor" in line:
            continue
        return line
    return "no error output"


def _int(value: str) -> int:
    # `--nosuffix --units b` gives whole bytes as strings, e.g. "12582912".
    return int(str(value).strip() or 0)


def _percent(value: object) -> float | None:
    """A report's percent column ("42.17"), or None when LVM left it out or empty.

    LVM prints "" for a column that does not apply (and for an inactive pool);
    a capture that did not ask for the column has no key at all.
    """
    text = str(value if value is not None else "").strip()
    return float(text) if text else None


class Lvm:
    """The logical volumes of one volume group on one host.

    `thin_pool` names the VG's thin pool (empty: the host has none, so there
    are no thin snapshots). `prefix_env` is added to every LVM command's
    environment, e.g. {"LVM_SYSTEM_DIR": ...} for a private lvm.conf.
    """

    def __init__(self, runner: Runner, vg: str, thin_pool: str = "", prefix_env: Mapping[str, str] | None = None):
        self.runner = runner
        self.vg = names.volume_group(vg)
        self.thin_pool = names.volume_name(thin_pool) if thin_pool else ""
        self.env = dict(prefix_env or {})

    # --- commands ------------------------------------------------------------
    def _run(self, argv: list[str], timeout: float = DEFAULT_TIMEOUT) -> str:
        try:
            return self.runner.run(argv, env=self.env, timeout=timeout).stdout
        except CommandFailed as e:
            raise self._mapped(e) from None

    def _mapped(self, e: CommandFailed) -> LvmError:
        line = _message_line(e.stderr)
        cls: type[LvmError] = LvmError
        for pattern, candidate in _ERRORS:
            if pattern.search(e.stderr):
                cls = candidate
                break
        return cls(f"{e.argv[0] if e.argv else 'lvm'}: {line}", argv=e.argv, rc=e.rc, stderr=e.stderr)

    def _report(self, argv: list[str], key: str) -> list[dict[str, str]]:
        """The rows under `key` of an LVM JSON report (every value a string)."""
        data = json.loads(self._run(argv))
        rows: list[dict[str, str]] = []
        for block in data.get("report", []):
            rows.extend(block.get(key, []))
        return rows

    def _name(self, name: str) -> str:
        return names.volume_name(name)

    # --- queries -------------------------------------------------------------
    def path(self, name: str) -> str:
        return f"/dev/{self.vg}/{self._name(name)}"

    def vg_info(self) -> VolumeGroupInfo:
        rows = self._report(
            ["vgs", *_REPORT, "-o", "vg_name,vg_size,vg_free,vg_extent_size", self.vg],
            "vg",
        )
        if not rows:
            raise VolumeGroupNotFound(f'Volume group "{self.vg}" not found', argv=["vgs", self.vg])
        row = rows[0]
        return VolumeGroupInfo(
            name=row["vg_name"],
            size_bytes=_int(row["vg_size"]),
            free_bytes=_int(row["vg_free"]),
            extent_size_bytes=_int(row["vg_extent_size"]),
        )

    def list(self) -> builtins.list[Volume]:
        """The VG's usable volumes, sorted by name.

        Thin pools are left out (attr 't'): they hold volumes but are not
        disks a guest can use. Hidden internal LVs never show without `-a`.
        """
        rows = self._report(["lvs", *_REPORT, "-o", "lv_name,lv_size,lv_attr", self.vg], "lv")
        volumes = [
            Volume(name=r["lv_name"], size_bytes=_int(r["lv_size"]), path=f"/dev/{self.vg}/{r['lv_name']}")
            for r in rows
            if not r.get("lv_attr", "").startswith("t")
        ]
        return sorted(volumes, key=lambda v: v.name)

    def get(self, name: str) -> Volume:
        """One volume; VolumeNotFound when absent."""
        name = self._name(name)
        rows = self._report(["lvs", *_REPORT, "-o", "lv_name,lv_size", f"{self.vg}/{name}"], "lv")
        if not rows:
            raise VolumeNotFound(f'Failed to find logical volume "{self.vg}/{name}"', argv=["lvs", name])
        return Volume(name=name, size_bytes=_int(rows[0]["lv_size"]), path=self.path(name))

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except VolumeNotFound:
            return False
        return True

    def thin_pool_usage(self, pool: str = "") -> ThinPoolUsage:
        """How full the thin pool is (default: the host's); VolumeNotFound when it does not exist.

        Nothing else watches the pool: once its data (or metadata) reaches
        100 % every thin volume in it fails writes.
        """
        pool = self._name(pool) if pool else self._pool()
        columns = "lv_name,lv_size,lv_attr,data_percent,metadata_percent"
        rows = self._report(["lvs", *_REPORT, "-o", columns, f"{self.vg}/{pool}"], "lv")
        if not rows:
            raise VolumeNotFound(f'Failed to find logical volume "{self.vg}/{pool}"', argv=["lvs", pool])
        row = rows[0]
        argv = ["lvs", f"{self.vg}/{pool}"]
        if not row.get("lv_attr", "").startswith("t"):
            raise LvmError(f"{self.vg}/{pool} is not a thin pool (attr {row.get('lv_attr', '')!r})", argv=argv)
        data = _percent(row.get("data_percent"))
        if data is None:
            # An inactive pool reports no usage: unknown is not "empty".
            raise LvmError(f"thin pool {self.vg}/{pool} reports no data usage (is it active?)", argv=argv)
        return ThinPoolUsage(
            name=row["lv_name"],
            size_bytes=_int(row["lv_size"]),
            data_percent=data,
            metadata_percent=_percent(row.get("metadata_percent")),
        )

    # --- changes -------------------------------------------------------------
    def create(self, name: str, size_mb: int, *, thin: bool = False) -> Volume:
        """A new volume of at least `size_mb` MiB (LVM rounds up to whole extents).

        `thin=True` makes a thin volume in the thin pool: that is how a golden
        template LV is made, since only thin volumes have O(1) snapshots.
        """
        name = self._name(name)
        size = _size_mb(size_mb)
        if thin:
            argv = ["lvcreate", "-y", "-V", f"{size}m", "-T", f"{self.vg}/{self._pool()}", "-n", name]
        else:
            argv = ["lvcreate", "-y", "-L", f"{size}m", "-n", name, self.vg]
        self._run(argv)
        return self.get(name)

    def create_thin_pool(self, size_mb: int) -> Volume:
        """Create the thin pool named at construction (host setup and the testbed)."""
        pool = self._pool()
        self._run(["lvcreate", "-y", "--type", "thin-pool", "-L", f"{_size_mb(size_mb)}m", "-n", pool, self.vg])
        return self.get(pool)

    def snapshot(self, origin: str, name: str) -> Volume:
        """A thin snapshot of the thin volume `origin`: O(1), whatever the template's size.

        Thin snapshots carry LVM's "activation skip" flag by default, which
        would leave the guest's disk inactive now (no /dev node for xl) and
        after every dom0 reboot. `-kn` clears the flag for good and `-ay -K`
        activates it now even if a site lvm.conf sets the flag anyway.
        """
        origin, name = self._name(origin), self._name(name)
        self._pool()
        self._run(["lvcreate", "-y", "-s", "-kn", "-ay", "-K", "-n", name, f"{self.vg}/{origin}"])
        return self.get(name)

    def copy(self, origin: str, name: str) -> Volume:
        """A new plain volume `name` of `origin`'s size holding a block-for-block copy of it (no thin pool).

        O(size): dd reads and writes every block. Direct I/O keeps a copy of a
        large disk from evicting dom0's page cache; `conv=fsync` makes the copy
        durable before this returns. A failed copy leaves `name` behind, which
        the caller removes (a half copy must not be trusted).
        """
        origin, name = self._name(origin), self._name(name)
        source = self.get(origin)
        mib = 1024 * 1024
        self.create(name, -(-source.size_bytes // mib))
        dd = ["dd", f"if={source.path}", f"of={self.path(name)}", "bs=4M", "iflag=direct", "oflag=direct"]
        self._run([*dd, "conv=fsync", "status=none"], timeout=COPY_TIMEOUT)
        return self.get(name)

    def rename(self, name: str, new_name: str) -> Volume:
        """Give a volume a new name: a golden LV built under a temporary one goes into place so."""
        name, new_name = self._name(name), self._name(new_name)
        self._run(["lvrename", self.vg, name, new_name])
        return self.get(new_name)

    def extend(self, name: str, size_mb: int) -> Volume:
        """Grow a volume to at least `size_mb` MiB; a no-op when it is already that big.

        A thin clone starts at the golden volume's size; the guest's root may
        be bigger (the filesystem is grown afterwards with resize2fs).
        """
        name, size = self._name(name), _size_mb(size_mb)
        current = self.get(name)
        if current.size_bytes >= size * 1024 * 1024:
            return current
        self._run(["lvextend", "-y", "-L", f"{size}m", f"{self.vg}/{name}"])
        return self.get(name)

    def remove(self, name: str) -> bool:
        """Remove a volume; False when it was not there (so cleanup can repeat)."""
        name = self._name(name)
        try:
            self._run(["lvremove", "-y", f"{self.vg}/{name}"])
        except VolumeNotFound:
            return False
        return True

    def _pool(self) -> str:
        if not self.thin_pool:
            raise LvmError(f'volume group "{self.vg}" has no thin pool configured for this host')
        return self.thin_pool


def _size_mb(size_mb: int) -> int:
    if not isinstance(size_mb, int) or isinstance(size_mb, bool) or size_mb < 1:
        raise InvalidName(f"invalid volume size {size_mb!r}: use a whole number of MiB from 1")
    return size_mb
