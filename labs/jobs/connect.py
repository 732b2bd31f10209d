"""The dom0 a job works on, built from its Host row (the one place jobs turn a row into a host)."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

from django.conf import settings

from labs import dom0
from labs.dom0 import locks
from labs.dom0.base import Dom0Host, HostConfig
from labs.models import Host

# Held while a job reads the VG's free space and writes it to the Host row (guest jobs, health checks).
VG_REPORT_LOCK = "vg-report"


def host_config(host: Host) -> HostConfig:
    return HostConfig(
        name=host.name,
        volume_group=host.volume_group,
        toolstack="xm" if host.toolstack == Host.Toolstack.XM else "xl",
        thin_pool=host.thin_pool,
        bridge=host.bridge,
        dom0_reserve_mb=host.dom0_reserve_mb,
        sim_dir=settings.XENPANEL_SIM_DIR,
        sim_delay=settings.XENPANEL_SIM_DELAY,
        sim_total_memory_mb=settings.XENPANEL_SIM_MEMORY_MB,
    )


def connect_host(host: Host) -> Dom0Host:
    return dom0.connect(host_config(host), mode=settings.XENPANEL_DOM0)


def host_lock(host: Host, name: str) -> AbstractContextManager[None]:
    """The lock `name` among the jobs running at once on `host` (labs.dom0.locks); held by one job at a time.

    Simulated hosts share one directory of their own (each named in its locks), as they share their state.
    """
    if settings.XENPANEL_DOM0 == "simulated":
        return locks.held(os.path.join(settings.XENPANEL_SIM_DIR, "locks"), f"{host.name}+{name}")
    return locks.held(locks.LOCK_DIR, f"{host.name}+{name}")
