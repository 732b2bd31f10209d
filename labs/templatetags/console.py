"""`{% console_card guest %}`: what the guest page's console card needs (the websocket's settings, who types)."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.urls import reverse

from labs.access import console_rights, roles_for
from labs.models import Guest

register = template.Library()


@register.simple_tag(takes_context=True)
def console_card(context: template.Context, guest: Guest) -> dict[str, Any]:
    request = context["request"]
    rights = console_rights(request.user, guest, roles_for(request))
    return {
        "ticket_url": reverse("console_ticket", args=[guest.pk]),
        "ws_url": settings.XENPANEL_CONSOLE_WS_URL,
        "writable": bool(rights and rights.writable),
        "can_take_over": bool(rights and rights.can_take_over),
        "idle_minutes": max(settings.XENPANEL_CONSOLE_IDLE // 60, 1),
        "admin": roles_for(request)["admin"],
    }
