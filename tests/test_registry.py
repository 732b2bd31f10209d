"""The action registry: every guest and lab action defined once, and everything reads it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from labs.access import Role
from labs.jobs.guest import HANDLERS
from labs.models import Guest, Lab
from labs.services import registry
from labs.services.registry import GUEST_ACTIONS, LAB_ACTIONS, Situation, allowed_actions, situation

ROOT = Path(__file__).resolve().parents[1]


def test_every_guest_action_has_exactly_one_job_handler():
    assert set(HANDLERS) == set(GUEST_ACTIONS)


def test_every_lab_action_queues_a_guest_job():
    for action in LAB_ACTIONS.values():
        assert action.job in GUEST_ACTIONS, action.name


def test_who_may_run_what():
    assert {a.name for a in registry.requestable_actions() if a.role == Role.STUDENT} == {
        "start",
        "shutdown",
        "reboot",
        "destroy",
        "pause",
        "unpause",
        "mem_set",
        "reset",
        "restore",  # "Wake" a VM saved outside class hours (labs.services.class_hours)
        "savepoint",
        "savepoint_return",
        "savepoint_delete",
    }
    assert GUEST_ACTIONS["teardown"].role == Role.INSTRUCTOR
    assert not GUEST_ACTIONS["provision"].requestable


def test_destructive_actions_ask_first():
    assert {a.name for a in GUEST_ACTIONS.values() if a.confirm} == {
        "destroy",
        "reset",
        "teardown",
        "savepoint_return",
        "savepoint_delete",
    }
    assert {a.name for a in LAB_ACTIONS.values() if a.confirm} == {"teardown", "savepoint_return_all", "start_stopped"}


def test_steps_of_the_long_jobs():
    assert registry.steps_total("provision") == 5
    assert registry.steps_total("reset") == 7
    assert registry.steps_total("teardown") == 3
    assert registry.steps_total("reboot") == 1
    assert registry.steps_total("savepoint_return") == 4  # shutdown, remove root, clone, create
    assert registry.steps_total("build_template") == 1  # not a guest action: one step unless its service says


def _guest(status="ready", state="", busy="", lab_status="active"):
    return Guest(status=status, observed_state=state, busy_with=busy, lab=Lab(status=lab_status))


@pytest.mark.parametrize(
    ("guest", "where"),
    [
        (_guest(state="r"), Situation.RUNNING),
        (_guest(state="b"), Situation.RUNNING),
        (_guest(state="p"), Situation.PAUSED),
        (_guest(state="s"), Situation.LEFTOVER),
        (_guest(state="c"), Situation.LEFTOVER),
        (_guest(state=""), Situation.STOPPED),
        (Guest(status="ready", observed_state="", desired_state="saved", lab=Lab(status="active")), Situation.SAVED),
        (_guest(status="failed", state="r"), Situation.FAILED),
        (_guest(state="r", lab_status="tearing_down"), Situation.LAB_CLOSING),
        (_guest(state="r", busy="reboot"), None),
        (_guest(status="provisioning"), None),
    ],
)
def test_situation(guest, where):
    assert situation(guest) == where


def test_allowed_actions_come_from_the_rows():
    assert allowed_actions(_guest(state="")) == {
        "start",
        "reset",
        "teardown",
        "savepoint",
        "savepoint_return",
        "savepoint_delete",
    }
    assert allowed_actions(_guest(state="r", lab_status="tearing_down")) == {"teardown"}


def test_labels_are_translated():
    from django.utils import translation

    with translation.override("pt-br"):
        assert str(GUEST_ACTIONS["reboot"].label) == "Reiniciar"
        assert registry.log_name("reset") != "reset to template"
        assert registry.busy_word("reboot") != "rebooting"


def test_state_letters_are_named_not_spelled_out():
    # xl letters are Xl constants everywhere outside the model that defines them.
    spelled = re.compile(r"""\(\s*"r",\s*"b"|in \("s", "c", "d"\)|== "p"\b""")
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "labs").rglob("*.py")
        if "migrations" not in p.parts and "dom0" not in p.parts and spelled.search(p.read_text())
    ]
    assert offenders == []
