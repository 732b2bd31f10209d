"""Class hours on a real Xen 4.17 host (the QEMU testbed): `xl save` after class and `xl restore` before the
next keep a process running in the guest, and the panel's states follow ("saved", then "running").

The panel's own class hours, tick, jobs and sync run here, in the test process, with a real RQ worker (in
process) whose dom0 is the testbed's, reached over ssh (as tests/e2e/test_save_points_on_xen.py does).
The tick runs on a fake clock: 16:05 is after class, 13:51 the next day is before it. In the guest a loop
writes a counter to /root/counter every second (tests/testbed/guest_shell.py); after the restore it has
gone on from where it was, not started again from 1.
"""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock

import django_rq
import pytest
from django.utils import timezone

from labs.class_hours_models import ClassSchedule
from labs.dom0.base import HostConfig, save_path
from labs.dom0.host import XenHost
from labs.jobs import connect
from labs.models import Guest, Host, IpPool, LabTemplate, Task
from labs.services import create_lab_batch, guest_action
from labs.services.upkeep import tick
from labs.templatetags.xenpanel import state_word
from tests.pipeline.helpers import roster, work
from tests.testbed import guest_shell
from tests.testbed.fixtures import testbed, testbed_timings  # noqa: F401
from tests.testbed.testbed import Testbed
from tests.testbed.timing import Phases

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

VG = "vg0"
TEMPLATE_DIR = "/srv/xenpanel/templates/tiny"
BOOTED = "XENPANEL-BOOTED"
BOOT_TIMEOUT = 900  # under TCG on a shared 2-core machine
NETWORK = "10.78.0.0/24"
MEMORY_MB = 256
AFTER_CLASS = datetime(2026, 12, 1, 16, 5, tzinfo=UTC)
BEFORE_CLASS = datetime(2026, 12, 2, 13, 51, tzinfo=UTC)


@pytest.fixture
def xen_lab(testbed: Testbed, settings, monkeypatch, ivy, alice):  # noqa: F811
    """alice's 256 MiB VM from the tiny template on the testbed, booted; a lab with class hours every day."""
    settings.XENPANEL_DOM0 = "xen"
    settings.TIME_ZONE = "UTC"
    runner = testbed.runner()
    monkeypatch.setattr(connect, "connect_host", lambda host: XenHost(connect.host_config(host), runner=runner))
    django_rq.get_connection("default").flushdb()
    info = XenHost(HostConfig(name="tb", volume_group=VG), runner=runner).info()
    host = Host.objects.create(
        name="tb",
        queue_name="tb",
        volume_group=VG,
        total_memory_mb=info.total_memory_mb,
        free_memory_mb=info.free_memory_mb,
        dom0_reserve_mb=max(info.total_memory_mb - info.free_memory_mb, 196),
    )
    template = LabTemplate.objects.create(
        name="tiny",
        rootfs_path=TEMPLATE_DIR,
        kernel="/boot/vmlinux-domu",
        ramdisk="/boot/initrd-domu.img",
        root_size_mb=64,
        swap_size_mb=0,
        default_memory_mb=128,
        max_memory_mb=MEMORY_MB,
    )
    net = ipaddress.ip_network(NETWORK)
    pool = IpPool.objects.create(
        name="ch-net", network=NETWORK, gateway=str(net[1]), first_ip=str(net[10]), last_ip=str(net[250])
    )
    # xenconsoled appends to a name's log: a guest of the same name in an earlier test left its lines there.
    booted_before = testbed.console_log("ch-alice").count(BOOTED)
    create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=MEMORY_MB, slug="ch", hosts=[host])
    work("tb")
    guest = Guest.objects.select_related("lab", "host").get(student=alice)
    try:
        assert guest.status == "ready", Task.objects.filter(guest=guest).first().log
        testbed.wait_console(guest.domain_name, BOOTED, count=booted_before + 1, timeout=BOOT_TIMEOUT)
        ClassSchedule.objects.create(lab=guest.lab, days="0123456", start=clock(14), end=clock(16))
        yield guest
    finally:
        if Guest.objects.filter(pk=guest.pk, busy_with="").exists():
            guest_action(ivy, Guest.objects.get(pk=guest.pk), "teardown")
            work("tb")
        runner.run(["rm", "-f", save_path(guest.domain_name)], check=False)


def _word(guest: Guest) -> str:
    return state_word(Guest.objects.select_related("host", "lab").get(pk=guest.pk))


def _task(guest: Guest, kind: str) -> Task:
    task = Task.objects.filter(guest=guest, kind=kind).latest("created_at")
    assert task.status == "succeeded", task.log
    return task


def test_a_process_keeps_counting_across_save_and_restore(xen_lab: Guest, testbed: Testbed, testbed_timings):  # noqa: F811
    g, name, runner = xen_lab, xen_lab.domain_name, testbed.runner()
    phases = Phases()
    boots = testbed.console_log(name).count(BOOTED)  # the log of a name outlives one guest of that name
    with phases("start the counter loop in the guest (console)"):
        guest_shell.start_counter(runner, name)
        before = guest_shell.counter(runner, name)

    with phases("after class: the tick saves the VM (xl save, 256 MiB)"):
        assert tick(AFTER_CLASS)["class_hours"] == 1
        work("tb")
    saved = _task(g, "save")
    assert f"xl save {name} {save_path(name)}" in saved.log
    assert name not in testbed.ssh(["xl", "list"]).stdout
    assert testbed.ssh(["test", "-f", save_path(name)], check=False).returncode == 0
    tick(AFTER_CLASS)  # a sync: the panel sees the domain gone
    work("tb")
    assert _word(g) == "saved"

    time.sleep(5)  # wall time passes while it is saved: the counter must not have moved meanwhile
    with phases("before class: the tick restores the VM (xl restore)"):
        assert tick(BEFORE_CLASS)["class_hours"] == 1
        work("tb")
    restored = _task(g, "restore")
    assert f"xl restore {save_path(name)}" in restored.log and f"removed {save_path(name)}" in restored.log
    assert testbed.ssh(["test", "-f", save_path(name)], check=False).returncode != 0
    assert _word(g) == "running"

    with phases("the counter goes on from where it was"):
        after = guest_shell.counter(runner, name)
        time.sleep(3)
        later = guest_shell.counter(runner, name)
    # Not started again from 1: it went on from the value it had at the save, and keeps counting.
    assert after >= before and later > after, (before, after, later)
    assert testbed.console_log(name).count(BOOTED) == boots  # restored, never booted again
    print(
        f"\nxl save of a {MEMORY_MB} MiB guest: {saved.dom0_seconds:.1f} s in dom0 commands;"
        f" restore: {restored.dom0_seconds:.1f} s; counter {before} -> {after} -> {later}"
    )
    phases.report("class hours on real Xen (xl save / restore)", testbed_timings)


def test_xendomains_saves_and_restores_the_guests_and_the_panel_follows(
    xen_lab: Guest,
    testbed: Testbed,  # noqa: F811
    testbed_timings,  # noqa: F811
):
    """Debian's xendomains, as the dom0 guide configures it, run as a dom0 shutdown and boot run it.

    What a shutdown and a boot run, without the reboot (tests/e2e/test_console_on_xen.py reboots the dom0
    for real): `xendomains stop` (xl save of every guest to /var/lib/xen/save) and `xendomains start`
    (xl restore of each image, then the image removed), with the host silent meanwhile and the panel
    looking on.
    """
    g, name, runner = xen_lab, xen_lab.domain_name, testbed.runner()
    phases = Phases()
    ClassSchedule.objects.filter(lab=g.lab).delete()  # no class hours here: only the host's shutdown acts
    boots = testbed.console_log(name).count(BOOTED)
    tick(timezone.now())  # a sync while the host answers: the guest is seen running
    work("tb")
    before = guest_shell.start_counter(runner, name)
    with phases("xendomains stop (dom0 shutting down)"):
        testbed.ssh(["/etc/init.d/xendomains", "stop"], timeout=900)
    assert name not in testbed.ssh(["xl", "list"]).stdout
    assert testbed.ssh(["test", "-f", save_path(name)], check=False).returncode == 0
    # The host is unreachable meanwhile: its worker has not answered for minutes.
    Host.objects.filter(pk=g.host_id).update(last_seen=timezone.now() - timedelta(minutes=5))
    assert _word(g) == "saved (host down)"
    with phases("xendomains start (dom0 booting)"):
        testbed.ssh(["/etc/init.d/xendomains", "start"], timeout=900)
    assert testbed.ssh(["test", "-f", save_path(name)], check=False).returncode != 0  # xendomains removed it
    tick(timezone.now())  # the host answers again
    work("tb")
    assert _word(g) == "running"
    assert Guest.objects.get(pk=g.pk).last_error == ""
    after = guest_shell.counter(runner, name)
    assert after >= before, (before, after)
    assert testbed.console_log(name).count(BOOTED) == boots  # restored, not booted again
    phases.report("xendomains stop + start on real Xen", testbed_timings)
