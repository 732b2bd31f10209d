"""Save points on a real Xen 4.17 host with a real LVM thin pool (the QEMU testbed).

The panel's own service and jobs run here, in the test process, with a real RQ
worker (in process) whose dom0 is the testbed's, reached over ssh: provisioning
a thin clone of a golden LV, then what a student does from the VM's page.

1. The student writes a file in the guest, typed into its serial console (the
   busybox guest has a root shell on hvc0; what is written to the console's pty
   in dom0 is what `xl console` would send).
2. A save point is taken: a thin snapshot of the root (LVM says so).
3. The file is deleted in the guest.
4. Return to the save point: the VM is shut down, its root swapped for a fresh
   snapshot of the save point, and started again.
5. The file is back, and the VM has the same IP (its boot marker) and MAC (read
   inside the guest from /sys).

Answers come back through the console log: each command prints a marker built
by shell arithmetic ($((40+2)) prints 42), so the echo of the typed line itself
never matches what the test waits for.
"""

from __future__ import annotations

import ipaddress

import django_rq
import pytest

from labs.dom0.base import HostConfig
from labs.dom0.host import XenHost
from labs.jobs import connect
from labs.models import Guest, Host, IpPool, LabTemplate, SavePoint, Task
from labs.services import create_lab_batch, guest_action, save_points
from tests.pipeline.helpers import roster, work
from tests.testbed import guest_shell
from tests.testbed.fixtures import testbed, testbed_timings  # noqa: F401
from tests.testbed.testbed import Testbed
from tests.testbed.timing import Phases

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

VG, POOL, GOLDEN = "vg0", "sppool", "sp-golden"
TEMPLATE_DIR = "/srv/xenpanel/templates/tiny"
BOOTED = "XENPANEL-BOOTED"
# Under TCG on a shared 2-core machine a boot takes minutes at worst.
BOOT_TIMEOUT = 900
NETWORK = "10.77.0.0/24"


def ask(tb: Testbed, name: str, command: str, answer: str, timeout: float = 300) -> str:
    """Run `command` in the guest's shell, then wait until the console shows `answer` once more than before.

    Typed again when no answer comes (at most three times; the commands here are safe to repeat): a line
    typed while the guest's shell is still starting after a boot is lost.
    """
    runner = tb.runner()
    seen = guest_shell.console_log(runner, name).count(answer)
    for _ in range(2):
        guest_shell.type_line(runner, name, command)
        try:
            return guest_shell.wait_marker(runner, name, answer, count=seen + 1, timeout=timeout / 3)
        except AssertionError:
            pass  # lost (the shell was starting): type it again
    guest_shell.type_line(runner, name, command)
    return guest_shell.wait_marker(runner, name, answer, count=seen + 1, timeout=timeout / 3)


@pytest.fixture
def xen_jobs(testbed: Testbed, settings, monkeypatch):  # noqa: F811
    """Jobs of this process reach the testbed's dom0 (a real XenHost over ssh)."""
    settings.XENPANEL_DOM0 = "xen"
    runner = testbed.runner()
    monkeypatch.setattr(connect, "connect_host", lambda host: XenHost(connect.host_config(host), runner=runner))
    return XenHost(HostConfig(name="tb", volume_group=VG, thin_pool=POOL), runner=runner)


@pytest.fixture
def thin_lab(xen_jobs, testbed: Testbed, ivy, alice):  # noqa: F811
    """A thin-pool host row for the testbed, a golden LV of the tiny template, and alice's VM booted from it."""
    xen = xen_jobs
    django_rq.get_connection("default").flushdb()  # this run's Redis database: no jobs left from another
    xen.lvm.create_thin_pool(512)
    golden = xen.lvm.create(GOLDEN, 64, thin=True)
    xen.clone_template(TEMPLATE_DIR, golden.path, "ext4", "mkfs")
    info = xen.info()
    host = Host.objects.create(
        name="tb",
        queue_name="tb",
        volume_group=VG,
        thin_pool=POOL,
        total_memory_mb=info.total_memory_mb,
        free_memory_mb=info.free_memory_mb,
        dom0_reserve_mb=max(info.total_memory_mb - info.free_memory_mb, 196),
    )
    template = LabTemplate.objects.create(
        name="tiny thin",
        rootfs_path=TEMPLATE_DIR,
        golden_volume=GOLDEN,
        clone_method=LabTemplate.CloneMethod.THIN,
        kernel="/boot/vmlinux-domu",
        ramdisk="/boot/initrd-domu.img",
        root_size_mb=64,
        swap_size_mb=0,
        default_memory_mb=128,
        max_memory_mb=256,
    )
    net = ipaddress.ip_network(NETWORK)
    pool = IpPool.objects.create(
        name="sp-net", network=NETWORK, gateway=str(net[1]), first_ip=str(net[10]), last_ip=str(net[250])
    )
    create_lab_batch(ivy, template, pool, roster("alice"), memory_mb=128, slug="sp", hosts=[host])
    work("tb")
    guest = Guest.objects.select_related("lab__template", "host", "student", "pool").get(student=alice)
    try:
        assert guest.status == "ready", Task.objects.filter(guest=guest).first().log
        testbed.wait_console(guest.domain_name, BOOTED, timeout=BOOT_TIMEOUT)
        yield guest
    finally:
        # The panel's own teardown: domain, config, root and every save point.
        if Guest.objects.filter(pk=guest.pk, busy_with="").exists():
            guest_action(ivy, Guest.objects.get(pk=guest.pk), "teardown")
            work("tb")
        for lv in (GOLDEN, POOL):
            xen.remove_volume(lv)


def test_a_file_is_back_after_a_return_to_the_save_point(thin_lab: Guest, testbed: Testbed, alice, testbed_timings):  # noqa: F811
    g, name = thin_lab, thin_lab.domain_name
    phases = Phases()
    with phases("write a file in the guest (console)"):
        ask(testbed, name, "echo exercise-3-work > /root/work.txt && sync && echo WROTE-$((40+2))", "WROTE-42")

    with phases("take a save point (thin snapshot job)"):
        task = save_points.take(alice, g, "before exercise 3")
        work("tb")
        task.refresh_from_db()
    assert task.status == "succeeded", task.log
    point = SavePoint.objects.get(pk=task.args["save_point"])
    assert (point.method, point.status) == ("thin", "ready")
    attr, origin, pool = testbed.ssh(
        ["lvs", "--noheadings", "-o", "lv_attr,origin,pool_lv", f"{VG}/{point.volume}"]
    ).stdout.split()
    assert attr.startswith("V") and (origin, pool) == (g.root_lv, POOL), (attr, origin, pool)

    with phases("delete the file in the guest"):
        ask(testbed, name, "rm /root/work.txt && sync && test ! -e /root/work.txt && echo GONE-$((40+3))", "GONE-43")

    boots = testbed.console_log(name).count(BOOTED)
    with phases("return to the save point (shutdown, swap root, start)"):
        task = save_points.return_to(alice, point)
        work("tb")
        task.refresh_from_db()
    assert task.status == "succeeded", task.log
    assert (task.steps_done, task.steps_total) == (4, 4)
    with phases("boot after the return (marker)"):
        line = testbed.wait_console(name, BOOTED, count=boots + 1, timeout=BOOT_TIMEOUT)
    g.refresh_from_db()
    assert f"ip={g.ip} " in line, line
    assert g.observed_state in ("r", "b") and g.busy_with == ""

    with phases("the file is back, and the MAC the same"):
        ask(testbed, name, "grep -q exercise-3-work /root/work.txt && echo BACK-$((40+4))", "BACK-44")
        mac = g.mac.replace(":", "-")
        ask(testbed, name, "echo MAC-$(tr : - < /sys/class/net/eth0/address)-$((40+5))", f"MAC-{mac}-45")
    # The root is a new snapshot of the save point, which stays.
    origin = testbed.ssh(["lvs", "--noheadings", "-o", "origin", f"{VG}/{g.root_lv}"]).stdout.strip()
    assert origin == point.volume
    assert SavePoint.objects.filter(pk=point.pk, status="ready").exists()
    phases.report("save point on real Xen (thin pool)", testbed_timings)
