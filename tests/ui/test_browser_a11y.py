"""Accessibility and layout in headless Chromium at 1366x900, in English and pt-BR (issues 15 and 21).

One crawl visits every page the URL x role matrix (tests/ui/test_url_roles.py) gives a role, as the least
privileged student-side and instructor-side roles that may see it, plus the states the matrix does not reach
(the lab page while provisioning and after, the guest page in each state, forms sent with errors). On each page
it runs axe-core (tests/ui/vendor/axe-core, for tests only), takes a screenshot into var/screenshots/ (the run's
summary prints the folder) and measures whether the page scrolls sideways. A new page with a row in the matrix
is crawled without a change here.

Then keyboard and screen-reader behaviour of the live sections: the focus stays on the control the user is on
while polls pass and while someone else changes a VM, the failed submit lands on the error summary, and the
persistent status region says what changed.
"""

# The shared fixtures (browser, cast) are imported by name, and tests take them as arguments.
# ruff: noqa: F811
from __future__ import annotations

import base64
import re
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from labs.models import Guest, Host, Task
from tests.ui.conftest import SCREENSHOTS, set_state
from tests.ui.test_browser import browser, chrome, click, wait  # noqa: F401
from tests.ui.test_url_roles import TABLE, alice_key, alice_token, cast  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
WIDTH, HEIGHT = 1366, 900
LANGUAGES = ("en", "pt-br")
# Each page is seen by the least privileged role of each side that may open it (what differs between roles is
# the navigation and the instructors' extras).
SIDES = (("anonymous", "owner", "other_student"), ("other_instructor", "lab_instructor", "admin"))
# Pages that are files or fragments, not pages a person reads.
NOT_PAGES = ("_csv", "_json", "_live", "healthz", "whoami", "lab_sparklines", "api:", "guest_usage", "host_usage")
# Serious and critical only, as issue 21 asks; the rest is advice.
FAILING_IMPACTS = ("serious", "critical")
PYTHON_DICT = re.compile(r"\{'\w+': |\[\{'")


@pytest.fixture(scope="module")
def driver():
    d = chrome(WIDTH, HEIGHT)
    # The page's viewport itself is 1366x900, whatever the window's frame takes.
    metrics = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    d.set_script_timeout(60)
    yield d
    d.quit()


def sign_in(browser, user, language: str = "en") -> None:
    """A session made on the server side (no login form per role), and the language cookie."""
    browser.go("/healthz")
    browser.delete_all_cookies()
    if user is not None:
        client = Client()
        client.force_login(user)
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        browser.add_cookie({"name": settings.SESSION_COOKIE_NAME, "value": session})
    browser.add_cookie({"name": settings.LANGUAGE_COOKIE_NAME, "value": language})


def axe_violations(browser) -> list[str]:
    browser.execute_script(AXE)
    found = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ["violations"]}).then(
          (r) => done(r.violations.map(
            (v) => [v.impact, v.id, v.help, v.nodes.slice(0, 3).map((n) => n.target.join(" "))])),
          (e) => done([["critical", "axe-error", String(e), []]]));"""
    )
    return [
        f"{rule} ({impact}): {text} at {nodes}" for impact, rule, text, nodes in found if impact in FAILING_IMPACTS
    ]


def scrolls_sideways(browser) -> bool:
    return browser.execute_script("const e = document.documentElement; return e.scrollWidth > e.clientWidth;")


class Crawl:
    """What the crawl saw, page by page."""

    def __init__(self, browser, language: str) -> None:
        self.browser, self.language = browser, language
        self.violations: dict[str, list[str]] = {}
        self.sideways: list[str] = []
        self.pages = 0

    def look(self, name: str) -> None:
        """Check the page now in the browser (a full page only: fragments and files are skipped)."""
        b = self.browser
        if not b.execute_script("return document.contentType === 'text/html' && !!document.querySelector('main');"):
            return
        self.pages += 1
        key = f"{self.language}/{name}"
        # The whole page at the 1366 px viewport's width (at most 4000 px high), not only the first 900 px.
        height = b.execute_script("return document.documentElement.scrollHeight;")
        clip = {"x": 0, "y": 0, "width": WIDTH, "height": min(max(height, HEIGHT), 4000), "scale": 1}
        png = b.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # another run on this machine may have just emptied it
        (SCREENSHOTS / f"{self.language}-{name}.png").write_bytes(base64.b64decode(png["data"]))
        found = axe_violations(b)
        # Words, not a Python dict read aloud (the host page's health panel once printed {'ok': True, ...}).
        if dicts := PYTHON_DICT.findall(b.find_element(By.TAG_NAME, "main").text):
            found.append(f"Python data shown as text: {dicts[:3]}")
        # The xl state letter is explained in words on the page, not only in a title keyboard users cannot reach.
        unexplained = "return !!document.querySelector('.xl-letter') && !document.getElementById('xl-letter-note');"
        if b.execute_script(unexplained):
            found.append("a state letter without the note that explains it")
        if found:
            self.violations[key] = found
        if scrolls_sideways(b):
            width = b.execute_script("return document.documentElement.scrollWidth;")
            self.sideways.append(f"{key} ({b.current_url}): {width} px wide")

    def check_lab_rows(self, name: str) -> None:
        """Every row of the lab's table on one line, and the table no wider than its place."""
        wrapped, wide = self.browser.execute_script(
            """const table = document.getElementById("guest-table");
            const line = parseFloat(getComputedStyle(table).lineHeight) || 24;
            const rows = Array.from(table.tBodies[0].rows, (r) => [r.dataset.guest, r.getBoundingClientRect().height]);
            const box = table.parentElement;
            return [rows.filter(([, h]) => h > 2 * line).map(([g]) => g), box.scrollWidth > box.clientWidth];"""
        )
        if wrapped:
            self.sideways.append(f"{self.language}/{name}: rows on more than one line: {wrapped}")
        if wide:
            self.sideways.append(f"{self.language}/{name}: the lab's table is wider than the page")

    def visit(self, name: str, user, path: str) -> None:
        sign_in(self.browser, user, self.language)
        self.browser.go(path)
        self.look(name)


def _matrix_pages(cast):
    """(name, role, url) of every GET the matrix lets a role open, once per side."""
    for name, rows in TABLE.items():
        if any(part in name for part in NOT_PAGES):
            continue
        for n, (method, args, expected) in enumerate(rows):
            if method != "get":
                continue
            url = reverse(name, args=args(cast["objects"]))
            for side in SIDES:
                role = next((r for r in side if expected[r] == 200), None)
                if role is not None:
                    yield f"{name.replace(':', '-')}-{n}-{role}", role, url


def _states(browser, crawl: Crawl, cast) -> None:
    """The states the matrix does not reach: live pages in each state, forms sent with errors."""
    users, objects = cast["users"], cast["objects"]
    alice_guest, lab = objects["guest"], objects["lab"]
    bob_guest = lab.guests.exclude(pk=alice_guest.pk).get()
    ivy, alice = users["lab_instructor"], users["owner"]
    lab_url, guest_url = reverse("lab_detail", args=[lab.pk]), reverse("guest_detail", args=[alice_guest.pk])
    set_state(alice_guest, "", status=Guest.Status.PENDING)
    set_state(bob_guest, "", status=Guest.Status.PROVISIONING, busy="provision")
    crawl.visit("lab-provisioning", ivy, lab_url)
    Guest.objects.filter(pk=bob_guest.pk).update(last_error="libxl: error: Could not find bridge device xenbr9")
    set_state(bob_guest, "", status=Guest.Status.FAILED)
    set_state(alice_guest, "r")
    crawl.visit("lab-provisioned-one-failed", ivy, lab_url)
    # Names as long as real ones: each row still on one line, and the table within the page.
    User.objects.filter(pk=alice.pk).update(first_name="Maria Aparecida", last_name="dos Santos Oliveira Filha")
    Guest.objects.filter(pk=alice_guest.pk).update(domain_name="redes-de-computa-student123", ip="10.10.100.211")
    Guest.objects.filter(pk=bob_guest.pk).update(last_error="libxl_device.c:1290: device model did not start " * 3)
    Host.objects.update(name="dom0-laboratorio-b", last_seen=timezone.now())
    crawl.visit("lab-long-names", ivy, lab_url)
    crawl.check_lab_rows("lab-long-names")
    # A row's menu open: its items are checked too (axe skips what is hidden).
    crawl.browser.find_element(By.ID, f"actions-{alice_guest.pk}").send_keys(Keys.ENTER)
    wait(crawl.browser, 5).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#lab-live .dropdown-menu.show"))
    crawl.look("lab-row-menu-open")
    states = (("running", "r", ""), ("paused", "p", ""), ("stopped", "", ""), ("busy", "r", "reboot"))
    for state, observed, busy in states:
        set_state(alice_guest, observed, busy=busy)
        if busy:
            Task.objects.create(kind=busy, guest=alice_guest, lab=lab, status=Task.Status.RUNNING, steps_total=3)
        crawl.visit(f"guest-{state}", alice, guest_url)
    crawl.visit("guest-busy-instructor", ivy, guest_url)
    Task.objects.filter(status=Task.Status.RUNNING).update(status=Task.Status.FAILED, error="xl: timed out")
    set_state(alice_guest, "", status=Guest.Status.FAILED)
    crawl.visit("guest-failed", alice, guest_url)
    # A host whose last health check failed on its bridge: the panel says each check in words.
    report = {
        "xen": {"ok": True, "detail": "Xen 4.17.3, 16384 MiB, 15000 MiB free"},
        "volume_group": {"ok": True, "detail": "vg0: 5000 of 20000 MiB free"},
        "bridge": {"ok": False, "detail": "bridge xenbr0 is missing"},
    }
    Host.objects.update(health_ok=False, health_report=report, xen_version="4.17.3", vg_size_mb=20000, vg_free_mb=5000)
    crawl.visit("host-unhealthy", ivy, reverse("host_detail", args=[objects["host"].pk]))
    crawl.visit("hosts-unhealthy", ivy, reverse("host_list"))
    # Forms sent with errors.
    sign_in(crawl.browser, ivy, crawl.language)
    crawl.browser.go(reverse("lab_create"))
    click(crawl.browser, crawl.browser.find_element(By.CSS_SELECTOR, "#lab-batch-form [type=submit]"))
    wait(crawl.browser, 10).until(lambda d: d.find_elements(By.ID, "error-summary"))
    crawl.look("lab-create-errors")
    for name, url, button in (
        ("password-change-errors", reverse("password_change"), "main form [type=submit]"),
        ("ssh-keys-errors", reverse("ssh_keys"), "main form[method=post] [type=submit]"),
    ):
        sign_in(crawl.browser, alice, crawl.language)
        crawl.browser.go(url)
        click(crawl.browser, crawl.browser.find_element(By.CSS_SELECTOR, button))
        wait(crawl.browser, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")
        crawl.look(name)


@pytest.fixture(scope="module")
def screenshots():
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


SIDEWAYS: dict[str, list[str]] = {}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_page_passes_axe(browser, cast, screenshots, language):
    crawl = Crawl(browser, language)
    for name, role, url in _matrix_pages(cast):
        crawl.visit(name, cast["users"][role], url)
    _states(browser, crawl, cast)
    SIDEWAYS[language] = crawl.sideways
    assert crawl.pages > 25, f"only {crawl.pages} pages crawled"
    assert not crawl.violations, "\n".join(f"{k}: {v}" for k, v in crawl.violations.items())


def test_no_page_scrolls_sideways():
    """At 1366 px nothing needs a horizontal scroll bar (measured by the crawl above, in both languages)."""
    assert set(SIDEWAYS) == set(LANGUAGES), "the crawl did not run in every language"
    wide = [page for pages in SIDEWAYS.values() for page in pages]
    assert not wide, "\n".join(wide)


# ---------------------------------------------------------------- keyboard and screen reader


def active_id(browser) -> str:
    return browser.execute_script("return document.activeElement.id;")


def count_swaps(browser, section: str) -> None:
    browser.execute_script(
        "window.__swaps = 0; document.addEventListener('htmx:afterSwap',"
        " (e) => { if (e.target.id === arguments[0]) window.__swaps += 1; });",
        section,
    )


def swaps(browser) -> int:
    return browser.execute_script("return window.__swaps;")


@pytest.fixture
def host_heard(host):
    """A host whose worker answers (a silent one's VMs read "saved (host down)")."""
    Host.objects.filter(pk=host.pk).update(last_seen=timezone.now() + timedelta(hours=1))
    return host


@pytest.fixture
def running_lab(lab, alice_guest, bob_guest, host_heard):
    set_state(alice_guest, "r")
    set_state(bob_guest, "r")
    return lab


def test_focus_on_a_lab_rows_reboot_survives_polls_and_changes(browser, ivy, running_lab, alice_guest, bob_guest):
    set_state(alice_guest, "r", busy="reboot")
    sign_in(browser, ivy)
    browser.go(reverse("lab_detail", args=[running_lab.pk]))
    count_swaps(browser, "lab-live")
    toggle = f"actions-{bob_guest.pk}"
    browser.find_element(By.ID, toggle).send_keys(Keys.ENTER)  # Bootstrap opens the menu
    reboot = browser.find_element(By.ID, f"reboot-{bob_guest.pk}")
    browser.execute_script("arguments[0].focus();", reboot)
    assert active_id(browser) == f"reboot-{bob_guest.pk}"
    # Someone else changes alice's VM while three polls (2 s apart: her VM is busy) pass with the menu open.
    Guest.objects.filter(pk=alice_guest.pk).update(memory_mb=336)
    time.sleep(3 * 2 + 1)
    assert active_id(browser) == f"reboot-{bob_guest.pk}", "the menu's Reboot lost the focus"
    assert browser.find_element(By.ID, f"reboot-{bob_guest.pk}").is_displayed(), "the menu closed under the user"
    # Esc closes the menu and puts the focus on its button; the deferred changes then arrive, the focus stays.
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    assert active_id(browser) == toggle
    wait(browser, 15).until(lambda d: "336 MiB" in d.find_element(By.ID, "lab-live").text)
    assert swaps(browser) >= 1
    for n in range(3):
        before = swaps(browser)
        Guest.objects.filter(pk=alice_guest.pk).update(memory_mb=400 + 8 * n)
        wait(browser, 15).until(lambda d, before=before: swaps(d) > before)
        assert active_id(browser) == toggle, f"the row's menu button lost the focus after swap {n + 1}"


def test_focus_stays_on_a_guest_control_across_a_change_made_elsewhere(browser, alice, lab, alice_guest, host_heard):
    set_state(alice_guest, "r")
    task = Task.objects.create(kind="start", guest=alice_guest, lab=lab, status=Task.Status.SUCCEEDED, log="xl create")
    sign_in(browser, alice)
    browser.go(reverse("guest_detail", args=[alice_guest.pk]))
    count_swaps(browser, "guest-live")
    browser.execute_script("document.getElementById('control-reboot').focus();")
    # The sync loop saw the VM paused (someone paused it from the lab page): Reboot is no longer allowed.
    set_state(alice_guest, "p")
    wait(browser, 15).until(lambda d: swaps(d) >= 1)
    assert "paused" in browser.find_element(By.CSS_SELECTOR, "#guest-live .state-badge").text
    assert active_id(browser) == "control-reboot", "the swap took the focus away"
    held = browser.switch_to.active_element
    assert held.get_attribute("aria-disabled") == "true"
    # The status region, outside the swapped section, says what happened.
    assert "net101-alice: paused" in browser.find_element(By.ID, "live-status").get_attribute("textContent")
    # Leaving it disables it for good; the next Tab goes on from there, not from the top of the page.
    held.send_keys(Keys.TAB)
    assert browser.find_element(By.ID, "control-reboot").get_attribute("disabled") == "true"
    assert browser.execute_script("return document.activeElement.closest('#guest-live') !== null;")
    # The job log is swapped with the state (out of band): a focused "Show" keeps the focus too.
    summary = f"task-show-{task.pk}"
    browser.execute_script("document.getElementById(arguments[0]).focus();", summary)
    before = swaps(browser)
    set_state(alice_guest, "r")
    wait(browser, 15).until(lambda d: swaps(d) > before)
    assert active_id(browser) == summary


def test_status_region_announces_a_change_made_elsewhere(browser, ivy, running_lab, bob_guest):
    sign_in(browser, ivy)
    browser.go(reverse("lab_detail", args=[running_lab.pk]))
    region = browser.find_element(By.ID, "live-status")
    assert region.get_attribute("role") == "status" and region.get_attribute("textContent") == ""
    set_state(bob_guest, "")
    wait(browser, 15).until(lambda d: "bob's VM: stopped" in region.get_attribute("textContent"))
    # The region is the same element: never swapped, so screen readers keep listening to it.
    assert browser.find_element(By.ID, "live-status") == region


def test_failed_new_lab_submit_focuses_the_error_summary(browser, ivy, template, pool):
    sign_in(browser, ivy)
    browser.go(reverse("lab_create"))
    click(browser, browser.find_element(By.CSS_SELECTOR, "#lab-batch-form [type=submit]"))
    wait(browser, 10).until(lambda d: d.find_elements(By.ID, "error-summary"))
    assert active_id(browser) == "error-summary"
    links = browser.find_elements(By.CSS_SELECTOR, "#error-summary a")
    assert links and all(a.get_attribute("href").split("#")[1] for a in links)
    # Each link leads to its field.
    target = links[0].get_attribute("href").split("#")[1]
    links[0].send_keys(Keys.ENTER)
    assert browser.find_element(By.ID, target) is not None


def test_after_an_action_the_focus_is_on_its_message(browser, alice, lab, alice_guest, host_heard):
    set_state(alice_guest, "r")
    sign_in(browser, alice)
    browser.go(reverse("guest_detail", args=[alice_guest.pk]))
    click(browser, browser.find_element(By.ID, "control-reboot"))
    wait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".messages .alert"))
    # The answer, not the top of the page: a screen reader reads it, the next Tab goes on from there.
    assert browser.execute_script("return document.activeElement.classList.contains('messages');")
    assert "Reboot" in browser.switch_to.active_element.text
