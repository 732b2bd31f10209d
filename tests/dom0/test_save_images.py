"""Save images (/var/lib/xen/save/<name>): the real dom0's commands and the simulated dom0 agree.

The class hours' jobs save a guest there, restore it, then delete the image (as xendomains does), so a
stale one is never restored at the host's next boot. `xl restore` is tried again when libxl killed a slow
hotplug script, as `xl create` is (tests/e2e/test_found_on_real_xen.py has the stderr from the testbed).
"""

from __future__ import annotations

import pytest

from labs.dom0.base import SAVE_DIR, DomainSpec, HostConfig, save_path
from labs.dom0.errors import InvalidName, ToolstackError
from labs.dom0.host import XenHost
from labs.dom0.simulated import SimulatedHost
from labs.dom0.toolstack import HOTPLUG_RETRIES, Toolstack
from tests.e2e.test_found_on_real_xen import HOTPLUG_TIMEOUT_STDERR

PATH = "/var/lib/xen/save/net-alice"


def test_the_image_is_named_as_xendomains_names_its_own():
    assert save_path("net-alice") == PATH and SAVE_DIR == "/var/lib/xen/save"
    with pytest.raises(InvalidName):
        save_path("net alice; rm -rf /")


def test_the_real_dom0_tests_and_removes_the_image(scripted_runner):
    host = XenHost(HostConfig(name="a", volume_group="vg0"), runner=scripted_runner)
    scripted_runner.expect(["test", "-f", PATH], rc=1)
    assert host.saved_image_exists(PATH) is False
    scripted_runner.expect(["test", "-f", PATH], rc=1)
    assert host.remove_saved_image(PATH) is False
    scripted_runner.expect(["test", "-f", PATH]).expect(["rm", "-f", "--", PATH])
    assert host.remove_saved_image(PATH) is True


def test_the_real_dom0_makes_the_save_directory_first(scripted_runner):
    host = XenHost(HostConfig(name="a", volume_group="vg0"), runner=scripted_runner)
    scripted_runner.expect(["mkdir", "-p", "-m", "0700", SAVE_DIR]).expect(["xl", "save", "net-alice", PATH])
    host.save("net-alice", PATH)


def test_a_bad_path_is_refused_before_any_command(forbidden_runner):
    host = XenHost(HostConfig(name="a", volume_group="vg0"), runner=forbidden_runner)
    for bad in ("relative/path", "/var/lib/xen/save/../../etc/shadow", "/tmp/a b"):
        with pytest.raises(InvalidName):
            host.saved_image_exists(bad)
        with pytest.raises(InvalidName):
            host.remove_saved_image(bad)


def test_restore_is_retried_after_a_hotplug_timeout(scripted_runner):
    for _ in range(HOTPLUG_RETRIES):
        scripted_runner.expect(["xl", "restore", PATH], stderr=HOTPLUG_TIMEOUT_STDERR, rc=3)
    scripted_runner.expect(["xl", "restore", PATH])
    Toolstack(scripted_runner).restore(PATH)
    scripted_runner.expect(["xl", "restore", PATH], stderr="Can't open restore file: No such file\n", rc=1)
    with pytest.raises(ToolstackError):
        Toolstack(scripted_runner).restore(PATH)  # another error: no retry


@pytest.fixture
def sim(tmp_path) -> SimulatedHost:
    host = SimulatedHost(HostConfig(name="sim", volume_group="vg0", sim_dir=str(tmp_path)))
    host.create_volume("vm-net-alice.raiz", 64)
    host.clone_template("/modelo", "/dev/vg0/vm-net-alice.raiz", "ext4", "mkfs")
    root = "/dev/vg0/vm-net-alice.raiz"
    spec = DomainSpec(name="net-alice", kernel="/boot/vmlinuz", memory_mb=256, root_target=root)
    host.write_config(spec)
    host.create("net-alice")
    return host


def test_the_simulated_dom0_saves_restores_and_forgets_an_image_like_the_real_one(sim):
    assert not sim.saved_image_exists(PATH)
    sim.save("net-alice", PATH)
    assert "net-alice" not in sim.domains() and sim.saved_image_exists(PATH)
    sim.restore(PATH)
    assert "net-alice" in sim.domains()
    assert sim.saved_image_exists(PATH)  # xl restore leaves the file; the job removes it
    assert sim.remove_saved_image(PATH) is True and sim.remove_saved_image(PATH) is False
    assert ["test", "-f", PATH] in sim.history and ["rm", "-f", "--", PATH] in sim.history
    assert sim.history.index(["mkdir", "-p", "-m", "0700", SAVE_DIR]) < sim.history.index(
        ["xl", "save", "net-alice", PATH]
    )


def test_a_simulated_dom0_reboot_with_and_without_xendomains(sim):
    domid = sim.domains()["net-alice"]["domid"]
    sim.power_cycle(xendomains=True)
    assert sim.domains()["net-alice"]["domid"] > domid and sim.saved_images() == {}
    sim.power_cycle(xendomains=False)
    assert sim.domains() == {} and sim.saved_images() == {}
