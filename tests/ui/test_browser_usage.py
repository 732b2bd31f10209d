"""Usage charts in headless Chromium at 1366 px: the lab page flags the spinning VM, sorts by CPU and draws a
sparkline per VM (again after a poll swaps in a changed table); the guest page draws its four charts and switches
range; the host page stacks the guests.

The samples are the sync's (labs.services.usage.record fed tick by tick up to now, as tests/ui/
test_usage_pages.py does): bob's VM has spun at 97 % for 12 minutes, alice's idles.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.ui.conftest import set_state
from tests.ui.test_browser import browser, click, driver, login, shot, text_of, wait  # noqa: F401
from tests.ui.test_usage_pages import feed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Seconds a wait allows, generous for a loaded 2-core CI machine: a wait ends as soon as its condition holds, and
# the poll's wait also spans one 5 s poll period (POLL_IDLE).
LOADED = 30


@pytest.fixture
def spinning(alice_guest, bob_guest, host, driver):  # noqa: F811
    set_state(alice_guest, "b")
    set_state(bob_guest, "r")
    feed(host, {alice_guest: 0.01, bob_guest: 0.97})
    driver.set_window_size(1366, 900)
    yield alice_guest, bob_guest
    driver.set_window_size(1280, 1000)


def rows(browser) -> list[str]:  # noqa: F811
    return [r.get_attribute("data-guest") for r in browser.find_elements(By.CSS_SELECTOR, "#guest-table tbody tr")]


def canvases(browser, css: str) -> int:  # noqa: F811
    return len(browser.find_elements(By.CSS_SELECTOR, f"{css} canvas"))


def test_the_lab_page_flags_the_spinning_vm(browser, spinning, ivy, lab):  # noqa: F811
    alice_guest, bob_guest = spinning
    login(browser, "ivy")
    browser.go(f"/labs/{lab.pk}/")
    wait(browser, LOADED).until(lambda d: d.find_elements(By.ID, "runaways"), "the lab page's #runaways alert")
    flagged = text_of(browser, "#runaways")
    assert f"1 VM has used more than 90 % CPU for 10 minutes: {bob_guest.domain_name}." in flagged
    bob_row = f'#guest-table tr[data-guest="{bob_guest.domain_name}"]'
    alice_row = f'#guest-table tr[data-guest="{alice_guest.domain_name}"]'
    assert "over 90 % for 10 min" in text_of(browser, bob_row) and "97 %" in text_of(browser, bob_row)
    assert "over 90 %" not in text_of(browser, alice_row)
    # uPlot draws a sparkline in each row, from the lab's sparklines JSON.
    wait(browser, LOADED).until(
        lambda d: canvases(d, f"{bob_row} .xp-spark") and canvases(d, f"{alice_row} .xp-spark"),
        "a sparkline canvas in both rows",
    )
    assert rows(browser) == [alice_guest.domain_name, bob_guest.domain_name]  # by student

    click(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "CPU (10 min)"))
    wait(browser, LOADED).until(
        lambda d: "sort=cpu" in d.current_url and rows(d)[:1] == [bob_guest.domain_name],
        "the page sorted by CPU, bob's VM first",
    )
    assert rows(browser) == [bob_guest.domain_name, alice_guest.domain_name]
    # A poll swaps the table only when the lab changed: an unchanged lab gets a 204, and with no sync here only a
    # new minute (the CPU window moving) would change it. So alice's VM changes state; the sparklines come back.
    browser.execute_script("document.getElementById('guest-table').dataset.old = '1';")
    set_state(alice_guest, "r")
    wait(browser, LOADED).until(
        lambda d: (
            d.execute_script("return !document.getElementById('guest-table').dataset.old")
            and canvases(d, f"{bob_row} .xp-spark")
            and canvases(d, f"{alice_row} .xp-spark")
        ),
        "a poll's new #guest-table, with a sparkline canvas in both rows",
    )
    assert rows(browser) == [bob_guest.domain_name, alice_guest.domain_name]  # still sorted
    shot(browser, "usage-lab-runaway")


def test_the_guest_page_draws_its_charts_and_switches_range(browser, spinning, ivy, host):  # noqa: F811
    _, bob_guest = spinning
    login(browser, "ivy")
    browser.go(f"/vms/{bob_guest.pk}/")
    wait(browser, LOADED).until(lambda d: canvases(d, "#usage .xp-chart") == 4, "the guest's four charts")
    assert "CPU: average 97 %, peak 97 % at" in text_of(browser, '[data-summary="cpu"]')
    legend = text_of(browser, '#usage [data-chart="cpu"] .u-legend')
    assert "average" in legend and "peak" in legend
    shot(browser, "usage-guest")

    click(browser, browser.find_element(By.XPATH, "//div[@id='usage']//button[normalize-space()='30 days']"))
    wait(browser, LOADED).until(
        lambda d: (
            d.find_element(By.XPATH, "//div[@id='usage']//button[normalize-space()='30 days']").get_attribute(
                "aria-pressed"
            )
            == "true"
            and canvases(d, "#usage .xp-chart") == 4
        ),
        "the 30-day card pressed, with its four charts",
    )
    assert "CPU: average 97 %" in text_of(browser, '[data-summary="cpu"]')

    browser.go(f"/hosts/{host.pk}/")
    wait(browser, LOADED).until(lambda d: canvases(d, "#usage .xp-chart") == 2, "the host's two charts")
    assert "Host CPU: average" in text_of(browser, '[data-summary="host-cpu"]')
    assert bob_guest.domain_name in text_of(browser, '#usage [data-chart="host-cpu"] .u-legend')
    shot(browser, "usage-host")
