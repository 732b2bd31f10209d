"""The only code that touches a Xen host: toolstack, LVM, root filesystems, configs.

It imports nothing from Django, so a dom0 can run it with only the standard
library. `connect()` is the entry point jobs use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Dom0Host, HostConfig

if TYPE_CHECKING:
    from .runner import Runner

__all__ = ["Dom0Host", "HostConfig", "connect"]


def connect(config: HostConfig, mode: str = "simulated", runner: Runner | None = None) -> Dom0Host:
    """A host object for `config`: "xen" runs real commands, "simulated" is the fake dom0.

    `runner` overrides the command runner of a real host (for example an
    SshRunner for the testbed); it is ignored for simulated hosts.
    """
    if mode == "xen":
        from .host import XenHost

        return XenHost(config, runner=runner)
    if mode == "simulated":
        from .simulated import SimulatedHost

        return SimulatedHost(config)
    raise ValueError(f"unknown dom0 mode {mode!r}")
