"""The JSON API for scripts (/api/v1/): a thin layer over `labs.access` and `labs.services`.

The same rules as the pages: `labs.access` finds what the user may see (a
stranger gets 404), the action registry says which actions exist and which
need `confirm: true`, and the services decide and queue. An action answers
202 with its Task, to poll at GET /api/v1/tasks/{id}. Save points have routes
of their own under /guests/{id}/save-points (a label to give, a save point to
name) and, for a lab's instructors, /labs/{id}/save-points (every VM at once),
over `labs.services.save_points` as the guest's and the lab's pages.

Two ways in: a personal API token (`Authorization: Bearer xp_...`, made on
"My API tokens"; no CSRF, since a browser never sends it by itself; each
token throttled to XENPANEL_API_RATE requests a minute) or the panel's
session cookie, for which a POST needs the CSRF token as the pages do.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from ninja import NinjaAPI, Query, Status
from ninja.security import APIKeyCookie, HttpBearer

from labs import access, services
from labs.api_schemas import (
    AccountsToConfirm,
    ActionIn,
    ConfirmIn,
    Error,
    Errors,
    GuestDetail,
    GuestPage,
    LabCreated,
    LabIn,
    LabOut,
    LabOutcomeOut,
    LabReturnIn,
    LabSavePointPage,
    LabTasks,
    SavePointIn,
    SavePointOut,
    SavePointPage,
    SavePointTaken,
    TaskOut,
    guest_detail_json,
    guest_json,
    lab_json,
    lab_outcome_json,
    lab_save_points_json,
    save_point_json,
    task_json,
)
from labs.models import Guest, Host, IpPool, Lab, LabTemplate, SavePoint
from labs.services import api_tokens, save_points
from labs.services.refusals import refused
from labs.services.registry import GUEST_ACTIONS, LAB_ACTIONS, GuestAction, guest_action_def

MAX_PAGE = 500


class Throttled(Exception):
    def __init__(self, wait: int) -> None:
        self.wait = wait


class TokenAuth(HttpBearer):
    """A personal API token; a wrong, expired or revoked one falls through to the cookie, then 401."""

    def authenticate(self, request: HttpRequest, token: str):
        found = api_tokens.authenticate(token)
        if found is None:
            return None
        wait = api_tokens.throttled(found)
        if wait:
            raise Throttled(wait)
        # labs.access reads the request's user, as for a page.
        request.user = found.user
        return found.user


class SessionAuth(APIKeyCookie):
    """The panel's session cookie, with the CSRF check on unsafe methods; no cookie is no session (401, not 403)."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        if self.param_name not in request.COOKIES:
            return None
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key: str | None):
        user = request.user
        return user if user.is_authenticated and user.is_active else None


api = NinjaAPI(
    title="xenpanel",
    version="1",
    description="Guests, their actions and tasks, and lab batches. Authorization: Bearer <token from My API tokens>.",
    urls_namespace="api",
    auth=[TokenAuth(), SessionAuth()],
)


@api.exception_handler(Throttled)
def _throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
    response = api.create_response(
        request, {"detail": _("Too many requests with this token: wait a minute.")}, status=429
    )
    response["Retry-After"] = str(exc.wait)
    return response


@api.exception_handler(services.ServiceError)
def _refused(request: HttpRequest, exc: services.ServiceError) -> HttpResponse:
    """A refusal: 503 when Redis is down, 400 for a bad value, 409 when the state does not allow it."""
    if isinstance(exc, services.QueueUnavailable):
        status = 503
    else:
        status = 400 if exc.field else 409
    return api.create_response(request, {"detail": exc.message}, status=status)


# ---------------------------------------------------------------- guests and tasks


@api.get("/guests", response=GuestPage, url_name="guests", summary="The guests you may see")
def guests(request: HttpRequest, limit: int = Query(100, ge=1, le=MAX_PAGE), offset: int = Query(0, ge=0)):
    qs = access.guests_for(request.user).distinct().select_related("lab", "student", "host").order_by("pk")
    return {"count": qs.count(), "items": [guest_json(g) for g in qs[offset : offset + limit]]}


@api.get("/guests/{guest_id}", response={200: GuestDetail, 404: Error}, url_name="guest")
def guest(request: HttpRequest, guest_id: int):
    guest = access.get_guest_for_user(request, guest_id, related=("lab__template", "host", "student"))
    role = access.guest_role(request.user, guest)
    assert role is not None  # get_guest_for_user found it
    latest = guest.tasks.order_by("-created_at").first()
    return guest_detail_json(guest, role, services.allowed_actions(guest), latest)


@api.post(
    "/guests/{guest_id}/actions/{action}",
    response={202: TaskOut, 400: Error, 404: Error, 409: Error, 503: Error},
    url_name="guest_action",
    summary="Ask for an action on a guest: 202 with its task",
)
def guest_action(request: HttpRequest, guest_id: int, action: str, body: ActionIn | None = None):
    body = body or ActionIn(confirm=False, memory_mb=None)
    guest = access.get_guest_for_user(request, guest_id)
    definition = guest_action_def(action)
    role = access.guest_role(request.user, guest)
    if definition is None or role is None or role < definition.role:
        raise Http404
    if definition.asks:
        # A label or a save point to name: the service would say "use the form", which a script has not.
        url = reverse("api:guest_save_points", args=[guest.pk])
        why = _("%(action)s: use the save point routes at %(url)s.") % {"action": definition.label, "url": url}
        return Status(400, {"detail": why})
    if (unconfirmed := _unconfirmed(request, definition, body.confirm, guest)) is not None:
        return unconfirmed
    task = services.guest_action(request.user, guest, action, memory_mb=body.memory_mb)
    return Status(202, task_json(task))


def _unconfirmed(request: HttpRequest, definition: GuestAction, confirm: bool, guest: Guest) -> Status | None:
    """A 400 (and its refusal on the audit trail) when the action needs confirm: true and did not get it."""
    if definition.confirm is None or confirm:
        return None
    why = _("Nothing was done: send confirm: true. %(why)s") % {"why": definition.confirm.text}
    refused(request.user, definition.name, why, guest=guest)
    return Status(400, {"detail": why})


@api.get("/tasks/{task_id}", response={200: TaskOut, 404: Error}, url_name="task", summary="Poll a task")
def task(request: HttpRequest, task_id: int):
    task = access.get_task_for_user(request, task_id)
    # A lab's task (no guest) is its instructors' to see; a guest's, the raw lines are for instructors and admins.
    role = access.guest_role(request.user, task.guest) if task.guest is not None else access.Role.INSTRUCTOR
    return task_json(task, role is not None and role >= access.Role.INSTRUCTOR)


# ---------------------------------------------------------------- save points


@api.get(
    "/guests/{guest_id}/save-points",
    response={200: SavePointPage, 404: Error},
    url_name="guest_save_points",
    summary="A guest's save points, newest first",
)
def guest_save_points(request: HttpRequest, guest_id: int):
    guest = access.get_guest_for_user(request, guest_id)
    points, held = save_points.of_guest(guest)
    return {
        "count": len(points),
        "held": held,
        "quota": save_points.shown_quota(guest),
        "items": [save_point_json(p, access.may_delete_save_point(request.user, p)) for p in points],
    }


@api.post(
    "/guests/{guest_id}/save-points",
    response={202: SavePointTaken, 400: Error, 404: Error, 409: Error, 503: Error},
    url_name="guest_save_points",
    summary="Take a save point of the guest's disk: 202 with its task and the new save point",
)
def take_save_point(request: HttpRequest, guest_id: int, body: SavePointIn):
    guest = access.get_guest_for_user(request, guest_id)
    task = save_points.take(request.user, guest, body.label)
    point = SavePoint.objects.get(pk=task.args["save_point"])
    point.guest = guest
    return Status(
        202,
        {**task_json(task), "save_point": save_point_json(point, access.may_delete_save_point(request.user, point))},
    )


@api.get(
    "/guests/{guest_id}/save-points/{sp_id}",
    response={200: SavePointOut, 404: Error},
    url_name="guest_save_point",
    summary="One save point",
)
def guest_save_point(request: HttpRequest, guest_id: int, sp_id: int):
    point = access.get_save_point_for_user(request, guest_id, sp_id)
    return save_point_json(point, access.may_delete_save_point(request.user, point))


@api.post(
    "/guests/{guest_id}/save-points/{sp_id}/return",
    response={202: TaskOut, 400: Error, 404: Error, 409: Error, 503: Error},
    url_name="save_point_return",
    summary="Return the guest to the save point (confirm: true): 202 with its task",
)
def return_to_save_point(request: HttpRequest, guest_id: int, sp_id: int, body: ConfirmIn | None = None):
    point = access.get_save_point_for_user(request, guest_id, sp_id)
    confirm = body is not None and body.confirm
    if (unconfirmed := _unconfirmed(request, GUEST_ACTIONS["savepoint_return"], confirm, point.guest)) is not None:
        return unconfirmed
    return Status(202, task_json(save_points.return_to(request.user, point)))


@api.post(
    "/guests/{guest_id}/save-points/{sp_id}/delete",
    response={202: TaskOut, 400: Error, 404: Error, 409: Error, 503: Error},
    url_name="save_point_delete",
    summary="Delete the save point (confirm: true): 202 with its task",
)
def delete_save_point(request: HttpRequest, guest_id: int, sp_id: int, body: ConfirmIn | None = None):
    point = access.get_save_point_for_user(request, guest_id, sp_id, deleting=True)
    confirm = body is not None and body.confirm
    if (unconfirmed := _unconfirmed(request, GUEST_ACTIONS["savepoint_delete"], confirm, point.guest)) is not None:
        return unconfirmed
    return Status(202, task_json(save_points.delete(request.user, point)))


# ---------------------------------------------------------------- labs


def _by_id_or_name(model: type[Model], value: int | str | None, field: str, queryset=None):
    """The row whose id or name is `value`; a LineError dict when there is none."""
    qs = queryset if queryset is not None else model._default_manager.all()
    lookup: dict[str, object] = {"pk": value} if isinstance(value, int) else {"name": value}
    row = qs.filter(**lookup).first()
    if row is None:
        return None, {
            "line": None,
            "field": field,
            "message": _("There is no %(field)s %(value)r.") % {"field": field, "value": value},
        }
    return row, None


def _roster_errors(text: str):
    entries, errors = services.parse_roster(text)
    rows = [{"line": e.line, "field": e.field, "message": e.message} for e in errors]
    return entries, rows


@api.post(
    "/labs",
    response={202: LabCreated, 404: Error, 409: AccountsToConfirm, 422: Errors, 503: Error},
    url_name="labs",
    summary="Create a lab batch: 202, its VMs being provisioned",
)
def create_lab(request: HttpRequest, body: LabIn):
    access.require_instructor(request)
    template, template_error = _by_id_or_name(LabTemplate, body.template, "template")
    pool, pool_error = _by_id_or_name(IpPool, body.pool, "pool")
    host, host_error = (None, None)
    if body.host is not None:
        host, host_error = _by_id_or_name(Host, body.host, "host", Host.objects.filter(enabled=True))
    roster, errors = _roster_errors(body.roster)
    errors = [e for e in (template_error, pool_error, host_error) if e] + errors
    if errors:
        n = len(errors)
        detail = ngettext("%(n)d problem; nothing was created.", "%(n)d problems; nothing was created.", n) % {"n": n}
        return Status(422, {"detail": detail, "errors": errors})
    try:
        result = services.create_lab_batch(
            request.user,
            template,
            pool,
            roster,
            body.memory_mb,
            hosts=[host] if host else None,
            expires_at=body.expires_at,
            name=body.name,
            slug=body.slug or None,
            confirm_existing=body.confirm_existing,
        )
    except services.AccountsToConfirm as e:
        accounts = [{"username": u.username, "full_name": u.get_full_name()} for u in e.accounts]
        return Status(409, {"detail": e.message, "accounts": accounts, "confirm_existing": e.token})
    except services.QueueUnavailable:
        raise
    except services.ServiceError as e:
        return Status(
            422, {"detail": e.message, "errors": [{"line": None, "field": e.field or "", "message": e.message}]}
        )
    lab = result.lab
    return Status(
        202,
        {
            "lab": lab_json(lab, services.lab_progress(lab)),
            "tasks": list(lab.tasks.order_by("pk").values_list("pk", flat=True)),
            "new_accounts": [{"username": u, "password": p} for u, p in result.new_accounts],
            "campus_accounts": result.campus_accounts,
            "enrolled": [u.username for u in result.enrolled],
        },
    )


@api.get("/labs/{lab_id}", response={200: LabOut, 404: Error}, url_name="lab", summary="A lab and its progress")
def lab(request: HttpRequest, lab_id: int):
    lab = access.get_lab_for_user(request, lab_id)
    return lab_json(lab, services.lab_progress(lab))


@api.post(
    "/labs/{lab_id}/teardown",
    response={202: LabTasks, 400: Error, 404: Error, 409: Error, 503: Error},
    url_name="lab_teardown",
    summary="Delete every VM of the lab (confirm: true): 202 with their tasks",
)
def lab_teardown(request: HttpRequest, lab_id: int, body: ConfirmIn | None = None):
    lab = access.get_lab_for_user(request, lab_id)
    confirm = body is not None and body.confirm
    if (unconfirmed := _lab_unconfirmed(request, "teardown", confirm, lab, lab.guests.count())) is not None:
        return unconfirmed
    tasks = services.lab_action(request.user, lab, "teardown")
    return Status(202, {"lab": lab_json(lab, services.lab_progress(lab)), "tasks": [task_json(t) for t in tasks]})


def _lab_unconfirmed(
    request: HttpRequest, action: str, confirm: bool, lab: Lab, n: int, explanation: str = ""
) -> Status | None:
    """A 400 (and its refusal on the audit trail) when the lab action, reaching `n` VMs, did not get confirm: true."""
    if confirm:
        return None
    why = " ".join(filter(None, (explanation, str(LAB_ACTIONS[action].confirm) % {"n": n})))
    detail = _("Nothing was done: send confirm: true. %(why)s") % {"why": why}
    refused(request.user, action, detail, lab=lab)
    return Status(400, {"detail": detail})


# ---------------------------------------------------------------- a lab's save points


@api.get(
    "/labs/{lab_id}/save-points",
    response={200: LabSavePointPage, 404: Error},
    url_name="lab_save_points",
    summary="The save points taken for the whole lab: by label, newest first, with the VMs holding each",
)
def lab_save_points(request: HttpRequest, lab_id: int):
    lab = access.get_lab_for_user(request, lab_id)
    items = []
    for label in save_points.lab_labels(lab):
        points = save_points.lab_points(lab, label)
        if points:  # unless deleted since lab_labels looked
            deletable = [(p, access.may_delete_save_point(request.user, p, known_teacher=True)) for p in points]
            items.append(lab_save_points_json(label, deletable))
    return {"count": len(items), "items": items}


@api.post(
    "/labs/{lab_id}/save-points",
    response={202: LabOutcomeOut, 400: Error, 404: Error, 409: Error, 503: Error},
    url_name="lab_save_points",
    summary="Take a save point of every ready VM of the lab: 202 with their tasks and the VMs refused",
)
def take_lab_save_point(request: HttpRequest, lab_id: int, body: SavePointIn):
    lab = access.get_lab_for_user(request, lab_id)
    outcome = save_points.take_for_lab(request.user, lab, body.label)
    label = save_points.clean_label(body.label)
    return Status(202, lab_outcome_json(lab, services.lab_progress(lab), label, outcome))


@api.post(
    "/labs/{lab_id}/save-points/return",
    response={202: LabOutcomeOut, 400: Error, 404: Error, 409: Error, 503: Error},
    url_name="lab_save_point_return",
    summary="Return every VM holding the lab's save point `label` to it (confirm: true): 202 with their tasks",
)
def return_lab_to_save_point(request: HttpRequest, lab_id: int, body: LabReturnIn):
    lab = access.get_lab_for_user(request, lab_id)
    points = save_points.lab_points_named(lab, body.label)
    label, explanation = points[0].label, GUEST_ACTIONS["savepoint_return"].confirm
    assert explanation is not None  # a return asks first (tests/test_registry.py)
    unconfirmed = _lab_unconfirmed(
        request, "savepoint_return_all", body.confirm, lab, len(points), str(explanation.text)
    )
    if unconfirmed is not None:
        return unconfirmed
    outcome = save_points.return_lab(request.user, lab, label)
    return Status(202, lab_outcome_json(lab, services.lab_progress(lab), label, outcome))
