"""Phase timings and polling for the tests and benchmarks that run on the Xen testbed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager


class Phases:
    """Wall-clock seconds per named phase, in the order they ran (a repeated name adds up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - started

    def line(self, title: str) -> str:
        return timings_line(title, self.seconds)

    def report(self, title: str, timings) -> None:
        """Print the line now (with -s) and add it to the run's terminal summary (`testbed_timings`)."""
        timings.add(title, self.seconds)
        print("\n" + self.line(title))


def timings_line(title: str, seconds: Mapping[str, float]) -> str:
    return f"{title}: " + ", ".join(f"{k}={v:.1f}s" for k, v in seconds.items())


def until(
    check: Callable[[], object],
    what: str,
    timeout: float = 120,
    interval: float = 1.0,
    on_timeout: Callable[[], str] | None = None,
):
    """Poll `check` until it returns something truthy, and return that; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(interval)
