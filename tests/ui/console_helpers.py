"""Helpers for the console tests: a guest running on the simulated dom0, built as provisioning builds it; a click."""

from __future__ import annotations

import time

from selenium.common.exceptions import ElementClickInterceptedException

from labs.dom0.base import DomainSpec, GuestFiles
from labs.dom0.simulated import SimulatedHost
from labs.jobs.connect import connect_host
from labs.models import Guest, Host


def run_on_simulated_host(host: Host, guest: Guest) -> SimulatedHost:
    """The guest's volumes, files and config on the simulated host (settings.XENPANEL_SIM_DIR), started."""
    sim = connect_host(host)
    assert isinstance(sim, SimulatedHost)
    root = sim.create_volume(guest.root_lv, 256)
    sim.clone_template("/modelo", root.path, "ext4", "mkfs")
    sim.customize_rootfs(
        root.path,
        GuestFiles(
            hostname=guest.hostname,
            fqdn=f"{guest.hostname}.{guest.pool.dns_domain}",
            address=guest.ip,
            netmask="255.255.255.0",
            gateway=guest.pool.gateway,
            broadcast="10.10.0.255",
        ),
    )
    sim.write_config(
        DomainSpec(name=guest.domain_name, kernel="/boot/vmlinuz", memory_mb=256, root_target=root.path, mac=guest.mac)
    )
    sim.create(guest.domain_name)
    Guest.objects.filter(pk=guest.pk).update(status=Guest.Status.READY, observed_state="b")
    return sim


def click(browser, element) -> None:
    """tests/ui/test_browser.py's click, tried again while the page still moves (htmx loads cards after it)."""
    from tests.ui import test_browser

    for attempt in range(40):
        try:
            test_browser.click(browser, element)
            return
        except ElementClickInterceptedException:
            if attempt == 39:
                raise
            time.sleep(0.25)
