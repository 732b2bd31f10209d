"""`{% console_card guest %}`: what the guest page's console card needs (the websocket's settings, who types)."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.urls import reverse

from labs.access import roles_for
from labs.models import Guest

register = template.Library()


@register.simple_tag(takes_context=True)
def console_card(context: template.Context, guest: Guest) -> dict[str, Any]:
    request = context["request"]
    owner = guest.student_id == request.user.pk
    return {
        "ticket_url": reverse("console_ticket", args=[guest.pk]),
        "ws_url": settings.XENPANEL_CONSOLE_WS_URL,
        "writable": owner,
        # The lab's instructors and admins see the guest page; they watch, and may take over.
        "can_take_over": not owner,
        "idle_minutes": max(settings.XENPANEL_CONSOLE_IDLE // 60, 1),
        "admin": roles_for(request)["admin"],
    }
