"""Save point pages: take one (a label), return to one or delete one (confirmation pages), and the lab's.

Thin: `labs.access` says who may see what (strangers get 404), `labs.services.save_points` decides and
queues the jobs, and the guest page follows them like any other job.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from labs.access import get_guest_for_user, get_lab_for_user, get_save_point_for_user
from labs.forms import ConfirmForm
from labs.models import SavePoint
from labs.services import ServiceError, allowed_actions, save_points
from labs.services.registry import GUEST_ACTIONS, LAB_ACTIONS


@require_POST
@login_required
def save_point_take(request: HttpRequest, pk: int) -> HttpResponse:
    guest = get_guest_for_user(request, pk)
    label = request.POST.get("label", "")
    try:
        save_points.take(request.user, guest, label)
    except ServiceError as e:
        messages.error(request, _("No save point was taken: %(why)s") % {"why": e.message})
    else:
        messages.success(
            request,
            _("Save point “%(label)s” requested for %(domain)s. This page shows it when the job finishes.")
            % {"label": save_points.clean_label(label), "domain": guest.domain_name},
        )
    return redirect("guest_detail", pk=guest.pk)


def _confirm(request: HttpRequest, point: SavePoint, action: str, url: str) -> HttpResponse:
    """The confirmation page of a return or a deletion; the same URL, posted with the box ticked, does it."""
    definition = GUEST_ACTIONS[action]
    assert definition.confirm is not None  # both rows ask first (tests/test_registry.py)
    guest = point.guest
    if request.method == "POST":
        if not ConfirmForm(request.POST).is_valid():
            messages.error(request, _("Nothing was done: tick the confirmation box first."))
            return redirect(url)
        try:
            if action == "savepoint_return":
                save_points.return_to(request.user, point)
            else:
                save_points.delete(request.user, point)
        except ServiceError as e:
            messages.error(request, str(e.message))
        else:
            messages.success(
                request,
                _(
                    "%(action)s requested for %(domain)s (“%(label)s”). This page shows the result when the job"
                    " finishes."
                )
                % {"action": definition.label, "domain": guest.domain_name, "label": point.label},
            )
        return redirect("guest_detail", pk=guest.pk)
    ctx = {
        "guest": guest,
        "label": f"{definition.label} “{point.label}”",
        "explanation": definition.confirm.text,
        "allowed": action in allowed_actions(guest) and point.status == SavePoint.Status.READY,
        "form": ConfirmForm(label=str(definition.confirm.checkbox)),
        "post_url": url,
        "cancel_url": reverse("guest_detail", args=[guest.pk]),
    }
    return render(request, "labs/confirm.html", ctx)


@login_required
def save_point_return(request: HttpRequest, pk: int, sp: int) -> HttpResponse:
    point = get_save_point_for_user(request, pk, sp)
    return _confirm(request, point, "savepoint_return", reverse("save_point_return", args=[pk, sp]))


@login_required
def save_point_delete(request: HttpRequest, pk: int, sp: int) -> HttpResponse:
    point = get_save_point_for_user(request, pk, sp, deleting=True)
    return _confirm(request, point, "savepoint_delete", reverse("save_point_delete", args=[pk, sp]))


def _lab_outcome(request: HttpRequest, outcome: save_points.LabOutcome, action: str) -> None:
    label = LAB_ACTIONS[action].label
    if outcome.tasks:
        messages.success(
            request, _("%(action)s: %(count)s jobs queued.") % {"action": label, "count": len(outcome.tasks)}
        )
    else:
        messages.info(request, _("%(action)s: nothing to do.") % {"action": label})
    for refusal in outcome.refused:
        messages.warning(request, refusal.message)


@require_POST
@login_required
def lab_save_point_take(request: HttpRequest, pk: int) -> HttpResponse:
    lab = get_lab_for_user(request, pk)
    try:
        outcome = save_points.take_for_lab(request.user, lab, request.POST.get("label", ""))
    except ServiceError as e:
        messages.error(request, _("No save point was taken: %(why)s") % {"why": e.message})
    else:
        _lab_outcome(request, outcome, "savepoint_all")
    return redirect("lab_detail", pk=lab.pk)


@login_required
def lab_save_point_return(request: HttpRequest, pk: int) -> HttpResponse:
    """Which VMs go back to the lab's save point `label`, and the box to tick; posted, it queues the returns."""
    lab = get_lab_for_user(request, pk)
    label = (request.POST if request.method == "POST" else request.GET).get("label", "")
    try:
        points = save_points.lab_points_named(lab, label)
    except ServiceError as e:
        messages.error(request, str(e.message))
        return redirect("lab_detail", pk=lab.pk)
    label = points[0].label  # as cleaned
    if request.method == "POST":
        if not ConfirmForm(request.POST).is_valid():
            messages.error(request, _("Nothing was done: tick the confirmation box first."))
            return redirect(reverse("lab_save_point_return", args=[lab.pk]) + "?" + request.POST.urlencode())
        try:
            _lab_outcome(request, save_points.return_lab(request.user, lab, label), "savepoint_return_all")
        except ServiceError as e:
            messages.error(request, str(e.message))
        return redirect("lab_detail", pk=lab.pk)
    confirm = LAB_ACTIONS["savepoint_return_all"].confirm
    ctx = {
        "lab": lab,
        "label": label,
        "points": points,
        "explanation": GUEST_ACTIONS["savepoint_return"].confirm.text,  # type: ignore[union-attr]
        "form": ConfirmForm(label=str(confirm) % {"n": len(points)}),
    }
    return render(request, "labs/lab_save_point_return.html", ctx)
