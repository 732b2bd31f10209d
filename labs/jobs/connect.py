"""The dom0 a job works on, built from its Host row (the one place jobs turn a row into a host)."""

from __future__ import annotations

from django.conf import settings

from labs import dom0
from labs.dom0.base import Dom0Host, HostConfig
from labs.models import Host


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
    )


def connect_host(host: Host) -> Dom0Host:
    return dom0.connect(host_config(host), mode=settings.XENPANEL_DOM0)
