"""Acting inside a testbed guest through its serial console, with only a dom0 runner (tests and benchmarks).

The busybox guest has a root shell on hvc0: what is written to the console's pty in dom0 is what
`xl console` would send, and xenconsoled logs what the guest prints. Each command prints an answer built
by shell arithmetic ($((1000+7)) prints 1007), so the echo of the typed line never matches it.

A counter that keeps counting is what tells a process that survived `xl save` + `xl restore` from one
started again: `start_counter` runs a loop writing 1, 2, 3... to /root/counter, once a second.
"""

from __future__ import annotations

import itertools
import re
import time

from labs.dom0.runner import Runner

from .testbed import _WAIT_FOR_MARKER, _console_path

COUNTER_LOOP = "(i=0; while :; do i=$((i+1)); echo $i > /root/counter; sleep 1; done) >/dev/null 2>&1 &"
_tags = itertools.count(1000)


def type_line(runner: Runner, name: str, line: str) -> None:
    """Type `line` and Enter into the guest's serial console."""
    script = (
        'domid=$(xl domid "$1") && tty=$(xenstore-read "/local/domain/$domid/console/tty") && '
        'printf "%s\\n" "$2" > "$tty"'
    )
    runner.run(["sh", "-c", script, "type", name, line])


def console_log(runner: Runner, name: str) -> str:
    return runner.run(["cat", _console_path(name)], check=False).stdout


def wait_marker(runner: Runner, name: str, marker: str, count: int = 1, timeout: float = 300) -> str:
    """Wait inside dom0 (one process, no ssh per poll) until `marker` has been printed `count` times; its line."""
    result = runner.run(
        ["python3", "-c", _WAIT_FOR_MARKER, _console_path(name), marker, str(count), str(timeout)],
        check=False,
        timeout=timeout + 120,
    )
    if result.rc != 0:
        tail = "\n".join(console_log(runner, name).splitlines()[-20:])
        raise AssertionError(f"{marker!r} not seen {count} time(s) on {name}'s console in {timeout:g} s:\n{tail}")
    return result.stdout.strip().splitlines()[-1]


def ask(runner: Runner, name: str, command: str, timeout: float = 300) -> str:
    """Run `command` (whose output ends the line) in the guest's shell; the line it printed.

    Typed again when no answer comes (three tries in all, each a third of `timeout`): a line typed while
    the guest's shell is still starting after a boot is lost. The command only prints, so a repeat is safe.
    """
    tag = next(_tags)
    marker = f"ANS{tag}"
    seen = console_log(runner, name).count(marker)
    for attempt in range(3):
        type_line(runner, name, f"echo {command} ANS$(({tag - 1}+1))")
        try:
            return wait_marker(runner, name, marker, count=seen + 1, timeout=timeout / 3)
        except AssertionError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def start_counter(runner: Runner, name: str) -> int:
    """Start the counter loop and return its first value read; started again if the line was lost."""
    for _ in range(3):
        type_line(runner, name, COUNTER_LOOP)
        time.sleep(3)
        value = counter(runner, name)
        if value > 0:
            return value
    raise AssertionError(f"the counter loop did not start in {name}")


def counter(runner: Runner, name: str, timeout: float = 300) -> int:
    """The counter's value now (what the loop last wrote)."""
    line = ask(runner, name, "CNT-$(cat /root/counter 2>/dev/null || echo 0)-", timeout)
    m = re.search(r"CNT-(\d+)- ANS", line)
    if m is None:
        raise AssertionError(f"no counter in {line!r}")
    return int(m.group(1))
