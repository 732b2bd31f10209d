"""The browser console in headless Chromium: live_server for the pages, uvicorn and the console agent beside it.

As `make run` has it: gunicorn's pages (here live_server) open their socket
on another port of the same host name (XENPANEL_CONSOLE_WS_URL=":<port>/ws/"),
served by uvicorn running xenpanel.asgi in a subprocess, and the demo's
console agent (`manage.py console_agent`, with the dom0 settings profile)
serves the simulated host, whose guest answers from its own files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import django_rq
import pytest
from django.conf import settings as django_settings
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from labs.services import console
from tests.pipeline.helpers import worker_env
from tests.ui import test_browser as shared
from tests.ui.console_helpers import click, run_on_simulated_host
from tests.ui.test_browser import login, shot, wait

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# The shared headless Chromium (one per module) and the logged-out browser on live_server.
driver = shared.driver
browser = shared.browser

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


@pytest.fixture
def consoles(settings, tmp_path, host, alice_guest, live_server):
    """uvicorn with xenpanel.asgi and the host's console agent, alice's guest running on the simulated host."""
    sim_dir = tmp_path / "sim"
    settings.XENPANEL_SIM_DIR = str(sim_dir)
    conn = django_rq.get_connection("default")
    conn.flushdb()
    run_on_simulated_host(host, alice_guest)
    port = free_port()
    settings.XENPANEL_CONSOLE_WS_URL = f":{port}/ws/"
    dom0 = worker_env(sim_dir)
    panel = dict(dom0, DJANGO_SETTINGS_MODULE="xenpanel.settings", SECRET_KEY=django_settings.SECRET_KEY)
    panel.pop("LOG_LEVEL")
    asgi = subprocess.Popen(
        [str(Path(sys.executable).parent / "uvicorn"), "xenpanel.asgi:application", "--host", "127.0.0.1"]
        + ["--port", str(port), "--lifespan", "off", "--log-level", "warning"],
        cwd=ROOT,
        env=panel,
        start_new_session=True,
    )
    agent = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "console_agent", "--host", host.name],
        cwd=ROOT,
        env=dom0,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        assert asgi.poll() is None and agent.poll() is None, "uvicorn or the agent exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ws/healthz", timeout=2):
                pass
            if conn.exists(console.agent_key(host.queue_name)):
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "uvicorn or the agent never came up"
        time.sleep(0.2)
    yield port
    for proc in (asgi, agent):
        stop(proc)
    conn.flushdb()


def screen_text(browser) -> str:
    """What the terminal shows, through the page's text alternative (the screen reader's way in)."""
    click(browser, browser.find_element(By.CSS_SELECTOR, '[data-console="refresh-text"]'))
    return browser.find_element(By.CSS_SELECTOR, '[data-console="text"]').get_attribute("textContent")


def open_text_alternative(browser) -> None:
    details = browser.find_element(By.CSS_SELECTOR, '[data-console="text-alternative"]')
    browser.execute_script("arguments[0].open = true;", details)


def test_student_types_hostname_and_reads_it_then_a_reload_shows_the_scrollback(browser, consoles, alice, alice_guest):
    login(browser, "alice")
    browser.go(f"/vms/{alice_guest.pk}/")
    status = browser.find_element(By.CSS_SELECTOR, '[data-console="status"]')
    assert "closed" in status.text
    click(browser, browser.find_element(By.CSS_SELECTOR, '[data-console="open"]'))
    wait(browser, 20).until(lambda d: "what you type goes to the VM" in status.text)
    open_text_alternative(browser)
    prompt = f"root@{alice_guest.hostname}:~#"
    wait(browser, 20, poll_frequency=0.2).until(lambda d: screen_text(d).rstrip().endswith(prompt))
    # Keys go to xterm.js's own input element, as a user's typing does.
    browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys("hostname" + Keys.ENTER)
    wait(browser, 20, poll_frequency=0.2).until(
        lambda d: f"{prompt} hostname\n{alice_guest.hostname}\n" in screen_text(d)
    )
    # The terminal itself (xterm.js's rows) shows it too.
    rows = browser.find_element(By.CSS_SELECTOR, ".xterm-rows").text
    assert alice_guest.hostname in rows and "hostname" in rows
    assert browser.find_element(By.CSS_SELECTOR, '[data-console="disconnect"]').is_displayed()
    shot(browser, "console-student")

    browser.refresh()  # the console opens again by itself, with what was on the screen
    status = wait(browser, 20).until(lambda d: d.find_element(By.CSS_SELECTOR, '[data-console="status"]'))
    wait(browser, 20).until(lambda d: "what you type goes to the VM" in status.text)
    open_text_alternative(browser)
    wait(browser, 20, poll_frequency=0.2).until(
        lambda d: f"{prompt} hostname\n{alice_guest.hostname}\n" in screen_text(d)
    )

    click(browser, browser.find_element(By.CSS_SELECTOR, '[data-console="disconnect"]'))
    wait(browser, 10).until(
        lambda d: "Disconnected" in d.find_element(By.CSS_SELECTOR, '[data-console="status"]').text
    )


def test_another_students_socket_for_the_guest_is_refused(browser, consoles, bob, alice_guest, bob_guest):
    login(browser, "bob")
    browser.go(f"/vms/{bob_guest.pk}/")  # his own page, with its CSRF token and the console script
    ticket_url = f"/vms/{bob_guest.pk}/console/ticket/"
    # From bob's browser: a ticket for alice's guest is a 404, and his own ticket on alice's socket closes 4404.
    code = browser.execute_async_script(
        """
        const [aliceTicketUrl, ownTicketUrl, port, alicePk, done] = arguments;
        const csrf = document.getElementById("console").dataset.csrf;
        const post = (url) => fetch(url, {method: "POST", headers: {"X-CSRFToken": csrf}});
        post(aliceTicketUrl).then(async (refused) => {
          const own = await (await post(ownTicketUrl)).json();
          const ws = new WebSocket(`ws://${location.hostname}:${port}/ws/console/${alicePk}/?ticket=${own.ticket}`);
          ws.onclose = (e) => done([refused.status, e.code]);
        });
        """,
        f"/vms/{alice_guest.pk}/console/ticket/",
        ticket_url,
        consoles,
        alice_guest.pk,
    )
    assert code == [404, 4404]
