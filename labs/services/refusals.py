"""Refused requests on the audit trail: every refusal leaves a "refused" row naming who, what and why.

The lab's audit trail (labs.access.audit_for_lab) shows them to its instructors. Refusals made inside a
service (state, memory limits and quotas, roles) and before one is asked (a page's or the API's missing
confirmation, a console ticket that was not valid) all come through here.
"""

from __future__ import annotations

from labs.models import AuditEvent, Guest, Lab


def refused(actor, action: str, message: str, *, guest: Guest | None = None, lab: Lab | None = None) -> None:
    """Record that `actor` (None: the panel itself) was refused `action` on `guest`, or on the whole `lab`."""
    if guest is None and lab is None:
        return
    AuditEvent.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        action=action,
        guest=guest,
        lab=guest.lab if guest is not None else lab,
        target=guest.domain_name if guest is not None else lab.slug if lab is not None else "",
        result=AuditEvent.Result.REFUSED,
        message=str(message),
    )
