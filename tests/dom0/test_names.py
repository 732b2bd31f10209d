"""Bad input is refused by names.py, and by every public dom0 method before any command runs."""

from __future__ import annotations

import dataclasses
import time

import pytest

from labs.dom0 import names
from labs.dom0.base import DomainSpec, HostConfig
from labs.dom0.domconfig import ConfigStore
from labs.dom0.errors import InvalidName
from labs.dom0.host import XenHost
from labs.dom0.toolstack import Toolstack

# One entry per class of bad input the brief names.
BAD_NAMES = {
    "space": "web 01",
    "single-quote": "web'01",
    "double-quote": 'web"01',
    "newline": "web01\n",
    "newline-inside": "web\n01",
    "semicolon": "web01;reboot",
    "command-substitution": "$(reboot)",
    "backticks": "`reboot`",
    "parent-dir": "../web01",
    "leading-dash": "-web01",
    "slash": "web/01",
    "empty": "",
}
BAD_PATHS = {
    "space": "/dev/vg0/web 01",
    "single-quote": "/dev/vg0/web'01",
    "double-quote": '/dev/vg0/web"01',
    "newline": "/dev/vg0/web01\n",
    "semicolon": "/dev/vg0/web01;reboot",
    "command-substitution": "/dev/vg0/$(reboot)",
    "parent-dir": "/dev/vg0/../../etc/shadow",
    "dot-dir": "/dev/./vg0",
    "leading-dash": "-rf",
    "relative": "dev/vg0/web01",
    "comma": "/dev/vg0/a,b",
    "empty": "",
}


@pytest.mark.parametrize(
    "validator", [names.domain_name, names.volume_name, names.volume_group, names.hostname, names.bridge]
)
@pytest.mark.parametrize("value", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_names_refuse_bad_input(validator, value):
    with pytest.raises(InvalidName):
        validator(value)


@pytest.mark.parametrize("value", BAD_PATHS.values(), ids=BAD_PATHS.keys())
def test_abs_path_refuses_bad_input(value):
    with pytest.raises(InvalidName):
        names.abs_path(value)


@pytest.mark.parametrize(
    "validator, value",
    [
        (names.domain_name, "web01"),
        (names.domain_name, "lab1-ana.silva_2"),
        (names.domain_name, "a" * 48),
        (names.volume_name, "vm-web01.raiz"),
        (names.volume_group, "vg0"),
        (names.hostname, "web01"),
        (names.dns_domain, "lab.example.edu"),
        (names.bridge, "xenbr0"),
        (names.bridge, "br-lab.10"),
        (names.abs_path, "/dev/vg0/vm-web01.raiz"),
        (names.abs_path, "/etc/xen/"),
        (names.mac, "00:16:3e:5a:01:03"),
        (names.ipv4, "10.0.0.5"),
    ],
)
def test_good_values_pass_unchanged(validator, value):
    assert validator(value) == value


@pytest.mark.parametrize(
    "validator, value",
    [
        (names.domain_name, "a" * 49),
        (names.bridge, "a" * 16),
        (names.volume_name, "snapshot1"),
        (names.dns_domain, "lab..example.edu"),
        (names.dns_domain, "-lab.example.edu"),
        (names.mac, "00:16:3e:5a:01"),
        (names.mac, "01:16:3e:5a:01:03"),  # multicast
        (names.mac, "00:16:3e:5a:01:03,bridge=x"),
        (names.ipv4, "10.0.0.256"),
        (names.memory_mb, 8),
        (names.memory_mb, "256"),
        (names.memory_mb, True),
        (names.crypt_hash, "plaintext"),
    ],
)
def test_other_bad_values(validator, value):
    with pytest.raises(InvalidName):
        validator(value)


def test_mac_is_normalised_to_lower_case():
    assert names.mac("00:16:3E:5A:01:0C") == "00:16:3e:5a:01:0c"


def test_long_bad_path_is_refused_quickly():
    # Regression: the old path pattern backtracked exponentially (24 letters
    # and a '!' took over a second, each extra letter doubled it).
    started = time.monotonic()
    for n in (24, 40, 4000):
        with pytest.raises(InvalidName):
            names.abs_path("/" + "a" * n + "!")
    assert time.monotonic() - started < 0.5


# --- the public methods refuse before any command runs (ForbiddenRunner fails the test if called) ---
NAME_VERBS = ["shutdown", "reboot", "destroy", "pause", "unpause", "console_command"]


@pytest.mark.parametrize("dialect", ["xl", "xm"])
@pytest.mark.parametrize("verb", NAME_VERBS)
@pytest.mark.parametrize("value", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_toolstack_verbs_refuse_bad_names(forbidden_runner, dialect, verb, value):
    with pytest.raises(InvalidName):
        getattr(Toolstack(forbidden_runner, dialect), verb)(value)


@pytest.mark.parametrize("value", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_toolstack_mem_set_and_save_refuse_bad_names(forbidden_runner, value):
    ts = Toolstack(forbidden_runner)
    with pytest.raises(InvalidName):
        ts.mem_set(value, 128)
    with pytest.raises(InvalidName):
        ts.save(value, "/var/lib/xen/save/web01")
    with pytest.raises(InvalidName):
        ts.shutdown(value, wait=True)


@pytest.mark.parametrize("value", BAD_PATHS.values(), ids=BAD_PATHS.keys())
def test_toolstack_paths_are_checked(forbidden_runner, value):
    ts = Toolstack(forbidden_runner)
    for call in (lambda: ts.create(value), lambda: ts.restore(value), lambda: ts.save("web01", value)):
        with pytest.raises(InvalidName):
            call()


@pytest.mark.parametrize("memory", [0, 8, -128, "128", "128m", 1.5, True, None])
def test_mem_set_refuses_bad_sizes(forbidden_runner, memory):
    with pytest.raises(InvalidName):
        Toolstack(forbidden_runner).mem_set("web01", memory)


@pytest.mark.parametrize("value", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_config_store_refuses_bad_names(forbidden_runner, value):
    store = ConfigStore(forbidden_runner)
    for call in (
        lambda: store.path(value),
        lambda: store.write(value, "name = 'x'\n"),
        lambda: store.remove(value),
        lambda: store.read(value),
        lambda: store.exists(value),
    ):
        with pytest.raises(InvalidName):
            call()


@pytest.mark.parametrize("value", BAD_PATHS.values(), ids=BAD_PATHS.keys())
def test_config_store_refuses_bad_directories(forbidden_runner, value):
    with pytest.raises(InvalidName):
        ConfigStore(forbidden_runner, config_dir=value)
    with pytest.raises(InvalidName):
        ConfigStore(forbidden_runner, auto_dir=value)


@pytest.fixture
def host(forbidden_runner):
    return XenHost(HostConfig(name="dom0-a", volume_group="vg0"), runner=forbidden_runner)


@pytest.mark.parametrize("value", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_xen_host_refuses_bad_names(host, value):
    spec = DomainSpec(name="web01", kernel="/boot/vmlinuz", memory_mb=128, root_target="/dev/vg0/vm-web01.raiz")
    calls = [
        lambda: host.bridge_exists(value),
        lambda: host.create(value),
        lambda: host.config_path(value),
        lambda: host.remove_config(value),
        lambda: host.write_config(dataclasses.replace(spec, name=value)),
        lambda: host.shutdown(value, wait=True),
        lambda: host.mem_set(value, 128),
        lambda: host.console_command(value),
        lambda: host.create_volume(value, 64),
        lambda: host.remove_volume(value),
        lambda: host.snapshot_volume(value, "vm-web01.raiz"),
        lambda: host.snapshot_volume("golden", value),
    ]
    for call in calls:
        with pytest.raises(InvalidName):
            call()


@pytest.mark.parametrize("value", BAD_PATHS.values(), ids=BAD_PATHS.keys())
def test_xen_host_refuses_bad_paths(host, value):
    for call in (
        lambda: host.make_swap(value),
        lambda: host.read_guest_file(value, "/etc/hostname"),
        lambda: host.read_guest_file("/dev/vg0/vm-web01.raiz", value),
        lambda: host.clone_template("golden", value, "ext4", "thin"),
        lambda: host.restore(value),
    ):
        with pytest.raises(InvalidName):
            call()
