"""The batch form's two steps for tests: "Preview the batch", then "Create" with the preview's token (issue 15)."""

from __future__ import annotations

from django.urls import reverse


def preview(client, data: dict, **extra):
    """POST the form for its preview; the response's form holds it (form.preview) or the errors."""
    return client.post(reverse("lab_create"), {**data, "preview": "1"}, **extra)


def confirm(client, previewed, data: dict, follow: bool = False, **extra):
    """POST "Create" with the token and the fields the preview page sent back (roster as text, short name)."""
    form = previewed.context["form"]
    assert form.preview is not None, form.errors
    again = {k: v for k, v in data.items() if k != "roster_file"}
    again.update(
        roster_text=form.data["roster_text"], slug=form.data["slug"], preview_token=form.preview.token, create="1"
    )
    return client.post(reverse("lab_create"), again, follow=follow, **extra)


def create_via_form(client, data: dict, follow: bool = False, **extra):
    """Preview, then create; the response of the second POST."""
    r = preview(client, data, **extra)
    assert r.status_code == 200
    return confirm(client, r, data, follow=follow, **extra)


def confirm_preview_in_browser(browser, existing: list[str], wait, click, shot=None) -> None:
    """In Chromium, after "Preview the batch": check the existing accounts the preview lists, then "Create"."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of

    wait(browser, 30).until(lambda d: d.find_elements(By.ID, "create-batch"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#preview-vms tr.existing-account")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == existing
    if shot is not None:
        shot(browser, "lab-create-preview")
    button = browser.find_element(By.ID, "create-batch")
    click(browser, button)
    wait(browser, 60).until(staleness_of(button))  # the next page, whatever it says
