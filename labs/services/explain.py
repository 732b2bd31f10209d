"""A failed job in the right words for the right person.

Students get a plain sentence: what happened, whether retrying may help, and
that the lab's instructors see the details. Instructors and admins get the
raw lines (libxl, LVM) as the job recorded them. The words are chosen from
the raw text: the causes a dom0 reports (labs.dom0.toolstack and lvm
classify the same lines), a job lost with its worker, a host back without
the VM; anything else is said as "the host reported an error".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy


@dataclass(frozen=True)
class _Cause:
    pattern: re.Pattern[str]
    what: Promise  # what happened, for a student
    retry_helps: bool  # whether trying again may work without anyone fixing the host


_CAUSES = (
    _Cause(
        re.compile(r"bridge", re.I),
        gettext_lazy("The VM could not be connected to the lab's network on its host."),
        False,
    ),
    _Cause(
        re.compile(
            r"out of memory|not enough (free )?memory|cannot allocate memory|insufficient memory"
            r"|failed to free memory",
            re.I,
        ),
        gettext_lazy("The host did not have enough free memory for the VM."),
        True,
    ),
    _Cause(
        re.compile(r"insufficient free space|no space left|thin pool .*full", re.I),
        gettext_lazy("The host ran out of disk space for the VM."),
        False,
    ),
    _Cause(
        re.compile(r"timed? ?out|timeout|didn't acknowledge", re.I),
        gettext_lazy("The host took too long to answer."),
        True,
    ),
    _Cause(
        re.compile(r"worker running this job stopped|disappeared from the queue|came back without this VM", re.I),
        gettext_lazy("The job was interrupted before it finished (the host or its worker restarted)."),
        True,
    ),
)
_OTHER = _Cause(re.compile(""), gettext_lazy("The host reported an error while working on the VM."), True)


def _cause(raw: str) -> _Cause:
    return next((c for c in _CAUSES if c.pattern.search(raw)), _OTHER)


def plain_failure(raw: str) -> str:
    """The student's sentence for a failure whose raw text is `raw`."""
    cause = _cause(raw)
    if cause.retry_helps:
        retry = _("Trying again may help; if it fails again, ask the lab's instructors.")
    else:
        retry = _("Trying again will not help until the host is fixed.")
    return " ".join((str(cause.what), retry, _("The lab's instructors see the details.")))


def for_viewer(raw: str, sees_raw: bool) -> str:
    """`raw` for an instructor or admin (`sees_raw`), its plain sentence for anyone else ("" stays "")."""
    return raw if sees_raw or not raw else plain_failure(raw)
