"""The new-batch form in headless Chromium: the preview lists existing accounts before the lab exists."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from labs.models import AuditEvent, Lab
from tests.ui.batch_helpers import confirm_preview_in_browser
from tests.ui.test_browser import browser, click, driver, login, shot, wait  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def confirm_existing_accounts(browser, usernames: list[str]) -> None:  # noqa: F811
    """After "Preview the batch": check the existing accounts the preview lists are these, and create the lab."""
    confirm_preview_in_browser(browser, usernames, wait, click)


def test_existing_accounts_are_confirmed_then_enrolled(browser, ivy, alice, template, pool, host):  # noqa: F811
    login(browser, "ivy")
    browser.go("/labs/new/")
    browser.find_element(By.ID, "id_name").send_keys("Confirmed")
    browser.find_element(By.ID, "id_slug").send_keys("conf")
    Select(browser.find_element(By.ID, "id_template")).select_by_visible_text(template.name)
    Select(browser.find_element(By.ID, "id_pool")).select_by_visible_text(str(pool))
    memory = browser.find_element(By.ID, "id_memory_mb")
    memory.clear()
    memory.send_keys("256")
    roster = "alice,Alice Other,alice@example.edu\nana,Ana Souza,ana@example.edu\n"
    browser.execute_script("arguments[0].value = arguments[1];", browser.find_element(By.ID, "id_roster_text"), roster)
    click(browser, browser.find_element(By.CSS_SELECTOR, "#lab-batch-form [type=submit]"))
    wait(browser, 30).until(lambda d: d.find_elements(By.ID, "existing-accounts"))
    assert "1 account on the roster already exists" in browser.find_element(By.ID, "existing-accounts").text
    # The roster's name for alice is not applied: the preview says so.
    assert "kept as Alice" in browser.find_element(By.ID, "preview-vms").text
    # The preview's wide table scrolls inside its box, not the page (1366 px is the screen).
    browser.set_window_size(1366, 900)
    assert not browser.execute_script("const e = document.documentElement; return e.scrollWidth > e.clientWidth;")
    assert not Lab.objects.exists()
    shot(browser, "lab-create-existing-accounts")
    confirm_existing_accounts(browser, ["alice"])
    # ana is new: her password is shown once; alice keeps hers.
    wait(browser, 30).until(lambda d: "/accounts/" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "main table tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == ["ana"]
    lab = Lab.objects.get(slug="conf")
    assert sorted(lab.guests.values_list("student__username", flat=True)) == ["alice", "ana"]
    assert AuditEvent.objects.get(action="enrol_account").target == "alice"


def test_memory_follows_the_template_until_typed(browser, ivy, template, pool, host):  # noqa: F811
    from labs.models import LabTemplate

    big = LabTemplate.objects.create(
        name="zz-big", rootfs_path="/big", kernel="/k", ramdisk="/r", default_memory_mb=768, max_memory_mb=1024
    )
    login(browser, "ivy")
    browser.go("/labs/new/")
    memory = browser.find_element(By.ID, "id_memory_mb")
    assert memory.get_attribute("value") == "256"  # the first template's (debian-12)
    Select(browser.find_element(By.ID, "id_template")).select_by_visible_text(big.name)
    assert memory.get_attribute("value") == "768"
    memory.clear()
    memory.send_keys("512")
    Select(browser.find_element(By.ID, "id_template")).select_by_visible_text(template.name)
    assert memory.get_attribute("value") == "512"  # what the instructor typed stays
