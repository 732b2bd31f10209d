"""Host pages: a thin pool's fill in words (not colour alone), in English and Portuguese."""

from __future__ import annotations

import pytest
from django.urls import reverse


def _report(data: float | None, metadata: float | None = None) -> dict:
    check = {"ok": data is not None and data < 90, "detail": "..."}
    if data is not None:
        check.update(data_percent=data, metadata_percent=metadata)
    return {"thin_pool": check}


@pytest.fixture
def thin_host(host):
    host.thin_pool = "pool0"
    host.save()
    return host


def _pages(client, host, **headers) -> list[str]:
    return [
        client.get(reverse("host_list"), **headers).content.decode(),
        client.get(reverse("host_detail", args=[host.pk]), **headers).content.decode(),
    ]


def _pages_with_fill(client, ivy, host, data, metadata=None, **headers) -> list[str]:
    """The host list and detail as ivy sees them after a health check that read this fill."""
    host.health_report = _report(data, metadata)
    host.save()
    client.force_login(ivy)
    return _pages(client, host, **headers)


def test_fill_below_the_threshold(client, ivy, thin_host):
    for body in _pages_with_fill(client, ivy, thin_host, 42.0, 7.0):
        assert "Thin pool vg0/pool0: 42 % data, 7 % metadata used" in body
        assert "nearly full" not in body


def test_nearly_full_pool_says_so_in_words(client, ivy, thin_host):
    for body in _pages_with_fill(client, ivy, thin_host, 93.5, 20.0):
        assert "Thin pool vg0/pool0: 93.5 % data, 20 % metadata used" in body
        assert "nearly full (90 % or more): no new thin clones" in body


def test_missing_metadata_and_unread_pool(client, ivy, thin_host):
    body = _pages_with_fill(client, ivy, thin_host, 12.0)[0]
    assert "Thin pool vg0/pool0: 12 % data used (metadata not reported)" in body
    # The check failed: the fill is unknown, not zero.
    for body in _pages_with_fill(client, ivy, thin_host, None):
        assert "Thin pool vg0/pool0: fill not reported yet." in body


def test_host_without_a_thin_pool_shows_none(client, ivy, host):
    for body in _pages_with_fill(client, ivy, host, 95.0, 1.0):
        assert "Thin pool" not in body


def test_fill_in_portuguese(client, ivy, thin_host):
    for body in _pages_with_fill(client, ivy, thin_host, 93.5, 20.0, HTTP_ACCEPT_LANGUAGE="pt-BR"):
        assert "Thin pool vg0/pool0: 93,5 % dos dados e 20 % dos metadados usados" in body
        assert "quase cheio (90 % ou mais): nenhum clone thin novo" in body
