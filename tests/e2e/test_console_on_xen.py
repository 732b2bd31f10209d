"""The browser console on a real Xen 4.17 host: Chromium → uvicorn here → Redis → the agent inside dom0 → `xl console`.

1. The session testbed's dom0 is set up by deploy/dom0-setup.md block by block
   (harness.set_up_dom0_for_this_panel): its worker and, new in step 6, its
   console agent (`manage.py console_agent --host xp-dom0`, started from the
   unit's own lines), both on the dom0's own restricted database role and
   Redis user, reaching this machine through QEMU guestfwd.
2. One student's guest is provisioned by that worker and boots the testbed's
   busybox template, whose hvc0 runs a root shell.
3. The guide's panel blocks run (check_hosts, and `console_agent --check`:
   the agent found its Host and checked in with Redis).
4. uvicorn serves xenpanel.asgi on this machine beside live_server, as
   `make run` does (XENPANEL_CONSOLE_WS_URL=":<port>/ws/"). In Chromium the
   student opens the console, types `echo MARK-<random>` and reads
   MARK-<random> back; xenconsoled's log of the guest (the testbed keeps
   one) shows it too, so it went through the real `xl console`.
5. She reboots the VM from the page: the terminal says "VM restarting…",
   then the console comes back by itself and shows the guest's new boot.
   She reboots it again while dom0's block hotplug script fails once, so xl
   cannot build the domain again: the panel's sync reads why in xl's log and
   starts the VM, and her console comes back to its new boot.
6. The dom0 itself is powered off and booted again (Testbed.power_off/on, same
   disks): xendomains, enabled as the guide's section 7 says, saves her VM and
   restores it at boot with a process in it still counting; meanwhile her page
   says "saved (host down)", then "running" again; the boot starts the worker
   and the agent, and she types in her console again.

Runs on PostgreSQL (the dom0 shares the panel's database); on SQLite the
last test runs this module again on the machine's PostgreSQL.
"""

from __future__ import annotations

import contextlib
import html as html_lib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.test import Client
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from labs.dom0.base import save_path
from labs.models import AuditEvent, Guest, Task
from labs.roster import RosterEntry
from labs.services import console, create_lab_batch
from tests.e2e import test_product_on_xen as product
from tests.e2e.harness import (
    BOOTED,
    MEMORY_MB,
    QUEUE,
    Dom0,
    panel_rows,
    revoke_dom0_credentials,
    run_module_on_postgresql,
    run_panel_steps,
    set_up_dom0_for_this_panel,
    start_sync_loop,
    stop_process,
    wait_host_memory,
)
from tests.testbed import fixtures as testbed_fixtures
from tests.testbed import guest_shell
from tests.testbed.testbed import Testbed
from tests.testbed.timing import Phases, until
from tests.ui import test_browser as shared
from tests.ui.console_helpers import click
from tests.ui.test_browser import login, shot

pytestmark = [pytest.mark.testbed, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# The session testbed and the shared headless Chromium, by their fixture names.
testbed = testbed_fixtures.testbed
testbed_timings = testbed_fixtures.testbed_timings
driver = shared.driver
browser = shared.browser

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
SLUG = "e2ec"
# Under TCG on a busy 2-core machine: `xl list` and `xl console` take seconds, a boot a minute or more.
OPEN_TIMEOUT = 300
ENABLED = "/etc/xenpanel-testbed/enabled"  # what the testbed's init starts at boot (tests/testbed/README.md)
ECHO_TIMEOUT = 120


@pytest.fixture(scope="module")
def dom0(testbed: Testbed, testbed_timings, django_db_setup, django_db_blocker) -> Dom0:
    """The testbed's dom0 set up by the guide: worker and console agent on the dom0's own credentials."""
    with django_db_blocker.unblock():
        d = set_up_dom0_for_this_panel(testbed)
    testbed_timings.add("console: dom0 set up by deploy/dom0-setup.md", d.timings)
    yield d
    d.stop_worker()  # the agent too
    with django_db_blocker.unblock():
        revoke_dom0_credentials()


@pytest.fixture
def guest(dom0: Dom0, testbed: Testbed, transactional_db, live_server, ivy, alice):
    """alice's guest, provisioned by the dom0 worker, booted to its shell; removed afterwards."""
    host, template, pool = panel_rows(dom0, "console-net", "10.78.0.0/24")
    sync = start_sync_loop(dom0.env)
    try:
        wait_host_memory(dom0, host)
        # xenconsoled appends to a name's log: an earlier test's guest of that name left its boots there.
        booted_before = product.console_boots(testbed, f"{SLUG}-alice")
        create_lab_batch(
            ivy,
            template,
            pool,
            [RosterEntry(1, "alice", "Alice Student", "alice@example.edu")],
            MEMORY_MB,
            name="Console on Xen",
            slug=SLUG,
        )
        g = until(
            lambda: Guest.objects.filter(status=Guest.Status.READY, observed_state__in=("r", "b")).first(),
            "alice's guest to be provisioned and running",
            product.PROVISION_TIMEOUT,
            interval=3,
            on_timeout=lambda: f"{product.guests_now()}\n{dom0.worker_log()}",
        )
        testbed.wait_console(g.domain_name, BOOTED, count=booted_before + 1, timeout=product.BOOT_TIMEOUT)
        yield g
    finally:
        stop_process(sync)
        dom0.scrub(SLUG, dom0.env, QUEUE)


@pytest.fixture
def asgi(settings, dom0: Dom0, live_server):
    """uvicorn with xenpanel.asgi on this machine, as `make run` starts it; the pages point their socket at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(dom0.env, DJANGO_SETTINGS_MODULE="xenpanel.settings", ALLOWED_HOSTS="127.0.0.1,localhost")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "uvicorn"), "xenpanel.asgi:application", "--host", "127.0.0.1"]
        + ["--port", str(port), "--lifespan", "off", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )

    def answers() -> bool:
        assert proc.poll() is None, "uvicorn exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ws/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    until(answers, "uvicorn to answer", 60, interval=0.5)
    settings.XENPANEL_CONSOLE_WS_URL = f":{port}/ws/"
    yield port
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def screen_text(browser) -> str:  # noqa: F811 (the fixture's name, as a parameter)
    """The terminal's last lines through the page's text alternative."""
    click(browser, browser.find_element(By.CSS_SELECTOR, '[data-console="refresh-text"]'))
    return browser.find_element(By.CSS_SELECTOR, '[data-console="text"]').get_attribute("textContent")


def status_of(browser) -> str:  # noqa: F811
    return browser.find_element(By.CSS_SELECTOR, '[data-console="status"]').text


def open_console(browser, guest: Guest):  # noqa: F811
    """On the student's VM page: open the console, wait for the shell's prompt; the terminal's key input."""
    browser.go(f"/vms/{guest.pk}/")
    click(browser, browser.find_element(By.CSS_SELECTOR, '[data-console="open"]'))
    WebDriverWait(browser, OPEN_TIMEOUT).until(lambda d: "what you type goes to the VM" in status_of(d))
    browser.execute_script(
        "arguments[0].open = true;", browser.find_element(By.CSS_SELECTOR, '[data-console="text-alternative"]')
    )
    keys = browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
    # xl console shows nothing until the guest prints: Enter gets busybox's prompt ("/ # ").
    keys.send_keys(Keys.ENTER)
    WebDriverWait(browser, OPEN_TIMEOUT, poll_frequency=2).until(lambda d: "#" in screen_text(d))
    return keys


def echo_mark(browser, keys) -> str:  # noqa: F811
    """Type `echo MARK-<random>` and wait for the shell's answer, the marker alone on its line; the marker."""
    mark = f"MARK-{secrets.token_hex(4)}"
    seen = []
    # Typed again once, as a person would, when no answer came (guest_shell.ask does the same: a line typed
    # while the shell is not reading is lost); once in a module run the first line got no answer in 120 s.
    for attempt in range(2):
        keys.send_keys(("" if attempt == 0 else Keys.ENTER) + f"echo {mark}" + Keys.ENTER)
        try:
            # The command line shows "echo MARK-..."; the shell's answer is the marker alone on its line.
            WebDriverWait(browser, ECHO_TIMEOUT / 2, poll_frequency=1).until(
                lambda d: re.search(rf"^{mark}$", screen_text(d), re.M)
            )
            return mark
        except TimeoutException:
            seen.append(f"--- after try {attempt + 1} (status {status_of(browser)!r}) ---\n{screen_text(browser)}")
    raise AssertionError(f"no answer to echo {mark} in the console:\n" + "\n".join(seen))


@pytest.mark.needs_postgres
@pytest.mark.timeout(3600)
def test_typed_in_chromium_read_back_through_xl_console_and_back_after_a_reboot(
    dom0,
    guest,
    asgi,
    browser,  # noqa: F811
    testbed,  # noqa: F811
    testbed_timings,  # noqa: F811
):
    phases = Phases()
    # The guide's panel blocks: the host is checked, and the console agent started in step 6 found its Host
    # (created just now, after the dom0 was set up) and checked in with Redis.
    with phases("guide's panel checks (check_hosts, console_agent --check)"):
        run_panel_steps(dom0.guide, dom0.values, dom0.env)
    assert console.agent_running(QUEUE), dom0.agent_log()

    login(browser, "alice")
    with phases("open the console (click to shell prompt)"):
        keys = open_console(browser, guest)
    with phases("echo MARK through xl console"):
        mark = echo_mark(browser, keys)
    # The same bytes went through the guest's real console: xenconsoled logged them.
    log = testbed.console_log(guest.domain_name)
    assert f"echo {mark}" in log and re.search(rf"^{mark}\r?$", log, re.M), log[-2000:]
    shot(browser, "e2e-console-mark")

    # The student reboots the VM from its console (the page's Reboot button posts and reloads the page, which
    # closes the terminal): the console says so and comes back by itself when the new domain is up.
    boots = product.console_boots(testbed, guest.domain_name)
    with phases("reboot (typed in the console, to the console back, new boot shown)"):
        keys.send_keys("reboot" + Keys.ENTER)
        WebDriverWait(browser, product.BOOT_TIMEOUT, poll_frequency=2).until(
            lambda d: "VM restarting…" in screen_text(d)
        )
        WebDriverWait(browser, product.BOOT_TIMEOUT, poll_frequency=2).until(
            lambda d: "The VM is back; the console is attached again." in screen_text(d)
        )
        testbed.wait_console(guest.domain_name, BOOTED, count=boots + 1, timeout=product.BOOT_TIMEOUT)
        # The new boot's marker reaches the terminal through the new xl console.
        WebDriverWait(browser, product.BOOT_TIMEOUT, poll_frequency=2).until(
            lambda d: screen_text(d).split("The VM is back")[-1].count(BOOTED) >= 1
        )
    assert "what you type goes to the VM" in status_of(browser)
    shot(browser, "e2e-console-after-reboot")

    # Again, but xl cannot build the rebooted domain (under TCG at load 7, libxl's hotplug timeout did
    # this): the block hotplug script fails its next `add` once. Nobody asked the panel for anything; its
    # sync finds the VM gone, xl's log says why, and the panel starts it; her console follows.
    boots = product.console_boots(testbed, guest.domain_name)
    before = f"BEFORE-{secrets.token_hex(4)}"
    with phases("reboot typed, xl's restart fails (block hotplug), the panel starts it, console back"):
        with failing_block_add(testbed):
            keys.send_keys(f"echo {before}; reboot" + Keys.ENTER)
            start = until(
                lambda: Task.objects.filter(guest=guest, kind="start", actor=None).first(),
                "the panel to start the VM whose restart failed",
                product.BOOT_TIMEOUT,
                interval=2,
                on_timeout=lambda: f"{product.guests_now()}\n{dom0.worker_log()}",
            )
            testbed.wait_console(guest.domain_name, BOOTED, count=boots + 1, timeout=product.BOOT_TIMEOUT)
        # The text alternative holds the last 40 lines, and the whole new boot (the console attached as soon as
        # the domain was made) pushes the marker and the "back" line out: the new boot's marker after the
        # marker line (or with it gone), with the status saying the console is attached again.
        WebDriverWait(browser, product.BOOT_TIMEOUT, poll_frequency=2).until(
            lambda d: (
                BOOTED in screen_text(d).split(f"\n{before}")[-1] and "what you type goes to the VM" in status_of(d)
            )
        )
        echo_mark(browser, keys)  # and she types in it again
    until(lambda: Task.objects.get(pk=start.pk).status == "succeeded", "the start to succeed", 120, interval=2)
    note = AuditEvent.objects.get(task=start).message
    assert "rebooted itself" in note and "unable to add" in note, note
    # xl's log of the failed restart (rotated by the panel's `xl create`), as the dom0's sync read it.
    xl_log = testbed.ssh(["cat", f"/var/log/xen/xl-{guest.domain_name}.log.1"]).stdout
    print(f"\nxl log of the failed restart:\n{xl_log}")
    assert "Done. Rebooting now" in xl_log, xl_log
    assert "what you type goes to the VM" in status_of(browser)
    click(browser, browser.find_element(By.CSS_SELECTOR, '[data-console="disconnect"]'))
    WebDriverWait(browser, 30).until(lambda d: "Disconnected" in status_of(d))
    testbed_timings.add("console on real Xen", phases.seconds)
    print("\n" + phases.line("console on real Xen"))


@contextlib.contextmanager
def failing_block_add(testbed: Testbed):  # noqa: F811
    """dom0's block hotplug script fails its next `add`, once; the real script is back afterwards."""
    scripts = "/etc/xen/scripts"
    testbed.ssh(
        f"mv {scripts}/block {scripts}/block.real && cat > {scripts}/block && chmod 755 {scripts}/block"
        " && touch /run/xenpanel-fail-block-add",
        input=(
            b"#!/bin/sh\n"
            b"# testbed fault (tests/e2e/test_console_on_xen.py): the next disk add fails, once\n"
            b'if [ "$1" = add ] && rm /run/xenpanel-fail-block-add 2>/dev/null; then\n'
            b'  echo "testbed: this block add fails on purpose" >&2; exit 1\n'
            b"fi\n"
            b'exec /etc/xen/scripts/block.real "$@"\n'
        ),
    )
    try:
        yield
    finally:
        testbed.ssh(f"rm -f /run/xenpanel-fail-block-add; mv {scripts}/block.real {scripts}/block")


def state_on_page(client, guest: Guest) -> str:
    """What alice's VM page says of the VM's state ("<name>: running"), as a screen reader reads it."""
    html = client.get(f"/vms/{guest.pk}/").content.decode()
    m = re.search(rf'data-said="{re.escape(guest.domain_name)}: ([^"]*)"', html)
    return html_lib.unescape(m.group(1)) if m else ""


def page_says(client, guest: Guest, word: str, timeout: float, more=lambda: "") -> None:
    until(
        lambda: state_on_page(client, guest) == word,
        f"the VM page to say {word!r}",
        timeout,
        interval=3,
        on_timeout=lambda: f"it says {state_on_page(client, guest)!r}\n{more()}",
    )


@pytest.mark.needs_postgres
@pytest.mark.timeout(3600)
def test_a_dom0_reboot_saves_and_restores_her_vm_and_the_panel_and_console_follow(
    dom0,
    guest,
    asgi,
    browser,  # noqa: F811
    client,
    alice,
    ivy,
    testbed,  # noqa: F811
    testbed_timings,  # noqa: F811
):
    """deploy/dom0-setup.md section 7 for real: the dom0 is powered off and booted again, with xendomains
    enabled as the guide says. Its init stops the worker, then xendomains saves the guest to
    /var/lib/xen/save; while the host is off the panel says "saved (host down)"; at boot xendomains
    restores it (a process in it kept counting, it never booted again) and the worker and console agent
    start again; the panel shows it running and the student types in its console, with no action from anyone.
    Then a boot without xendomains: her VM is gone, the panel says it was lost in the host's reboot, and
    the instructor's "Start the lab's stopped VMs" starts it again."""
    phases = Phases()
    name, runner = guest.domain_name, testbed.runner()
    client.force_login(alice)
    page_says(client, guest, "running", 120)
    boots = product.console_boots(testbed, name)
    before = guest_shell.start_counter(runner, name)
    worker_before = dom0.worker_pid()

    with phases("dom0 powered off (worker stopped, xendomains saves the guest)"):
        testbed.power_off()
    shutdown_log = testbed.powered_off_log
    assert "testbed: stop xenpanel-rqworker" in shutdown_log, shutdown_log[-3000:]
    assert "testbed: /etc/init.d/xendomains stop" in shutdown_log, shutdown_log[-3000:]
    with phases("the panel notices the host is gone (no worker answers its syncs)"):
        page_says(client, guest, "saved (host down)", 180)

    with phases("dom0 boots (xendomains restores the guest, the worker and agent start)"):
        boot = testbed.power_on()
    assert "testbed: /etc/init.d/xendomains start" in testbed.serial_text(), testbed.serial_text()[-3000:]
    assert testbed.ssh(["test", "-f", save_path(name)], check=False).returncode != 0  # restored, then removed
    with phases("the panel shows it running again"):
        page_says(client, guest, "running", 600, dom0.worker_log)
    assert Guest.objects.get(pk=guest.pk).last_error == ""
    assert dom0.worker_pid() not in (None, worker_before)  # a new pool, started by the boot
    with phases("the counter goes on from where it was"):
        after = guest_shell.counter(runner, name)
        time.sleep(3)
        later = guest_shell.counter(runner, name)
    assert later > after >= before, (before, after, later)  # the same process, still counting
    assert product.console_boots(testbed, name) == boots  # restored, never booted again

    login(browser, "alice")
    with phases("her console, through the agent the boot started"):
        keys = open_console(browser, guest)
        echo_mark(browser, keys)
    shot(browser, "e2e-console-after-dom0-reboot")
    click(browser, browser.find_element(By.CSS_SELECTOR, '[data-console="disconnect"]'))
    testbed_timings.add("dom0 reboot with xendomains", {**phases.seconds, "boot_ready_s": boot["ssh_ready_s"]})
    print("\n" + phases.line(f"dom0 reboot with xendomains (counter {before} -> {after} -> {later})"))

    # The other case: a dom0 that boots without xendomains comes back without her VM, and says so.
    without = Phases()
    testbed.ssh(["rm", "-f", f"{ENABLED}/20-xendomains"])
    try:
        boots = product.console_boots(testbed, name)
        with without("dom0 rebooted without xendomains (its init destroys the guest)"):
            testbed.power_off()
            testbed.power_on()
        assert name not in testbed.ssh(["xl", "list"]).stdout
        with without("the panel finds the VM lost in the reboot"):
            until(
                lambda: "came back after a silence without this VM" in Guest.objects.get(pk=guest.pk).last_error,
                "the panel to mark the VM lost in the host's reboot",
                600,
                interval=3,
                on_timeout=dom0.worker_log,
            )
        instructor = Client()
        instructor.force_login(ivy)
        assert 'id="start-stopped-link"' in instructor.get(f"/labs/{guest.lab_id}/").content.decode()
        with without("'Start the lab's stopped VMs' (confirmed) until it runs, booted anew"):
            r = instructor.post(f"/labs/{guest.lab_id}/start-stopped/", {"confirm": "on"})
            assert r.status_code == 302, r.content[:2000]
            page_says(client, guest, "running", product.PROVISION_TIMEOUT, dom0.worker_log)
            testbed.wait_console(name, BOOTED, count=boots + 1, timeout=product.BOOT_TIMEOUT)
    finally:
        testbed.ssh(["/etc/xenpanel-testbed/unit", "enable-sysv", "xendomains"], check=False)
    testbed_timings.add("dom0 reboot without xendomains", without.seconds)
    print("\n" + without.line("dom0 reboot without xendomains"))


@pytest.mark.postgres_relay
@pytest.mark.timeout(7200)
def test_console_on_xen_runs_on_postgresql():
    """This run uses SQLite, which the agent and worker inside QEMU cannot share: run this module on PostgreSQL."""
    out = run_module_on_postgresql(HERE, passed=2)
    assert "deselected" in out, out[-2000:]
