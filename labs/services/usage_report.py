"""A lab's usage report: what a department asks for at the end of term.

Per student: VM-hours (their VMs seen running or paused), CPU-hours, peak
memory, and hours in the browser console. The first three come from
UsageTotal (labs.services.usage keeps it each minute, and it outlives the
guest); console-hours from the console's audit rows (console_close, whose
message says "open for N s") of the student's own sessions in the lab.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from labs.models import AuditEvent, Lab, UsageTotal

_CONSOLE_SECONDS = re.compile(r"open for (\d+(?:\.\d+)?) s")


@dataclass
class ReportRow:
    username: str
    full_name: str
    vms: int = 0
    vm_hours: float = 0.0
    cpu_hours: float = 0.0
    peak_memory_mb: int = 0
    console_hours: float = 0.0


def lab_report(lab: Lab) -> list[ReportRow]:
    """Per student of the lab: VM-hours (running or paused), CPU-hours, peak memory, hours in the browser console.

    From UsageTotal (kept after a VM is deleted) and the console's audit rows
    (console_close, "open for N s") of the student's own sessions in the lab.
    """
    rows: dict[int, ReportRow] = {}

    def row(user: Any) -> ReportRow:
        if user.pk not in rows:
            rows[user.pk] = ReportRow(user.username, user.get_full_name())
        return rows[user.pk]

    for g in lab.guests.select_related("student"):
        row(g.student)
    for t in UsageTotal.objects.filter(lab=lab).select_related("student"):
        r = row(t.student)
        r.vms += 1
        r.vm_hours += t.run_seconds / 3600
        r.cpu_hours += t.cpu_seconds / 3600
        r.peak_memory_mb = max(r.peak_memory_mb, t.peak_memory_mb)
    closes = AuditEvent.objects.filter(lab=lab, action="console_close", actor__isnull=False).select_related("actor")
    owners = set(lab.guests.values_list("student_id", flat=True)) | set(
        UsageTotal.objects.filter(lab=lab).values_list("student_id", flat=True)
    )
    for event in closes:
        m = _CONSOLE_SECONDS.search(event.message)
        if m and event.actor_id in owners:
            row(event.actor).console_hours += float(m.group(1)) / 3600
    return sorted(rows.values(), key=lambda r: r.username)
