"""Check domain configs with the REAL Xen 4.17 `xl` parser, on a machine without Xen.

`xl_dry_run(text)` runs `xl -N create CFG` (xl's dry run: parse the config,
apply libxl's defaults, print the resulting domain configuration as JSON) and
returns `(rc, json_or_none, stderr_lines)`.

xl cannot start without Xen ("cannot init xl context"), so it runs with our
LD_PRELOAD shim `xlshim.c` (see its header comment) and XENSTORED_PATH=/dev/null.

Everything is built on first use into a cache directory, `$XENPANEL_XL_CACHE`
(default /var/tmp/xenpanel-xl-cache), and reused afterwards:
- `apt-get download` of xen-utils-4.17, its Xen libraries and libxen-dev
  (for the public headers the shim is compiled against), unpacked with
  `dpkg-deb -x` (nothing is installed on the machine);
- `gcc` builds the shim; its file name carries a hash of the source, so an
  edited shim is rebuilt automatically.
A file lock makes concurrent first runs (several pytest processes) safe.

Run as a script to check a file by hand:
    .venv/bin/python tests/xlcheck/xlcheck.py /etc/xen/web1.cfg
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `labs` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from labs.dom0.errors import CommandFailed  # noqa: E402
from labs.dom0.runner import LocalRunner  # noqa: E402

CACHE_ENV = "XENPANEL_XL_CACHE"
DEFAULT_CACHE = "/var/tmp/xenpanel-xl-cache"

# xl and the libraries it loads (Debian bookworm, all the same Xen build),
# plus libxen-dev for the headers. System libraries xl also needs (libc,
# ncurses, ext2fs, lzma, zstd, zlib, uuid) are part of a base Debian system.
PACKAGES = (
    "xen-utils-4.17",
    "libxenmisc4.17",
    "libxencall1",
    "libxendevicemodel1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenhypfs1",
    "libxenstore4",
    "libxentoolcore1",
    "libxentoollog1",
    "libyajl2",
    "libxen-dev",
)
XL_RELPATH = "usr/lib/xen-4.17/bin/xl"
LIB_RELPATHS = ("usr/lib/x86_64-linux-gnu", "usr/lib/xen-4.17/lib/x86_64-linux-gnu")
INCLUDE_RELPATH = "usr/include"
SHIM_SOURCE = Path(__file__).with_name("xlshim.c")
SHIM_CFLAGS = ("-shared", "-fPIC", "-O2", "-Wall")

# stderr lines xl always prints and that say nothing about the config: the
# missing global /etc/xen/xl.conf on a machine without Xen, and the banner.
_HARMLESS = (
    re.compile(r"Failed to read config file: /etc/xen/xl\.conf(: .*)?"),
    re.compile(r"Parsing config from \S+"),
)


class XlCheckError(AssertionError):
    """The config was refused by xl, or xl complained about it on stderr."""


@dataclass(frozen=True)
class XlTool:
    xl: str
    library_path: str
    shim: str


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def _runner() -> LocalRunner:
    return LocalRunner()


def _download_packages(runner: LocalRunner, debs: Path) -> None:
    """`apt-get download` PACKAGES into `debs`; refresh apt's lists once if they are stale."""
    argv = ["env", "-C", str(debs), "apt-get", "download", "-q"]
    if os.geteuid() == 0:
        # As root apt would hand the download to the _apt user, which cannot
        # write into our cache directory (and says so on stderr).
        argv += ["-o", "APT::Sandbox::User=root"]
    argv += list(PACKAGES)
    try:
        runner.run(argv, timeout=600)
    except CommandFailed:
        if os.geteuid() != 0:
            raise
        # A fresh CI machine may have no package lists, or outdated ones
        # that name versions the mirror no longer has.
        runner.run(["apt-get", "update", "-q"], timeout=600)
        runner.run(argv, timeout=600)


def _unpacked(root: Path) -> bool:
    stamp = root / ".xlcheck-packages"
    return stamp.exists() and stamp.read_text() == "\n".join(PACKAGES)


def _shim_path(cache: Path) -> Path:
    digest = hashlib.sha256(SHIM_SOURCE.read_bytes() + " ".join(SHIM_CFLAGS).encode()).hexdigest()[:16]
    return cache / f"xlshim-{digest}.so"


def _unpack(cache: Path, runner: LocalRunner) -> Path:
    root = cache / "root"
    if _unpacked(root):
        return root
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache))
    try:
        debs = staging / "debs"
        new_root = staging / "root"
        debs.mkdir()
        new_root.mkdir()
        _download_packages(runner, debs)
        for deb in sorted(debs.glob("*.deb")):
            runner.run(["dpkg-deb", "-x", str(deb), str(new_root)], timeout=300)
        if not (new_root / XL_RELPATH).exists():
            raise RuntimeError(f"xlcheck: {XL_RELPATH} missing after unpacking {PACKAGES}")
        (new_root / ".xlcheck-packages").write_text("\n".join(PACKAGES))
        if root.exists():
            shutil.rmtree(root)
        os.replace(new_root, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _build_shim(cache: Path, root: Path, runner: LocalRunner) -> Path:
    shim = _shim_path(cache)
    if shim.exists():
        return shim
    tmp = cache / f".xlshim-{os.getpid()}.so"
    argv = ["gcc", *SHIM_CFLAGS, "-I", str(root / INCLUDE_RELPATH), "-o", str(tmp), str(SHIM_SOURCE), "-ldl"]
    try:
        runner.run(argv, timeout=120)
    except CommandFailed as e:
        if "No such file or directory" in e.stderr and ".h" in e.stderr:
            # gcc installed with --no-install-recommends comes without libc6-dev.
            raise RuntimeError(
                f"xlcheck: gcc lacks the C library headers (apt-get install libc6-dev):\n{e.stderr}"
            ) from None
        raise
    os.chmod(tmp, 0o755)
    os.replace(tmp, shim)
    return shim


@functools.cache
def _ensure(cache: Path) -> XlTool:
    root, shim = cache / "root", _shim_path(cache)
    if not (_unpacked(root) and shim.exists()):
        cache.mkdir(parents=True, exist_ok=True)
        runner = _runner()
        # Read-only is enough for flock, and lets another user share a cache
        # that root built.
        lock = os.open(cache / ".lock", os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            root = _unpack(cache, runner)
            shim = _build_shim(cache, root, runner)
        finally:
            os.close(lock)
    return XlTool(
        xl=str(root / XL_RELPATH),
        library_path=":".join(str(root / p) for p in LIB_RELPATHS),
        shim=str(shim),
    )


def ensure_xl() -> XlTool:
    """The cached xl + shim, fetched and built on first use."""
    return _ensure(cache_dir().resolve())


def xl_env(tool: XlTool, extra: dict[str, str] | None = None) -> dict[str, str]:
    library_path = tool.library_path
    if os.environ.get("LD_LIBRARY_PATH"):
        library_path += ":" + os.environ["LD_LIBRARY_PATH"]
    return {
        "XENSTORED_PATH": "/dev/null",
        "LD_PRELOAD": tool.shim,
        "LD_LIBRARY_PATH": library_path,
        **(extra or {}),
    }


def problem_lines(stderr: str) -> list[str]:
    """stderr lines that say something about the config (the harmless ones removed)."""
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()]
    return [line for line in lines if not any(p.fullmatch(line) for p in _HARMLESS)]


def xl_dry_run(
    config_text: str, *, args: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> tuple[int, dict | None, list[str]]:
    """Run `xl -N create` on `config_text`.

    Returns xl's exit code, the parsed JSON domain config (None when xl printed
    none) and its stderr lines minus the harmless ones, so any line left is a
    warning or an error about the config. `args` are extra `key=value`
    overrides passed after the file, as `xl create` accepts them.
    """
    tool = ensure_xl()
    with tempfile.TemporaryDirectory(prefix="xlcheck-") as tmp:
        path = os.path.join(tmp, "domain.cfg")
        with open(path, "w") as f:
            f.write(config_text)
        result = _runner().run([tool.xl, "-N", "create", path, *args], check=False, timeout=60, env=xl_env(tool, env))
    data = None
    if result.stdout.strip():
        try:
            data = json.loads(result.stdout)
        except ValueError:
            data = None
    return result.rc, data, problem_lines(result.stderr)


def check_config(config_text: str) -> dict:
    """The JSON of a config xl accepts without a single complaint; XlCheckError otherwise."""
    rc, data, problems = xl_dry_run(config_text)
    if rc != 0 or problems or data is None:
        raise XlCheckError(
            f"xl -N create refused or complained (exit {rc}):\n" + "\n".join(problems or ["(no JSON output)"])
        )
    return data


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(f"usage: {argv[0]} CONFIG [key=value ...]", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        rc, data, problems = xl_dry_run(f.read(), args=tuple(argv[2:]))
    for line in problems:
        print(line, file=sys.stderr)
    if data is not None:
        print(json.dumps(data, indent=2))
    return rc if rc else (1 if problems else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
