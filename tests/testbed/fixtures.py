"""The session-wide `testbed` fixture: build (cached) + boot once, power off at the end.

Import it into a test module (`from tests.testbed.fixtures import testbed`)
and mark the tests `@pytest.mark.testbed`. There is no skip: when the testbed
cannot be built or booted, every test using it fails with the reason.

dom0 reaches the host's Redis and PostgreSQL at REDIS_IN_DOM0 / POSTGRES_IN_DOM0
(guestfwd rules to the ports of REDIS_URL and DATABASE_URL on 127.0.0.1), so a
worker inside dom0 can later use the same services as the test process.

Timings (build, boot, phases that tests record with `testbed_timings`) are
printed in pytest's terminal summary.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest

from tests.testbed.testbed import Forward, Testbed, build

# The dom0-side address of host services (inside QEMU's user network 10.0.2.0/24).
HOST_FROM_DOM0 = "10.0.2.100"


def _port(url: str | None, default: int) -> int:
    try:
        return (urlsplit(url).port or default) if url else default
    except ValueError:
        return default


def redis_port() -> int:
    return _port(os.environ.get("REDIS_URL"), 6379)


def postgres_port() -> int:
    url = os.environ.get("DATABASE_URL", "")
    return _port(url, 5432) if url.startswith("postgres") else 5432


class _TimingReport:
    """Collects (title, {phase: seconds}) and prints them after the test run."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, dict[str, float]]] = []

    def add(self, title: str, timings: dict[str, float]) -> None:
        self.sections.append((title, dict(timings)))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.sections:
            return
        terminalreporter.section("xen testbed timings (seconds)")
        for title, timings in self.sections:
            terminalreporter.write_line(f"{title}: " + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))


@pytest.fixture(scope="session")
def testbed_timings(pytestconfig) -> _TimingReport:
    report = pytestconfig.pluginmanager.get_plugin("xenpanel-testbed-timings")
    if report is None:
        report = _TimingReport()
        pytestconfig.pluginmanager.register(report, "xenpanel-testbed-timings")
    return report


# Every module that imports the fixture gets a fixture definition of its own,
# and pytest caches session fixtures per definition: without this one shared
# instance, each such module would boot a testbed of its own.
_shared: dict[str, Testbed | BaseException] = {}


@pytest.fixture(scope="session")
def testbed(request, testbed_timings) -> Testbed:
    if "tb" not in _shared:
        _shared["tb"] = _boot(request, testbed_timings)
    tb = _shared["tb"]
    if isinstance(tb, BaseException):
        # A failed boot fails every test that needs it, without booting again.
        raise tb
    return tb


def _boot(request, testbed_timings) -> Testbed | BaseException:
    try:
        build_s = build()
    except Exception as e:
        return e
    testbed_timings.add("build (cached when unchanged)", {"build_s": build_s})
    tb = Testbed(
        forwards=[
            Forward(HOST_FROM_DOM0, redis_port(), redis_port()),
            Forward(HOST_FROM_DOM0, postgres_port(), postgres_port()),
        ]
    )
    # Session finalizers run after the last test, whichever module booted it.
    request.addfinalizer(lambda: testbed_timings.add("dom0 poweroff", {"shutdown_s": tb.shutdown()}))
    try:
        testbed_timings.add("boot, since QEMU start", tb.boot())
    except Exception as e:
        return e
    return tb
