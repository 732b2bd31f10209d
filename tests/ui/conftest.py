"""Helpers for the UI tests: guests in a given state, messages of a response."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from labs.models import Guest


def set_state(guest: Guest, observed: str = "r", status: str = Guest.Status.READY, busy: str = "") -> Guest:
    Guest.objects.filter(pk=guest.pk).update(status=status, observed_state=observed, busy_with=busy)
    guest.refresh_from_db()
    return guest


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def running_guest(alice_guest) -> Guest:
    return set_state(alice_guest, "r")
