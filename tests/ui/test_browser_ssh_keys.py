"""My SSH keys in headless Chromium: a student pastes a key, sees it listed, and deletes it after confirming."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from labs.models import SshKey
from tests.ui.test_browser import browser, click, driver, login, shot, text_of, wait  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def add_ssh_key(browser, username: str, key: str) -> None:  # noqa: F811
    """`username` pastes `key` on "My SSH keys" (from the top bar) and sees it added, then signs out."""
    login(browser, username)
    click(browser, browser.find_element(By.LINK_TEXT, "My SSH keys"))
    wait(browser, 10).until(lambda d: d.find_elements(By.ID, "ssh-key-form"))
    browser.execute_script("arguments[0].value = arguments[1];", browser.find_element(By.ID, "id_key"), key)
    click(browser, browser.find_element(By.CSS_SELECTOR, "#ssh-key-form [type=submit]"))
    wait(browser, 30).until(lambda d: "added" in d.find_element(By.CSS_SELECTOR, ".messages").text)
    browser.delete_all_cookies()


def test_a_student_adds_and_deletes_a_key(browser, alice, new_ssh_key):  # noqa: F811
    line, _ = new_ssh_key("alice@laptop")
    add_ssh_key(browser, "alice", line)
    key = SshKey.objects.get(user=alice)
    assert key.authorized_keys_line == line

    login(browser, "alice")
    browser.go("/keys/")
    table = text_of(browser, "#ssh-keys")
    assert "alice@laptop" in table and key.fingerprint in table and "ed25519" in table
    shot(browser, "ssh-keys")

    click(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "Delete…"))
    wait(browser, 10).until(lambda d: "Delete the key alice@laptop?" in d.find_element(By.TAG_NAME, "h1").text)
    click(browser, browser.find_element(By.XPATH, "//main//form//button[normalize-space()='Delete the key']"))
    wait(browser, 10).until(lambda d: "deleted" in d.find_element(By.CSS_SELECTOR, ".messages").text)
    assert "You have no SSH keys yet." in browser.find_element(By.TAG_NAME, "main").text
    assert not SshKey.objects.exists()
