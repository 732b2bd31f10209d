"""Fixtures for tests/testbed/ (other directories import them from tests.testbed.fixtures)."""

from __future__ import annotations

from tests.testbed.fixtures import testbed, testbed_timings  # noqa: F401
