"""The panel's pages. Thin: read the database, call the service layer, render.

No view runs a command or talks to a dom0; actions become Task rows and RQ
jobs inside `labs.services`, and pages poll the database (htmx) to show
their progress. Authorization goes only through `labs.access`.
"""

from __future__ import annotations

import hashlib
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from labs import services
from labs.access import (
    Role,
    get_guest_for_user,
    get_host_for_user,
    get_lab_for_user,
    guest_role,
    guests_for,
    labs_for,
    may_change_lab_expiry,
    require_instructor,
    roles_for,
)
from labs.forms import ConfirmForm, ExpiryForm, MemoryForm
from labs.models import Guest, Host, Lab, Task, Xl
from labs.services import expiry, ssh_keys, upkeep, usage
from labs.services.limits import guest_memory_limit
from labs.services.refusals import refused
from labs.services.registry import GUEST_ACTIONS, LAB_ACTIONS, GuestAction, guest_action_def
from labs.spreadsheet import csv_download
from labs.templatetags.xenpanel import state_word

GUESTS_PER_PAGE = 50
LABS_PER_PAGE = 25
# Poll fast while something is happening, slowly otherwise.
POLL_BUSY = "2s"
POLL_IDLE = "5s"

# Filters on the lab page; each maps to the guests it selects (the same
# split as services.lab_progress, so a filter shows what its count says).
STATE_FILTERS = {
    "running": (gettext_lazy("running"), Q(status=Guest.Status.READY, observed_state__in=Xl.RUNS)),
    "stopped": (gettext_lazy("stopped"), Q(status=Guest.Status.READY) & ~Q(observed_state__in=Xl.UP)),
    "paused": (gettext_lazy("paused"), Q(status=Guest.Status.READY, observed_state=Xl.PAUSED)),
    "provisioning": (
        gettext_lazy("provisioning"),
        Q(status__in=(Guest.Status.PENDING, Guest.Status.PROVISIONING)),
    ),
    "failed": (gettext_lazy("failed"), Q(status=Guest.Status.FAILED)),
    "busy": (gettext_lazy("working"), ~Q(busy_with="")),
}
# The lab page's usage sorts, busiest first: the annotation each sorts on (labs.services.usage.with_recent).
USAGE_SORTS = {"cpu": "recent_cpu", "mem": "recent_mem"}
# The guest list's columns: stable names, for scripts that read the file.
GUESTS_CSV_HEADER = ("username", "full_name", "email", "vm", "hostname", "ip", "mac", "host", "state", "memory_mib")
BUSY_STATUSES = (Guest.Status.PENDING, Guest.Status.PROVISIONING, Guest.Status.TEARING_DOWN)
# The tag of a message that says a job was queued: base.html words it "Requested", and leaves it out once
# the page's live state shows the job ended (`requested_done`).
REQUESTED = "requested"


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's middleware."""

    htmx: HtmxDetails


class AuthenticatedHttpRequest(HttpRequest):
    """A request past login_required: its user is signed in."""

    user: User


def live_login_required(view):
    """login_required for htmx-polled fragments.

    A plain redirect would be followed by htmx and the login page swapped
    into the fragment; a logged-out poll instead tells the browser to go to
    the login page, coming back to the page it was on.
    """
    guarded = login_required(view)

    @wraps(view)
    def inner(request: HtmxHttpRequest, *args, **kwargs) -> HttpResponse:
        if request.htmx and not request.user.is_authenticated:
            back = request.htmx.current_url_abs_path or reverse("home")
            return HttpResponseClientRedirect(f"{reverse('login')}?{urlencode({'next': back})}")
        return guarded(request, *args, **kwargs)

    return inner


def healthz(request: HttpRequest) -> HttpResponse:
    """A bare view for load balancers and the benchmark's baseline."""
    return HttpResponse("ok", content_type="text/plain")


@login_required
def whoami(request: HttpRequest) -> HttpResponse:
    """The signed-in user's name: the least a logged-in request can cost.

    It loads the session and the user through the whole middleware stack and
    does nothing else, so bench/load.py measures the guest page against it.
    """
    return HttpResponse(request.user.get_username(), content_type="text/plain; charset=utf-8")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("lab_list" if roles_for(request)["instructor"] else "my_vms")


# ---------------------------------------------------------------- helpers


def _paginate(request: HttpRequest, qs: QuerySet, per_page: int) -> Page:
    return Paginator(qs, per_page).get_page(request.GET.get("page"))


def _next_url(request: HttpRequest, default: str) -> str:
    """Where to go after a POST: the form's `next` if it is ours, else `default`."""
    nxt = request.POST.get("next", "")
    if nxt and url_has_allowed_host_and_scheme(nxt, {request.get_host()}, require_https=request.is_secure()):
        return nxt
    return default


def _progress(lab: Lab) -> dict:
    """services.lab_progress plus what the bar shows between ready and failed."""
    progress = services.lab_progress(lab)
    progress["in_progress"] = progress["total"] - progress["done"] - progress["failed"]
    return progress


def _role(request: HttpRequest, guest: Guest) -> Role | None:
    return guest_role(request.user, guest, roles_for(request))


def _guest_action_for(request: HttpRequest, guest: Guest, name: str) -> GuestAction:
    """The action's row, if the user's role on the guest allows it; else 404, as for a stranger."""
    action = guest_action_def(name)
    role = _role(request, guest)
    if action is None or role is None or role < action.role:
        raise Http404
    return action


def _guest_is_busy(guest: Guest) -> bool:
    return bool(guest.busy_with) or guest.status in BUSY_STATUSES


def _guest_in_transition(guest: Guest) -> bool:
    """Busy, or a domain on its way down (xl "s"/"d"), which the next sync settles."""
    return _guest_is_busy(guest) or guest.observed_state in Xl.GOING


def _guest_controls(guest: Guest, allowed: set[str], role: Role | None) -> list[dict]:
    """The guest's buttons that the user's role may use, each enabled only when the service layer allows it now."""
    return [
        {
            "name": a.name,
            "label": a.label,
            "allowed": a.name in allowed,
            "confirm": a.confirm is not None,
            "url": reverse("guest_confirm" if a.confirm else "guest_action", args=[guest.pk, a.name]),
        }
        for a in GUEST_ACTIONS.values()
        if a.requestable and a.button and role is not None and role >= a.role
    ]


def _guest_tasks(guest: Guest) -> list[Task]:
    return list(guest.tasks.select_related("actor").order_by("-created_at")[:10])


def _version(seen: object) -> str:
    """A short digest of what a live fragment shows: its poll sends it back (`v`), and an equal one gets a 204."""
    return hashlib.blake2s(repr(seen).encode(), digest_size=8).hexdigest()


def _guest_version(guest: Guest) -> str:
    """A short digest of the guest fields the live fragment shows.

    Only meaningful while the guest is idle: then its latest job is finished
    and cannot change without the guest changing too (a new job marks the
    guest busy), so an idle poll needs no task query.
    """
    return _version(
        (guest.status, guest.observed_state, guest.busy_with, guest.memory_mb, guest.last_error, guest.lab.status)
    )


def _guest_live_context(request: HttpRequest, guest: Guest, latest: Task | None) -> dict:
    role = _role(request, guest)
    busy = _guest_is_busy(guest) or (latest is not None and latest.status in (Task.Status.QUEUED, Task.Status.RUNNING))
    allowed = services.allowed_actions(guest)
    # One aggregate query: the page says which limit binds, and whether the VM is over it, in any state.
    limit = guest_memory_limit(guest)
    own = guest.student_id == request.user.pk
    mem_allowed = "mem_set" in allowed and limit.fits
    low, high = limit.bounds()
    return {
        "guest": guest,
        # Empty while anything runs: every poll then brings a fresh fragment.
        "version": "" if busy else _guest_version(guest),
        "teaches": role is not None and role >= Role.INSTRUCTOR,
        "latest_task": latest,
        "busy": busy,
        "poll": POLL_BUSY if busy or _guest_in_transition(guest) else POLL_IDLE,
        "controls": _guest_controls(guest, allowed, role),
        "requested_done": not busy,
        "mem_allowed": mem_allowed,
        "mem_low": low,
        "mem_high": high,
        # Never a value the form would refuse (a lab limit lowered under the VM's size).
        "mem_value": limit.suggested_mb(),
        "mem_limit_words": limit.explain(own) if "mem_set" in allowed else "",
        "mem_over_words": limit.over_words(),
    }


# ---------------------------------------------------------------- students


@login_required
def my_vms(request: AuthenticatedHttpRequest) -> HttpResponse:
    qs = Guest.objects.filter(student=request.user).select_related("lab__template", "host").order_by("-created_at")
    page = _paginate(request, qs, GUESTS_PER_PAGE)
    ctx = {"page": page, "expiry_notices": expiry.expiring_soon(g.lab for g in page)}
    return render(request, "labs/my_vms.html", ctx)


@login_required
def guest_detail(request: HttpRequest, pk: int) -> HttpResponse:
    guest = get_guest_for_user(request, pk)
    tasks = _guest_tasks(guest)
    ctx = _guest_live_context(request, guest, tasks[0] if tasks else None)
    host = guest.host
    ctx.update(
        {
            "console_ssh": host.console_ssh or settings.XENPANEL_CONSOLE_SSH,
            "console_command": f"{host.toolstack} console {guest.domain_name}",
            # Only admins have a shell on dom0; everyone else reaches the VM by SSH (or the browser console).
            "dom0_console": roles_for(request)["admin"],
            "ssh_command": ssh_keys.ssh_command(guest.lab.pool, guest.ip),
            "tasks": tasks,
            "expiry_notices": expiry.expiring_soon([guest.lab]),
        }
    )
    return render(request, "labs/guest_detail.html", ctx)


@live_login_required
def guest_live(request: HttpRequest, pk: int) -> HttpResponse:
    """The guest's state and controls, polled by htmx from the guest page.

    The poll sends the digest of what it shows (`v`, empty while a job
    runs); when the idle guest has not changed the answer is an empty 204,
    which htmx leaves alone. Otherwise the new fragment comes with the job
    log, swapped out of band.
    """
    # Most polls end in a 204 that reads the guest and its lab's status only;
    # a changed guest loads the rest as the fragment needs it.
    guest = get_guest_for_user(request, pk, related=("lab",))
    seen = request.GET.get("v")
    if seen and not _guest_is_busy(guest) and seen == _guest_version(guest):
        return HttpResponse(status=204)
    # One more query for what the fragment shows, instead of one per relation.
    guest = get_guest_for_user(request, pk)
    ctx = _guest_live_context(request, guest, guest.tasks.order_by("-created_at").first())
    ctx.update(oob=True, tasks=_guest_tasks(guest))
    return render(request, "labs/_guest_live.html", ctx)


@login_required
def guest_confirm(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Explain what a destructive action does and ask for a ticked box."""
    guest = get_guest_for_user(request, pk)
    definition = _guest_action_for(request, guest, action)
    if definition.confirm is None:
        raise Http404
    ctx = {
        "guest": guest,
        "action": action,
        "label": definition.label,
        "explanation": definition.confirm.text,
        "allowed": action in services.allowed_actions(guest),
        "form": ConfirmForm(label=str(definition.confirm.checkbox)),
        "post_url": reverse("guest_action", args=[guest.pk, action]),
        "cancel_url": reverse("guest_detail", args=[guest.pk]),
    }
    return render(request, "labs/confirm.html", ctx)


@require_POST
@login_required
def guest_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    guest = get_guest_for_user(request, pk)
    definition = _guest_action_for(request, guest, action)
    back = _next_url(request, reverse("guest_detail", args=[guest.pk]))
    if action == "teardown":
        back = _next_url(request, reverse("lab_detail", args=[guest.lab_id]))
    if definition.confirm is not None and not ConfirmForm(request.POST).is_valid():
        messages.error(request, _("Nothing was done: tick the confirmation box first."))
        refused(request.user, action, _("The confirmation box was not ticked."), guest=guest)
        return redirect("guest_confirm", pk=guest.pk, action=action)
    memory_mb = None
    if action == "mem_set":
        form = MemoryForm(
            request.POST, limit=guest_memory_limit(guest), viewer_is_student=guest.student_id == request.user.pk
        )
        if not form.is_valid():
            errors = " ".join(str(e) for e in form.errors.get("memory_mb", []))
            messages.error(request, _("Memory not changed: %(errors)s") % {"errors": errors})
            refused(request.user, action, errors, guest=guest)
            return redirect(back)
        memory_mb = form.cleaned_data["memory_mb"]
    try:
        services.guest_action(request.user, guest, action, memory_mb=memory_mb)
    except services.ServiceError as e:
        messages.error(request, str(e.message))
    else:
        # "Requested", not "Done": the job is only queued; the page's live state takes over once it ends.
        messages.info(
            request,
            _("%(action)s of %(domain)s. The state on this page follows the job.")
            % {"action": definition.label, "domain": guest.domain_name},
            extra_tags=REQUESTED,
        )
    return redirect(back)


# ---------------------------------------------------------------- instructors


@login_required
def lab_list(request: HttpRequest) -> HttpResponse:
    require_instructor(request)
    show_all = request.GET.get("all") == "1"
    qs = labs_for(request.user).select_related("template").order_by("-created_at")
    if not show_all:
        qs = qs.exclude(status=Lab.Status.TORN_DOWN)
    page = _paginate(request, qs, LABS_PER_PAGE)
    hosts: dict[int, list[str]] = {}
    for lab_id, host_name in (
        Guest.objects.filter(lab__in=list(page.object_list)).order_by().values_list("lab_id", "host__name").distinct()
    ):
        hosts.setdefault(lab_id, []).append(host_name)
    rows = [{"lab": lab, "hosts": sorted(hosts.get(lab.pk, [])), "progress": _progress(lab)} for lab in page]
    return render(request, "labs/lab_list.html", {"page": page, "rows": rows, "show_all": show_all})


@login_required
def lab_guests_csv(request: HttpRequest, pk: int) -> HttpResponse:
    """Every guest of the lab (not only one page) as CSV, for grading sheets, DNS or DHCP."""
    lab = get_lab_for_user(request, pk)
    guests = lab.guests.select_related("student", "host").order_by("student__username", "domain_name")
    rows = (
        (
            g.student.username,
            g.student.get_full_name(),
            g.student.email,
            g.domain_name,
            g.hostname,
            g.ip,
            g.mac,
            g.host.name,
            state_word(g),
            g.memory_mb,
        )
        for g in guests
    )
    return csv_download(request, f"{lab.slug}-guests", GUESTS_CSV_HEADER, rows)


def _sorted(qs: QuerySet[Guest], sort: str) -> QuerySet[Guest]:
    """By student (default), or busiest first: CPU or memory over the last minutes (labs.services.usage)."""
    if sort in USAGE_SORTS:
        key = USAGE_SORTS[sort]
        return usage.with_recent(qs).order_by(F(key).desc(nulls_last=True), "student__username")
    return qs.order_by("student__username")


def _lab_guests(request: HttpRequest, lab: Lab) -> tuple[Page, str, str]:
    qs = _sorted(lab.guests.select_related("student", "host"), request.GET.get("sort", ""))
    state = request.GET.get("state", "")
    if state in STATE_FILTERS:
        qs = qs.filter(STATE_FILTERS[state][1])
    else:
        state = ""
    q = request.GET.get("q", "").strip()[:64]
    if q:
        qs = qs.filter(
            Q(student__username__icontains=q)
            | Q(student__first_name__icontains=q)
            | Q(student__last_name__icontains=q)
            | Q(domain_name__icontains=q)
            | Q(ip__startswith=q)
        )
    return _paginate(request, qs, GUESTS_PER_PAGE), state, q


def _lab_version(lab: Lab, progress: dict, rows: list[dict], hosts: list[Host], runaways: list[Guest]) -> str:
    """The digest of what the lab's live fragment shows (a field added to the fragment belongs here too)."""
    seen: list[object] = [
        (lab.status, lab.expires_at),
        sorted(progress.items()),
        [h.pk for h in hosts],
        [g.pk for g in runaways],
    ]
    for row in rows:
        g = row["guest"]
        person = (g.student.username, g.student.get_full_name())
        fields = (g.pk, g.domain_name, g.ip, g.host.name, g.status, g.observed_state, g.busy_with, g.memory_mb)
        seen.append((person, fields, g.last_error, sorted(row["allowed"]), row["usage"]))
    return _version(seen)


def _lab_live_context(request: HttpRequest, lab: Lab) -> dict:
    page, state, q = _lab_guests(request, lab)
    progress = _progress(lab)
    busy = bool(progress["busy"] or progress["pending"] or progress["provisioning"]) or any(
        _guest_in_transition(g) for g in page
    )
    recent = usage.recent_cpu([g.pk for g in page])
    rows = [{"guest": g, "allowed": services.allowed_actions(g), "usage": recent.get(g.pk)} for g in page]
    sort = request.GET.get("sort", "")
    # From the rows already loaded: no query of its own on every poll.
    hosts = upkeep.silent_hosts(g.host for g in page)
    runaways = usage.runaways(lab)
    return {
        "lab": lab,
        # The page number, filters and sort are in the poll's URL: one URL, one set of rows.
        "version": _lab_version(lab, progress, rows, hosts, runaways),
        "silent_hosts": hosts,
        "runaways": runaways,
        "runaway_percent": usage.RUNAWAY_PERCENT,
        "runaway_minutes": usage.RUNAWAY_MINUTES,
        "sort": sort if sort in USAGE_SORTS else "",
        "sparklines_url": reverse("lab_sparklines", args=[lab.pk]),
        "progress": progress,
        "page": page,
        "rows": rows,
        "state": state,
        "q": q,
        "busy": busy,
        "requested_done": not busy,
        "poll": POLL_BUSY if busy else POLL_IDLE,
        "quick_actions": [(a.name, a.label) for a in GUEST_ACTIONS.values() if a.quick],
        # The live fragment is served from its own URL; actions return to the page.
        "back_url": reverse("lab_detail", args=[lab.pk]) + (f"?{request.GET.urlencode()}" if request.GET else ""),
    }


@login_required
def lab_detail(request: HttpRequest, pk: int) -> HttpResponse:
    lab = get_lab_for_user(request, pk)
    ctx = _lab_live_context(request, lab)
    ctx["state_filters"] = [(k, v[0]) for k, v in STATE_FILTERS.items()]
    ctx["lab_actions"] = [(a.name, a.label) for a in LAB_ACTIONS.values() if a.button]
    ctx["recent_failures"] = lab.tasks.filter(status=Task.Status.FAILED).select_related("guest")[:5]
    ctx["expiry"] = expiry.expiry_notice(lab)
    ctx["expiry_notices"] = expiry.expiring_soon([lab])
    ctx["may_change_expiry"] = may_change_lab_expiry(request.user, lab, known_teacher=True)
    return render(request, "labs/lab_detail.html", ctx)


@live_login_required
def lab_live(request: HttpRequest, pk: int) -> HttpResponse:
    """Progress bar and the current page of the guest table, polled by htmx.

    As on the guest page, the poll sends the digest of what it shows (`v`);
    an unchanged lab gets an empty 204, which htmx leaves alone: no render,
    and no swap to take the focus away from a keyboard user.
    """
    lab = get_lab_for_user(request, pk)
    # The digest is no filter: the fragment's links and forms are built from the rest of the query.
    query = request.GET.copy()
    seen = query.pop("v", [""])[0]
    request.GET = query  # type: ignore[assignment]  # a mutable copy, read by the template's {% querystring %}
    ctx = _lab_live_context(request, lab)
    if seen == ctx["version"]:
        return HttpResponse(status=204)
    return render(request, "labs/_lab_live.html", ctx)


@login_required
def lab_confirm_teardown(request: HttpRequest, pk: int) -> HttpResponse:
    """Say exactly what tearing the lab down destroys, then ask for a ticked box."""
    lab = get_lab_for_user(request, pk)
    guests = list(lab.guests.select_related("student", "host").order_by("student__username"))
    ctx = {
        "lab": lab,
        "guests": guests,
        "count": len(guests),
        "hosts": sorted({g.host.name for g in guests}),
        "form": ConfirmForm(label=str(LAB_ACTIONS["teardown"].confirm) % {"n": len(guests)}),
    }
    return render(request, "labs/lab_confirm_teardown.html", ctx)


@require_POST
@login_required
def lab_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    lab = get_lab_for_user(request, pk)
    definition = LAB_ACTIONS.get(action)
    if definition is None:
        raise Http404
    if definition.confirm is not None and not ConfirmForm(request.POST).is_valid():
        messages.error(request, _("Nothing was done: tick the confirmation box to tear the lab down."))
        return redirect("lab_confirm_teardown", pk=lab.pk)
    try:
        tasks = services.lab_action(request.user, lab, action)
    except services.ServiceError as e:
        messages.error(request, str(e.message))
    else:
        if tasks:
            messages.info(
                request,
                _("%(action)s: %(count)s jobs queued.") % {"action": definition.label, "count": len(tasks)},
                extra_tags=REQUESTED,
            )
        else:
            messages.info(request, _("%(action)s: nothing to do.") % {"action": definition.label})
    return redirect("lab_detail", pk=lab.pk)


@require_POST
@login_required
def lab_expiry(request: HttpRequest, pk: int) -> HttpResponse:
    """Change, extend or remove the lab's expiry (audited); the lab page's form."""
    lab = get_lab_for_user(request, pk)
    form = ExpiryForm(request.POST)
    if not form.is_valid():
        errors = " ".join(str(e) for errs in form.errors.values() for e in errs)
        messages.error(request, _("The expiry was not changed: %(errors)s") % {"errors": errors})
        return redirect("lab_detail", pk=lab.pk)
    data = form.cleaned_data
    if data["clear"]:
        when = None
    elif data["extend_days"]:
        when = expiry.extended(lab, data["extend_days"])
    else:
        when = data["expires_at"]
    try:
        expiry.set_lab_expiry(request.user, lab, when)
    except services.ServiceError as e:
        messages.error(request, _("The expiry was not changed: %(errors)s") % {"errors": e.message})
    else:
        notice = expiry.expiry_notice(lab)
        if notice is None:
            messages.success(request, _("Lab %(lab)s no longer expires.") % {"lab": lab.name})
        else:
            # The banner's own sentence: the date inside it, never before a full stop ("11:39 a.m..").
            messages.success(request, notice.words())
    return redirect("lab_detail", pk=lab.pk)


# ---------------------------------------------------------------- hosts


@login_required
def host_list(request: HttpRequest) -> HttpResponse:
    require_instructor(request)
    hosts = Host.objects.annotate(
        n_guests=Count("guests"),
        n_running=Count("guests", filter=Q(guests__observed_state__in=Xl.RUNS)),
    ).order_by("name")
    return render(request, "labs/host_list.html", {"hosts": hosts})


@login_required
def host_detail(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_host_for_user(request, pk)
    qs = guests_for(request.user).filter(host=host).select_related("student", "lab").order_by("domain_name")
    ctx = {
        "host": host,
        "page": _paginate(request, qs.distinct(), GUESTS_PER_PAGE),
        "silent_hosts": upkeep.silent_hosts([host]),
    }
    return render(request, "labs/host_detail.html", ctx)
