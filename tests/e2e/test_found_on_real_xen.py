"""Behaviour the real Xen host showed that the fixtures had not: pinned here, next to the e2e test that found it."""

from __future__ import annotations

import pytest

from labs.dom0.base import Domain
from labs.dom0.errors import CommandFailed, DomainExists, ToolstackError
from labs.dom0.runner import Result
from labs.dom0.toolstack import HOTPLUG_RETRIES, Toolstack, parse_list_table

# `xl list` on the testbed while its two CPUs were busy: a guest that had
# just been created, runnable but not on a CPU at that instant, has no flag.
BUSY_HOST_LIST = """\
Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  1024     2     r-----    2978.8
e2e-bob                                      4   128     1     -b----       2.1
e2e-alice                                    5   128     1     ------       6.0
"""


def test_a_runnable_domain_without_flags_counts_as_running():
    letters = {d.name: d.letter for d in parse_list_table(BUSY_HOST_LIST)}
    # Reading it as "" made the provisioning job call the guest stopped and destroy it.
    assert letters == {"Domain-0": "r", "e2e-bob": "b", "e2e-alice": "r"}


def test_flags_still_win_and_an_unknown_state_stays_unknown():
    assert Domain("a", 1, 64, 1, "--p---").letter == "p"
    assert Domain("a", 1, 64, 1, "---s--").letter == "s"
    assert Domain("a", 1, 64, 1, "").letter == ""  # `xl list -l` carries no state column


# What `xl create` printed on the loaded testbed when libxl's hotplug timeout fired (exit 3).
HOTPLUG_TIMEOUT_STDERR = (
    (
        "Parsing config from /etc/xen/e2e-bob.cfg\n"
        "libxl: error: libxl_aoutils.c:539:async_exec_timeout: killing execution of /etc/xen/scripts/block add"
        " because of timeout\n"
    )
    + """\
libxl: error: libxl_create.c:1672:domcreate_launch_dm: Domain 10:unable to add disk devices
libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain 10:Non-existant domain
libxl: error: libxl_domain.c:1137:domain_destroy_callback: Domain 10:Unable to destroy guest
libxl: error: libxl_domain.c:1064:domain_destroy_cb: Domain 10:Destruction of domain failed
"""
)


class ScriptedRunner:
    """Answers each `xl create` with the next (rc, stderr) of a script."""

    def __init__(self, *answers: tuple[int, str]) -> None:
        self.answers = list(answers)
        self.calls: list[list[str]] = []
        self.busy_seconds = 0.0

    def run(self, argv, *, timeout=300.0, check=True, input=None, env=None) -> Result:
        self.calls.append(list(argv))
        rc, stderr = self.answers.pop(0)
        if check and rc:
            raise CommandFailed(f"xl failed (exit {rc})", argv=list(argv), rc=rc, stderr=stderr)
        return Result(list(argv), rc, "", stderr, 0.0)


def test_create_is_retried_when_libxl_killed_a_slow_hotplug_script():
    assert HOTPLUG_RETRIES == 2
    runner = ScriptedRunner(
        (3, HOTPLUG_TIMEOUT_STDERR), (3, HOTPLUG_TIMEOUT_STDERR), (0, "Parsing config from /etc/xen/e2e-bob.cfg\n")
    )
    Toolstack(runner).create("/etc/xen/e2e-bob.cfg")
    assert runner.calls == [["xl", "create", "/etc/xen/e2e-bob.cfg"]] * 3


def test_create_fails_after_the_last_hotplug_timeout_and_other_errors_are_not_retried():
    runner = ScriptedRunner(*[(3, HOTPLUG_TIMEOUT_STDERR)] * (HOTPLUG_RETRIES + 1))
    with pytest.raises(ToolstackError, match="killing execution of /etc/xen/scripts/block add because of timeout"):
        Toolstack(runner).create("/etc/xen/e2e-bob.cfg")
    assert len(runner.calls) == HOTPLUG_RETRIES + 1 and not runner.answers

    runner = ScriptedRunner((1, 'libxl: error: libxl_create.c:x: Domain 2:Domain with name "web01" already exists.'))
    with pytest.raises(DomainExists):
        Toolstack(runner).create("/etc/xen/web01.cfg")
    assert len(runner.calls) == 1
