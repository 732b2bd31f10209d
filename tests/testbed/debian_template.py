"""A real Debian template for the testbed: debootstrap on this machine, cached, pushed into dom0's template store.

dom0 inside QEMU has no internet; this machine reaches the Debian mirror. So
`labs.dom0.template.TemplateBuilder` (the code the template-build job runs on a
dom0) runs here, through a LocalRunner, into a cache directory keyed on its
inputs: the builder's source, the spec, and the versions apt on this machine
would install of the packages that matter. An unchanged key reuses the tree
(seconds); a changed one builds again (about a minute) and drops the old ones.

The guests boot it with Debian's own init, sysvinit-core rather than systemd:
a systemd guest takes minutes to boot under TCG where sysvinit takes
tens of seconds (deploy/dom0-setup.md's templates use systemd; the
`debian_systemd` marker runs the same guest on systemd). They boot the dom0's
kernel and initrd (the testbed's `/boot/vmlinux-domu`, `initrd-domu.img`),
as the 2007 recipe's guests did, so the tree holds no 400 MiB of kernel modules
that each clone would copy under emulation.

`push(testbed, tree)` copies the tree where the dom0 guide puts templates,
`/srv/xenpanel/templates/<name>`, the way deploy/dom0-setup.md says a template
built on another machine arrives: unpacked into `<name>.partial`, renamed into
place when complete.

    python -m tests.testbed.debian_template [sysvinit|systemd]   # build (or find) it; prints the tree
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from labs.dom0 import template as recipe
from labs.dom0.runner import LocalRunner
from labs.dom0.template import TemplateBuilder, TemplateResult, TemplateSpec
from tests.testbed.testbed import Testbed, testbed_dir

NAME = "debian-12"
STORE = "/srv/xenpanel/templates"
# The testbed's guest kernel and initrd (build.sh): the clones boot these.
DOM0_KERNEL = "/boot/vmlinux-domu"
DOM0_RAMDISK = "/boot/initrd-domu.img"
# The packages whose version changes what the guest does at boot.
KEY_PACKAGES = ("sysvinit-core", "systemd-sysv", "ifupdown", "openssh-server", "base-files", "initscripts")


@dataclass(frozen=True)
class Built:
    tree: Path  # on this machine
    result: TemplateResult
    seconds: float  # 0 when the cache had it
    key: str


def mirror() -> str:
    """The mirror apt already uses on this machine (as build.sh), else deb.debian.org."""
    if os.environ.get("XENPANEL_TEMPLATE_MIRROR"):
        return os.environ["XENPANEL_TEMPLATE_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        found = re.search(r"https?://\S+/debian/?(?=\s|$)", text)
        if found:
            return found.group(0).rstrip("/")
    return "http://deb.debian.org/debian"


def spec(path: str, init: str = "sysvinit") -> TemplateSpec:
    return TemplateSpec(
        path=path,
        suite="bookworm",
        mirror=mirror(),
        init=init,  # type: ignore[arg-type]
        kernel=DOM0_KERNEL,
        ramdisk=DOM0_RAMDISK,
    )


def _candidates() -> str:
    out = subprocess.run(["apt-cache", "policy", *KEY_PACKAGES], capture_output=True, text=True).stdout
    return " ".join(re.findall(r"Candidate: (\S+)", out))


def cache_key(init: str) -> str:
    """What the tree depends on: the builder's code and the recipe it writes, the spec, apt's versions."""
    example = spec("/x", init)
    inputs = {
        "builder": inspect.getsource(TemplateBuilder),
        "packages": recipe.packages_for(example),
        "files": recipe.static_files(example),
        "profile": recipe.render_profile(""),
        "inittab": recipe.render_inittab("1:2345:respawn:/sbin/getty 38400 tty1\n"),
        "spec": {k: v for k, v in asdict(example).items() if k != "path"},
        "apt": _candidates(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def build(init: str = "sysvinit", out_dir: Path | None = None, log=print) -> Built:
    """The cached tree for `init`, built with the template job's own builder when missing."""
    base = (out_dir or testbed_dir()) / "templates"
    base.mkdir(parents=True, exist_ok=True)
    key = cache_key(init)
    home = base / f"{NAME}-{init}-{key}"
    done = home / "result.json"
    with open(base / ".lock", "w") as lock:
        # One build at a time (parallel sessions share the cache); a waiter then finds it done.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return Built(home / NAME, TemplateResult(**json.loads(done.read_text())), 0.0, key)
        for old in base.glob(f"{NAME}-{init}-*"):
            shutil.rmtree(old, ignore_errors=True)
        t = time.monotonic()
        result = TemplateBuilder(LocalRunner(), log=log).build(spec(str(home / NAME), init))
        # Written last: a tree without it is a build that did not finish.
        done.write_text(json.dumps(asdict(result)))
        return Built(home / NAME, result, time.monotonic() - t, key)


def push(testbed: Testbed, tree: Path, name: str = NAME) -> float:
    """Copy `tree` into dom0's template store as /srv/xenpanel/templates/<name>; returns the seconds it took."""
    t = time.monotonic()
    dest = f"{STORE}/{name}"
    partial = f"{dest}.partial"
    # --numeric-owner: the guest's own uids and gids, not this machine's names for them.
    packed = subprocess.run(
        ["tar", "-C", str(tree), "--numeric-owner", "-cf", "-", "."], capture_output=True, check=True
    ).stdout
    testbed.ssh(["sh", "-c", f"rm -rf {partial} {dest} && mkdir -p {partial}"])
    testbed.ssh(["tar", "-x", "--numeric-owner", "-p", "-C", partial, "-f", "-"], input=packed, timeout=900)
    testbed.ssh(["mv", "-T", partial, dest])
    return time.monotonic() - t


if __name__ == "__main__":
    built = build(sys.argv[1] if len(sys.argv) > 1 else "sysvinit")
    print(f"{built.tree} ({built.result.size_mb} MiB, key {built.key}, built in {built.seconds:.0f} s)")
