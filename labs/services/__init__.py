"""The one place that decides: batches, guest and lab actions, quotas, progress, password resets.

Views call these functions and show a ServiceError's `.message`; jobs
(labs/jobs/) carry out the Tasks they queue. Nothing here runs a command
on a host.
"""

from __future__ import annotations

from labs.roster import RosterEntry, RosterError, parse_roster
from labs.services.accounts import password_reset_refusal, reset_student_password
from labs.services.actions import describe_state, guest_action, lab_action, lab_progress
from labs.services.batch import BatchPreview, BatchResult, create_lab_batch, preview_lab_batch
from labs.services.errors import (
    AccountsToConfirm,
    InvalidAction,
    PreviewChanged,
    QueueUnavailable,
    QuotaExceeded,
    ServiceError,
)
from labs.services.limits import memory_limits
from labs.services.registry import GUEST_ACTIONS, LAB_ACTIONS, allowed_actions
from labs.services.upkeep import enqueue_health_check

__all__ = [
    "GUEST_ACTIONS",
    "AccountsToConfirm",
    "LAB_ACTIONS",
    "BatchPreview",
    "BatchResult",
    "InvalidAction",
    "PreviewChanged",
    "QueueUnavailable",
    "QuotaExceeded",
    "RosterEntry",
    "RosterError",
    "ServiceError",
    "allowed_actions",
    "create_lab_batch",
    "describe_state",
    "enqueue_health_check",
    "guest_action",
    "lab_action",
    "lab_progress",
    "memory_limits",
    "parse_roster",
    "password_reset_refusal",
    "preview_lab_batch",
    "reset_student_password",
]
