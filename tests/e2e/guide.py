"""deploy/dom0-setup.md as something a test can run: its fenced blocks, their tags, and a runner.

Tags (the guide's introduction says the same to its readers):
  sh settings  the reader's values; the testbed substitutes its own (every name it sets must exist here)
  sh dom0      run on the dom0; the testbed runs it as written unless a `sh testbed` block follows
  sh panel     run on the panel server, from the project directory with the panel's environment
  sh testbed   what the testbed runs instead of the block just before it, in the same place

Other guides written the same way name their own places and stand-in tag (parse's keywords):
deploy/README.md's panel server steps are `sh server` blocks with `sh test` stand-ins.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "deploy" / "dom0-setup.md"
TAGS = ("settings", "dom0", "panel", "testbed")
_FENCE = re.compile(r"^```sh (\w+)\n(.*?)^```\s*$", re.S | re.M)
_ASSIGN = re.compile(r"^([A-Z][A-Z0-9_]*)=(\S*)", re.M)


class GuideError(AssertionError):
    """The guide is malformed, or one of its blocks failed on the testbed."""


@dataclass(frozen=True)
class Block:
    tag: str
    code: str
    line: int  # where the block starts in the file, for messages


@dataclass(frozen=True)
class Step:
    """One documented block and what the testbed runs for it (itself or its stand-in)."""

    where: str  # "dom0" or "panel"
    documented: Block
    run: Block

    @property
    def stand_in(self) -> bool:
        return self.run is not self.documented


@dataclass
class Ran:
    step: Step
    rc: int
    output: str
    seconds: float


@dataclass
class Guide:
    settings: dict[str, str]
    steps: list[Step]
    ran: list[Ran] = field(default_factory=list)
    source: str = "deploy/dom0-setup.md"  # for messages
    runs_on: str = "the testbed"

    def dom0_steps(self) -> list[Step]:
        return [s for s in self.steps if s.where == "dom0"]

    def panel_steps(self) -> list[Step]:
        return [s for s in self.steps if s.where == "panel"]

    def script(self, step: Step, values: Mapping[str, str]) -> str:
        unknown = set(values) - set(self.settings)
        if unknown:
            raise GuideError(f"the testbed sets {sorted(unknown)}, which the guide's settings block does not have")
        assigned = {**self.settings, **values}
        preamble = "".join(f"{k}={shlex.quote(v)}\n" for k, v in assigned.items())
        return preamble + step.run.code

    def run(self, steps: list[Step], values: Mapping[str, str], execute: Callable[[str], tuple[int, str]]) -> None:
        """Run each step's block with `execute(script) -> (rc, output)`; the first failure raises."""
        for step in steps:
            started = time.monotonic()
            rc, output = execute(self.script(step, values))
            self.ran.append(Ran(step, rc, output, time.monotonic() - started))
            if rc != 0:
                kind = "stand-in for the block" if step.stand_in else "block"
                raise GuideError(
                    f"{self.source} line {step.run.line}: the {kind} at line {step.documented.line} failed"
                    f" on {self.runs_on} (exit {rc}):\n{step.run.code}\n--- output ---\n{output[-3000:]}"
                )

    def output_of(self, needle: str) -> str:
        """The output of the block that ran and whose code contains `needle`."""
        for ran in self.ran:
            if needle in ran.step.run.code:
                return ran.output
        raise GuideError(f"no block containing {needle!r} has run")


def parse(
    text: str | None = None,
    *,
    path: Path = GUIDE,
    places: tuple[str, ...] = ("dom0", "panel"),
    stand_in: str = "testbed",
    runs_on: str = "the testbed",
) -> Guide:
    """The guide at `path` (or `text`): `sh <place>` steps, each optionally followed by a `sh <stand_in>` block."""
    text = path.read_text(encoding="utf-8") if text is None else text
    tags = ("settings", *places, stand_in)
    blocks = [Block(m.group(1), m.group(2), text[: m.start()].count("\n") + 1) for m in _FENCE.finditer(text)]
    bad = [b for b in blocks if b.tag not in tags]
    if bad:
        raise GuideError(f"unknown block tag(s): {[(b.tag, b.line) for b in bad]}")
    settings_blocks = [b for b in blocks if b.tag == "settings"]
    if len(settings_blocks) != 1:
        raise GuideError("the guide needs exactly one `sh settings` block")
    settings = {m.group(1): m.group(2) for m in _ASSIGN.finditer(settings_blocks[0].code)}
    steps: list[Step] = []
    for i, block in enumerate(blocks):
        if block.tag in ("settings", stand_in):
            if block.tag == stand_in and (i == 0 or blocks[i - 1].tag not in places):
                raise GuideError(
                    f"line {block.line}: a `sh {stand_in}` block must follow a {' or '.join(places)} block"
                )
            continue
        follower = blocks[i + 1] if i + 1 < len(blocks) else None
        run = follower if follower is not None and follower.tag == stand_in else block
        steps.append(Step(block.tag, block, run))
    source = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    return Guide(settings, steps, source=source, runs_on=runs_on)


def bash_argv(script: str) -> list[str]:
    # The options go inside the script: bash run by sshd reads /etc/bash.bashrc
    # first, which trips over `-u` (PS1 is unset).
    return ["bash", "-c", "set -euo pipefail\n" + script]


def run_local(script: str, cwd: Path, env: Mapping[str, str], timeout: float = 600) -> tuple[int, str]:
    p = subprocess.run(
        bash_argv(script),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return p.returncode, p.stdout + p.stderr
