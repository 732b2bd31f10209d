"""Helpers for the UI tests: guests in a given state, messages of a response."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.db import connections

from labs.models import Guest

# Where the browser tests put a screenshot of every page (tests/ui/test_browser_a11y.py); the run's summary says so.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
_STARTED = time.time()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    taken = [p for p in SCREENSHOTS.glob("*.png") if p.stat().st_mtime >= _STARTED] if SCREENSHOTS.is_dir() else []
    if taken:
        terminalreporter.write_line(
            f"screenshots: {len(taken)} pages at 1366x900, English and pt-BR, in {SCREENSHOTS}/"
        )


# The browser tests' RQ worker runs in a subprocess and must see the test
# database, so SQLite's test database goes to a file (the same name
# tests/pipeline/conftest.py picks, so running both directories agrees).
_db = connections["default"].settings_dict
if _db["ENGINE"].endswith("sqlite3"):
    _dir = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    _db.setdefault("TEST", {})["NAME"] = os.path.join(_dir, f"xenpanel-test-{os.getpid()}.sqlite3")


def set_state(guest: Guest, observed: str = "r", status: str = Guest.Status.READY, busy: str = "") -> Guest:
    Guest.objects.filter(pk=guest.pk).update(status=status, observed_state=observed, busy_with=busy)
    guest.refresh_from_db()
    return guest


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def running_guest(alice_guest) -> Guest:
    return set_state(alice_guest, "r")
