"""A lab's audit trail for its instructors: who did what to which VM, and what the panel refused.

`labs.access.audit_for_lab` says whose rows these are; a stranger to the lab gets 404 from
`get_lab_for_user`, as on every lab page.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from labs.access import audit_for_lab, get_lab_for_user
from labs.models import AuditEvent

EVENTS_PER_PAGE = 50


@login_required
def lab_audit(request: HttpRequest, pk: int) -> HttpResponse:
    lab = get_lab_for_user(request, pk)
    events = audit_for_lab(request.user, lab).select_related("actor", "guest").order_by("-created_at", "-pk")
    result = request.GET.get("result", "")
    if result in AuditEvent.Result.values:
        events = events.filter(result=result)
    else:
        result = ""
    page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    ctx = {"lab": lab, "page": page, "result": result, "results": AuditEvent.Result.choices}
    return render(request, "labs/lab_audit.html", ctx)
