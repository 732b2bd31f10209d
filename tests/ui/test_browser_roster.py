"""The new-batch form in headless Chromium: existing accounts on the roster are confirmed before the lab exists."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import Select

from labs.models import AuditEvent, Lab
from tests.ui.test_browser import browser, click, driver, login, shot, wait  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def confirm_existing_accounts(browser, usernames: list[str]) -> None:  # noqa: F811
    """After a roster naming existing accounts was sent: check they are the ones listed, and confirm them."""
    wait(browser, 30).until(lambda d: d.find_elements(By.ID, "confirm-existing"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#existing-accounts tr.existing-account")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == usernames
    button = browser.find_element(By.ID, "confirm-existing")
    click(browser, button)
    wait(browser, 60).until(staleness_of(button))  # the next page, whatever it says


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
    roster = "alice,Alice,alice@example.edu\nana,Ana Souza,ana@example.edu\n"
    browser.execute_script("arguments[0].value = arguments[1];", browser.find_element(By.ID, "id_roster_text"), roster)
    click(browser, browser.find_element(By.CSS_SELECTOR, "#lab-batch-form [type=submit]"))
    wait(browser, 30).until(lambda d: d.find_elements(By.ID, "existing-accounts"))
    assert "1 account on the roster already exists" in browser.find_element(By.ID, "existing-accounts").text
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
