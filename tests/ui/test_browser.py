"""The panel in headless Chromium, served by live_server, with real RQ workers on the simulated dom0.

A `manage.py rqworker` and a `manage.py sync_loop` run as subprocesses
against the test database (the pipeline tests' helpers build their
environment), so what the browser shows is what the real jobs did.
Screenshots of the main pages go to test-artifacts/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import django_rq
import pytest
from django.contrib.auth.models import User
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from labs.models import Guest, Lab
from labs.services import create_lab_batch
from tests.conftest import PASSWORD
from tests.pipeline.helpers import roster, start_worker, wait_for, worker_env
from tests.ui.batch_helpers import confirm_preview_in_browser

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def wait(browser, timeout: float, poll_frequency: float = 0.5) -> WebDriverWait:
    """A WebDriverWait that tries again when a navigation or an htmx swap replaced the element it read."""
    return WebDriverWait(
        browser, timeout, poll_frequency=poll_frequency, ignored_exceptions=(StaleElementReferenceException,)
    )


def chrome(width: int = 1280, height: int = 1000) -> webdriver.Chrome:
    """Headless Chromium as the browser tests drive it, one a module."""
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    d = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    d.implicitly_wait(0)
    return d


@pytest.fixture(scope="module")
def driver():
    d = chrome()
    yield d
    d.quit()


@pytest.fixture
def browser(driver, live_server):
    """The shared Chromium, logged out, with `.go(path)` on the live server."""
    driver.delete_all_cookies()
    driver.go = lambda path: driver.get(live_server.url + path)
    yield driver
    driver.delete_all_cookies()


@pytest.fixture
def panel(host, tmp_path):
    """An RQ worker for the host's queue and the state-sync loop, on a simulated dom0."""
    conn = django_rq.get_connection("default")
    conn.flushdb()
    sim_dir = tmp_path / "sim"
    delay = 0.3
    worker = start_worker(sim_dir, "default", host.queue_name, delay=delay, burst=False)
    sync = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "sync_loop", "--interval", "1"],
        cwd=ROOT,
        env=worker_env(sim_dir, delay),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    yield host
    for proc in (sync, worker):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in (sync, worker):
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    conn.flushdb()


def shot(driver, name: str) -> None:
    """A PNG of the whole page, not only the window (Chromium's DevTools protocol)."""
    import base64

    ARTIFACTS.mkdir(exist_ok=True)
    size = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight];"
    )
    png = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size[0], "height": min(size[1], 4000), "scale": 1},
        },
    )
    (ARTIFACTS / f"{name}.png").write_bytes(base64.b64decode(png["data"]))


def login(browser, username: str) -> None:
    browser.go("/login/")
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    # The URL changes when the next page starts to load; callers read that page at once.
    wait(browser, 10).until(
        lambda d: "/login/" not in d.current_url and d.execute_script("return document.readyState") == "complete"
    )


def click(browser, element) -> None:
    """Scroll the element to the middle of the window first (the footer may cover the bottom)."""
    # Bootstrap turns on smooth scrolling; a click during the animation misses.
    browser.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
    element.click()


def mark_page(browser) -> None:
    """Tag the window: the tag survives htmx swaps and is lost on a full page load."""
    browser.execute_script("window.__xenpanel_mark = 'same-page';")


def same_page(browser) -> bool:
    return browser.execute_script("return window.__xenpanel_mark === 'same-page';")


def first_words(browser, css: str) -> list[str]:
    """The first word of each matching element, read in one go (htmx may swap them between reads)."""
    return browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent.trim().split(/\\s+/)[0]);",
        css,
    )


def text_of(browser, css: str) -> str:
    """Text of an element that htmx may swap out while we read it."""
    for _ in range(5):
        try:
            return browser.find_element(By.CSS_SELECTOR, css).text
        except StaleElementReferenceException:
            time.sleep(0.05)
    return ""


def test_instructor_creates_a_batch_and_watches_it_finish(browser, panel, ivy, template, pool, tmp_path):
    csv = tmp_path / "roster.csv"
    csv.write_text(
        "username,full name,e-mail\n" + "".join(f"st{n},Student Number{n},st{n}@example.edu\n" for n in range(1, 6)),
        encoding="utf-8",
    )
    login(browser, "ivy")
    assert browser.current_url.endswith("/labs/")
    browser.go("/labs/new/")
    browser.find_element(By.ID, "id_name").send_keys("Browser lab")
    browser.find_element(By.ID, "id_slug").send_keys("web")
    Select(browser.find_element(By.ID, "id_template")).select_by_visible_text(template.name)
    Select(browser.find_element(By.ID, "id_pool")).select_by_visible_text(str(pool))
    memory = browser.find_element(By.ID, "id_memory_mb")
    memory.clear()
    memory.send_keys("256")
    browser.find_element(By.ID, "id_roster_file").send_keys(str(csv))
    shot(browser, "lab-create")
    click(browser, browser.find_element(By.CSS_SELECTOR, "#lab-batch-form [type=submit]"))
    confirm_preview_in_browser(browser, [], wait, click, shot)

    wait(browser, 20).until(lambda d: "/accounts/" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "main table tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == [f"st{n}" for n in range(1, 6)]
    assert browser.find_element(By.LINK_TEXT, "Download as CSV").get_attribute("download") == "web-accounts.csv"
    shot(browser, "lab-accounts")

    click(browser, browser.find_element(By.LINK_TEXT, "Go to the lab"))
    wait(browser, 10).until(lambda d: d.find_elements(By.ID, "lab-live"))
    mark_page(browser)
    bar = "#lab-live [role=progressbar]"
    seen = set()

    def finished(d) -> bool:
        try:
            el = d.find_element(By.CSS_SELECTOR, bar)
            seen.add(el.get_attribute("data-done"))
            return el.get_attribute("data-done") == "5" and el.get_attribute("data-total") == "5"
        except StaleElementReferenceException:
            return False

    try:
        wait(browser, 90, poll_frequency=0.2).until(finished)
    except TimeoutException:
        shot(browser, "lab-detail-timeout")
        rows = Guest.objects.values_list("domain_name", "status", "observed_state", "busy_with", "last_error")
        raise AssertionError(f"bar stuck; seen {seen}; guests {list(rows)}") from None
    assert same_page(browser), "the progress bar must update without a full page reload"
    assert len(seen) > 1, f"the bar should have moved while we watched: {seen}"
    assert "5 of 5 VMs ready" in text_of(browser, "#lab-live")
    wait(browser, 20).until(
        lambda d: (
            [c.text.split()[0] for c in d.find_elements(By.CSS_SELECTOR, "#lab-live td.guest-state")]
            == ["running"] * 5
        )
    )
    shot(browser, "lab-detail")
    assert Lab.objects.get(slug="web").guests.filter(status="ready").count() == 5

    browser.go("/labs/")
    assert "Browser lab" in browser.find_element(By.TAG_NAME, "main").text
    shot(browser, "lab-list")
    browser.go("/hosts/")
    assert "MiB free of" in browser.find_element(By.TAG_NAME, "main").text
    shot(browser, "hosts")


@pytest.fixture
def provisioned(panel, ivy, alice, bob, template, pool):
    """alice's and bob's guests, provisioned by the worker and running."""
    create_lab_batch(ivy, template, pool, roster("alice", "bob"), memory_mb=256, slug="net")
    wait_for(
        lambda: Guest.objects.filter(status="ready", observed_state__in=("r", "b"), busy_with="").count() == 2,
        timeout=60,
        interval=0.2,
    )
    return {g.student.username: g for g in Guest.objects.select_related("student")}


def test_student_sees_own_vm_and_reboots_it(browser, provisioned):
    login(browser, "alice")
    assert browser.current_url.endswith("/vms/")
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "net-alice" in main and "net-bob" not in main
    assert browser.find_elements(By.LINK_TEXT, "Labs") == []
    shot(browser, "my-vms")

    click(browser, browser.find_element(By.LINK_TEXT, "net-alice"))
    wait(browser, 10).until(lambda d: d.find_elements(By.ID, "guest-live"))
    assert text_of(browser, "#guest-live .state-badge").startswith("running")
    # A student has no shell on dom0: no `xl console` line, but the SSH card.
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "xl console" not in main and "SSH" in main
    shot(browser, "guest")

    click(browser, browser.find_element(By.XPATH, "//section[@id='guest-live']//button[normalize-space()='Reboot']"))
    # Queued, not done (issue 15): "Requested:", and the banner gives way to the live state once the job ended.
    banner = "Requested: Reboot of net-alice"
    wait(browser, 10).until(lambda d: banner in d.find_element(By.CSS_SELECTOR, ".messages").text)
    mark_page(browser)
    states = []

    def back_to_running(d) -> bool:
        text = text_of(d, "#guest-live")
        states.append(text.split("\n")[1] if "\n" in text else text)
        badge = text_of(d, "#guest-live .state-badge")
        return badge.startswith("running") and "Working…" not in text and "…" not in badge

    wait(browser, 60, poll_frequency=0.1).until(back_to_running)
    assert same_page(browser), "the state must update through htmx polling, not a reload"
    assert any("Working…" in s or "rebooting" in s or "shutting down" in s for s in states), states
    wait(browser, 10).until(lambda d: not d.find_elements(By.ID, "requested-banner"))
    reboot = browser.find_element(By.XPATH, "//section[@id='guest-live']//button[normalize-space()='Reboot']")
    assert reboot.is_enabled()
    assert not browser.find_element(
        By.XPATH, "//section[@id='guest-live']//button[normalize-space()='Start']"
    ).is_enabled()
    shot(browser, "guest-after-reboot")


def test_student_gets_404_for_another_students_vm(browser, alice, bob_guest):
    login(browser, "alice")
    browser.go(f"/vms/{bob_guest.pk}/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Page not found"
    assert "net101-bob" not in browser.page_source
    shot(browser, "not-found")


def test_hostile_roster_gets_line_errors_and_creates_nothing(browser, ivy, template, pool, host):
    users_before = User.objects.count()
    login(browser, "ivy")
    browser.go("/labs/new/")
    browser.find_element(By.ID, "id_name").send_keys("Hostile")
    Select(browser.find_element(By.ID, "id_template")).select_by_visible_text(template.name)
    Select(browser.find_element(By.ID, "id_pool")).select_by_visible_text(str(pool))
    browser.find_element(By.ID, "id_memory_mb").clear()
    browser.find_element(By.ID, "id_memory_mb").send_keys("256")
    hostile = (
        "ana,Ana Souza,ana@example.edu\n"
        "ana,Ana Again,ana2@example.edu\n"
        "\n"
        "x;$(reboot),Mallory,m@example.edu\n"
        f"long,{'L' * 300},long@example.edu\n"
        "carl,Carl,not-an-email\n"
    )
    # Typing 300 characters key by key is slow; set the value as a paste would.
    area = browser.find_element(By.ID, "id_roster_text")
    browser.execute_script("arguments[0].value = arguments[1];", area, hostile)
    click(browser, browser.find_element(By.CSS_SELECTOR, "#lab-batch-form [type=submit]"))
    wait(browser, 10).until(lambda d: d.find_elements(By.ID, "roster-errors"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#roster-errors tr.roster-error")
    assert [(r.get_attribute("data-line"), r.get_attribute("data-field")) for r in rows] == [
        ("2", "username"),
        ("3", "line"),
        ("4", "username"),
        ("5", "full_name"),
        ("6", "email"),
    ]
    assert "nothing was created" in browser.find_element(By.ID, "roster-errors").text
    shot(browser, "lab-create-errors")
    assert not Lab.objects.exists()
    assert not Guest.objects.exists()
    assert User.objects.count() == users_before


def test_language_switch_to_portuguese(browser, alice, alice_guest):
    Guest.objects.filter(pk=alice_guest.pk).update(status="ready", observed_state="r")
    login(browser, "alice")
    assert browser.find_element(By.TAG_NAME, "h1").text == "My VMs"
    Select(browser.find_element(By.ID, "language-select")).select_by_value("pt-br")
    click(browser, browser.find_element(By.XPATH, "//footer//button[@type='submit']"))
    wait(browser, 10).until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Minhas VMs")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "pt-br"
    browser.go(f"/vms/{alice_guest.pk}/")
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "em execução" in main and "Reiniciar" in main and "passwd root" in main
    shot(browser, "guest-pt-br")
