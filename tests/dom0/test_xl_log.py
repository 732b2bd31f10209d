"""Reading why xl's restart of a domain that rebooted itself failed, from /var/log/xen/xl-<name>.log.

The log lines are xl's own (tools/xl/xl_vmcontrol.c of Xen 4.17: "Waiting for domain %s (domid %u) to die
[pid %ld]", "Domain %d needs to be cleaned up: destroying the domain", "Done. Rebooting now") and libxl's
errors as the testbed printed them ("unable to add disk devices", tests/dom0/fixtures/xl-errors-4.17-real.json).
"""

from __future__ import annotations

import pytest

from labs.dom0.errors import InvalidName
from labs.dom0.toolstack import Toolstack, parse_restart_failure

STARTED = "Waiting for domain net-alice (domid 3) to die [pid 2211]\n"
REBOOTED = (
    "Domain 3 has shut down, reason code 1 0x1\n"
    "Action for shutdown reason code 1 is restart\n"
    "Domain 3 needs to be cleaned up: destroying the domain\n"
    "Done. Rebooting now\n"
)
FAILED = (
    "libxl: error: libxl_device.c:1199:device_backend_callback: Domain 4:unable to add device with path"
    " /local/domain/0/backend/vbd/4/51713\n"
    "libxl: error: libxl_create.c:1672:domcreate_launch_dm: Domain 4:unable to add disk devices\n"
    "libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain 4:Non-existant domain\n"
)
POWERED_OFF = (
    "Domain 4 has shut down, reason code 0 0x0\n"
    "Action for shutdown reason code 0 is destroy\n"
    "Domain 4 needs to be cleaned up: destroying the domain\n"
    "Done. Exiting now\n"
)


def test_a_restart_that_failed_says_which_devices(fixture_text):
    assert parse_restart_failure(STARTED + REBOOTED + FAILED) == "unable to add disk devices"
    # The testbed's: a good restart, then one whose block hotplug failed.
    real = fixture_text("xl-log-4.17-restart-failed-real.txt")
    assert parse_restart_failure(real) == "unable to add disk devices"
    # Cut before the failure, it is the good restart and a restart still building.
    assert parse_restart_failure(real.split("testbed: this block add")[0]) == ""
    assert parse_restart_failure(real.split("Domain 2 has shut down")[0]) == ""


def test_a_restart_that_worked_or_is_still_building_is_not_a_failure():
    again = "Waiting for domain net-alice (domid 4) to die [pid 2211]\n"
    assert parse_restart_failure(STARTED + REBOOTED + again) == ""
    assert parse_restart_failure(STARTED + REBOOTED) == ""  # building: nothing logged yet
    # An earlier failed restart, then a good one, then a poweroff from inside: a plain stop.
    assert parse_restart_failure(STARTED + REBOOTED + again + POWERED_OFF) == ""
    assert parse_restart_failure(STARTED + POWERED_OFF) == ""
    assert parse_restart_failure("") == ""


def test_an_error_line_without_the_device_words_is_given_as_is():
    line = "libxl: error: libxl_create.c:1300:initiate_domain_create: Domain 4:cannot make domain: -3\n"
    assert parse_restart_failure(STARTED + REBOOTED + line) == "cannot make domain: -3"


def test_the_toolstack_reads_the_tail_of_the_domains_log(scripted_runner):
    path = "/var/log/xen/xl-net-alice.log"
    scripted_runner.expect(["tail", "-c", "16384", "--", path], stdout=STARTED + REBOOTED + FAILED)
    assert Toolstack(scripted_runner).restart_failure("net-alice") == "unable to add disk devices"
    # No log (a domain never created by xl here): no failure, and no error.
    scripted_runner.expect(["tail", "-c", "16384", "--", path], rc=1, stderr="tail: cannot open")
    assert Toolstack(scripted_runner).restart_failure("net-alice") == ""
    assert scripted_runner.calls[-1]["check"] is False


def test_xm_keeps_no_such_log_and_names_are_checked(scripted_runner):
    assert Toolstack(scripted_runner, "xm").restart_failure("net-alice") == ""
    with pytest.raises(InvalidName):
        Toolstack(scripted_runner).restart_failure("../../etc/shadow")
    assert scripted_runner.calls == []
