"""Helpers for the core tests: submit a rendered HTML form the way a browser would."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest


class _FormParser(HTMLParser):
    """Collect the successful controls of the first <form> whose id (or any form, if None) matches."""

    def __init__(self, form_id: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.done = False
        self.data: dict[str, list[str]] = {}
        self._select: str | None = None
        self._select_multiple = False
        self._first_option: str | None = None
        self._textarea: str | None = None

    def _add(self, name: str, value: str) -> None:
        self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.done and (self.form_id is None or a.get("id") == self.form_id):
            self.inside = True
        if not self.inside or "disabled" in a:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self._add(name, a.get("value", "on" if kind in ("checkbox", "radio") else ""))
        elif tag == "select" and name:
            self._select, self._select_multiple, self._first_option = name, "multiple" in a, None
            self.data.setdefault(name, [])
        elif tag == "option" and self._select:
            if self._first_option is None:
                self._first_option = a.get("value", "")
            if "selected" in a:
                self._add(self._select, a.get("value", ""))
        elif tag == "textarea" and name:
            self._textarea = name
            self._add(name, "")

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea][-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select:
            # A single <select> with nothing marked selected submits its first option.
            if not self.data[self._select] and not self._select_multiple and self._first_option is not None:
                self._add(self._select, self._first_option)
            self._select = None
        elif tag == "textarea":
            if self._textarea and self.data[self._textarea][-1].startswith("\n"):
                self.data[self._textarea][-1] = self.data[self._textarea][-1][1:]  # as browsers do
            self._textarea = None
        elif tag == "form" and self.inside:
            self.inside, self.done = False, True


def form_data(html: str, form_id: str | None = None) -> dict[str, list[str]]:
    parser = _FormParser(form_id)
    parser.feed(html)
    assert parser.done, f"no <form id={form_id!r}> in the page"
    return {k: v for k, v in parser.data.items() if v}


@pytest.fixture
def admin_form():
    """form_data(response, form_id): the fields a browser would POST from an admin page."""

    def get(response, form_id: str | None = None) -> dict[str, list[str]]:
        assert response.status_code == 200, response.status_code
        return form_data(response.content.decode(), form_id)

    return get
