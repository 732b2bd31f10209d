"""The save points card of the guest page and of the lab page."""

from __future__ import annotations

from django import template

from labs.access import may_delete_save_point
from labs.models import Guest, Host, Lab
from labs.services import allowed_actions, save_points

register = template.Library()


@register.inclusion_tag("labs/_save_points.html", takes_context=True)
def guest_save_points(context: template.Context, guest: Guest) -> dict:
    user = context["request"].user
    mine, held = save_points.of_guest(guest)
    points = []
    for point in mine:
        points.append({"point": point, "deletable": may_delete_save_point(user, point)})
    allowed = allowed_actions(guest)
    return {
        "guest": guest,
        "points": points,
        "may_take": "savepoint" in allowed,
        "may_return": "savepoint_return" in allowed,
        "may_delete": "savepoint_delete" in allowed,
        "thin": save_points.method_for(guest) == "thin",
        "held": held,
        "quota": save_points.shown_quota(guest),
        "size_mb": guest.lab.template.root_size_mb,
        "csrf_token": context.get("csrf_token"),
    }


@register.simple_tag
def host_save_points(host: Host) -> dict:
    """How many save points the host's guests hold, and the VG space their full copies take (capacity)."""
    return save_points.host_usage(host)


@register.inclusion_tag("labs/_lab_save_points.html", takes_context=True)
def lab_save_points(context: template.Context, lab: Lab) -> dict:
    return {"lab": lab, "labels": save_points.lab_labels(lab), "csrf_token": context.get("csrf_token")}
