"""How a simulated command fails: the real tool's stderr, judged the way the real modules judge it.

Toolstack errors come from `toolstack.classify_error` itself, fed the stderr
xl would print; LVM and root filesystem errors take the "<what>: <line>"
forms of lvm.py and rootfs.py. So a test sees the class and the message a
real host would give.
"""

from __future__ import annotations

import os

from ..errors import LvmError, RootfsError

# What xl prints (through libxc) when a new domain's memory cannot be
# allocated on a host whose dom0 memory is fixed (autoballoon off, as
# recommended). Line numbers are those of Xen 4.16/4.17.
XC_OUT_OF_MEMORY = (
    "xc: error: panic: xg_dom_boot.c:121: xc_dom_boot_mem_init: can't allocate low memory for domain: Out of memory"
)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def out_of_memory_stderr(domid: int) -> str:
    return (
        f"{XC_OUT_OF_MEMORY}\n"
        "libxl: error: libxl_dom.c:586:libxl__build_dom: xc_dom_boot_mem_init failed: Cannot allocate memory\n"
        f"libxl: error: libxl_create.c:1573:domcreate_rebuild_done: Domain {domid}:cannot (re-)build domain: -3\n"
        f"libxl: error: libxl_domain.c:1182:libxl__destroy_domid: Domain {domid}:Non-existant domain\n"
    )


def lvm_error(cls: type[LvmError], argv: list[str], line: str, rc: int = 5) -> LvmError:
    # lvm.Lvm reports "<command>: <LVM's message line>".
    return cls(f"{argv[0]}: {line}", argv=argv, rc=rc, stderr=f"  {line}\n")


def rootfs_error(what: str, argv: list[str], line: str, rc: int = 1, *, e2tool: bool = False) -> RootfsError:
    # rootfs.Rootfs reports "<what>: <runner message>"; e2tools exit 0 and
    # are judged by their stderr, so their message is the stderr line.
    detail = line if e2tool else f"{os.path.basename(argv[0])} failed (exit {rc}): {line}"
    return RootfsError(f"{what}: {detail}", argv=argv, rc=0 if e2tool else rc, stderr=line + "\n")
