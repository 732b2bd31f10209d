"""The browser console's one HTTP endpoint: a one-time ticket for the guest page's websocket.

The page POSTs here (CSRF token in the header) when the user opens the
console; the ticket is good for TICKET_SECONDS, for this user, guest and
session, and for one socket. The socket itself is served by the ASGI
process (`labs.consumers`), not by gunicorn.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from labs.access import get_guest_for_user
from labs.services import console
from labs.services.errors import QueueUnavailable


@require_POST
@login_required
@never_cache
def console_ticket(request: HttpRequest, pk: int) -> JsonResponse:
    guest = get_guest_for_user(request, pk, related=("host",))
    try:
        ticket = console.issue_ticket(request.user, guest, request.session.session_key)  # type: ignore[arg-type]
    except console.ConsoleRefused as e:
        return JsonResponse({"error": e.message}, status=429)
    except QueueUnavailable as e:
        return JsonResponse({"error": e.message}, status=503)
    return JsonResponse({"ticket": ticket, "seconds": console.TICKET_SECONDS})
