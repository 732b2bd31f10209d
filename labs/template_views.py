"""Templates in the panel (admins): the templates, their builds with live progress and log, and the golden LV.

Thin, like every view: `labs.access` says who may look (admins; anyone else
gets 404), `labs.services.templates` checks and queues, the jobs on the
dom0 do the work, and the build page polls the Task row (htmx) the way a lab
page follows its batch.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from labs.access import get_template_build_for_user, get_template_for_user, may_build_templates, template_builds_for
from labs.dom0.errors import InvalidName
from labs.dom0.template import INITS, TOOLS
from labs.forms import ConfirmForm
from labs.models import Host, LabTemplate, Task
from labs.services.errors import ServiceError
from labs.services.templates import (
    GOLDEN_KIND,
    default_path,
    enqueue_golden_build,
    enqueue_template_build,
    make_spec,
    rebuild_spec,
)
from labs.views import POLL_BUSY, live_login_required

RECENT_BUILDS = 20
RUNNING = (Task.Status.QUEUED, Task.Status.RUNNING)


class TemplateBuildForm(forms.Form):
    """A new template: its name, the host whose worker builds it, and what debootstrap needs (defaults from the
    settings); the values are checked again by the dom0 layer before anything runs."""

    name = forms.CharField(label=gettext_lazy("Name"), max_length=64)
    host = forms.ModelChoiceField(Host.objects.all(), label=gettext_lazy("Host that builds it"))
    path = forms.CharField(
        label=gettext_lazy("Directory on the host"),
        max_length=200,
        required=False,
        help_text=gettext_lazy("Empty: /srv/xenpanel/templates/ and the template's name."),
    )
    suite = forms.CharField(label=gettext_lazy("Debian suite"), max_length=32, required=False)
    mirror = forms.CharField(label=gettext_lazy("Debian mirror"), max_length=200, required=False)
    tool = forms.ChoiceField(label=gettext_lazy("Tool"), choices=[(t, t) for t in TOOLS])
    init = forms.ChoiceField(label=gettext_lazy("Init system"), choices=[(i, i) for i in INITS])


class HostConfirmForm(ConfirmForm):
    """The host a template job runs on, and the ticked box a rebuild needs."""

    host = forms.ModelChoiceField(Host.objects.order_by("name"), label=gettext_lazy("Host"))
    field_order = ["host", "confirm"]  # the host first, then the box that confirms what happens to it

    def __init__(self, *args, hosts=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        host = self.fields["host"]
        if hosts is not None and isinstance(host, forms.ModelChoiceField):
            host.queryset = hosts


def _require_admin(request: HttpRequest) -> None:
    if not may_build_templates(request.user):
        raise Http404


def _progress(task: Task) -> dict:
    """A build's steps, counted as the lab's progress bar counts VMs (done, failed, total)."""
    failed = 1 if task.status == Task.Status.FAILED else 0
    return {"done": task.steps_done, "total": max(task.steps_total, 1), "failed": failed}


@login_required
def template_list(request: HttpRequest) -> HttpResponse:
    _require_admin(request)
    form = TemplateBuildForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        existing = LabTemplate.objects.filter(name=data["name"]).first()
        if existing is not None:
            # Its build would repoint the template its labs use: that is a rebuild, with its confirmation.
            form.add_error("name", _("A template of that name exists: rebuild it from its page."))
            return render(request, "labs/template_list.html", _list_context(request, form))
        try:
            spec = make_spec(
                path=data["path"] or default_path(data["name"]),
                suite=data["suite"] or None,
                mirror=data["mirror"] or None,
                tool=data["tool"],
                init=data["init"],
            )
            task = enqueue_template_build(data["host"], data["name"], spec, actor=request.user)
        except InvalidName as e:
            form.add_error(None, str(e))
        except ServiceError as e:
            form.add_error(None, e.message)
        else:
            messages.info(
                request, _("Build of %(name)s queued on %(host)s.") % {"name": task.target, "host": task.host}
            )
            return redirect("template_build", pk=task.pk)
    return render(request, "labs/template_list.html", _list_context(request, form))


def _list_context(request: HttpRequest, form: TemplateBuildForm) -> dict:
    return {
        "templates": LabTemplate.objects.order_by("name"),
        "tasks": template_builds_for(request.user).select_related("actor", "host")[:RECENT_BUILDS],
        "form": form,
    }


@login_required
def template_detail(request: HttpRequest, pk: int) -> HttpResponse:
    template = get_template_for_user(request, pk)
    builds = template_builds_for(request.user).filter(target=template.name).select_related("actor", "host")
    # Where its golden LV stands: the hosts whose last golden build of it succeeded (newest first).
    golden = builds.filter(kind=GOLDEN_KIND, status=Task.Status.SUCCEEDED).order_by("-finished_at")
    golden_hosts = {t.host: t.finished_at for t in reversed(list(golden)) if t.host is not None}
    ctx = {
        "template": template,
        "tasks": builds[:RECENT_BUILDS],
        "rebuilds": [(k, v[0]) for k, v in REBUILDS.items()],
        "golden_hosts": sorted(golden_hosts.items(), key=lambda pair: pair[0].name),
    }
    return render(request, "labs/template_detail.html", ctx)


# What each rebuild is: its title, what it does (the confirmation page says it), the box's words, the
# hosts it may run on (None: any), and how it is queued.
REBUILDS = {
    "golden": (
        gettext_lazy("Build the golden LV"),
        gettext_lazy(
            "Makes a thin volume in the host's thin pool holding the template's tree, then puts it in place of"
            " the template's golden LV on that host. From then on, new VMs of this template on that host are"
            " thin snapshots of it: made in a moment, whatever the template's size. VMs made before keep their"
            " disks."
        ),
        gettext_lazy("I understand: the template's golden LV on that host is replaced."),
    ),
    "tree": (
        gettext_lazy("Rebuild the template"),
        gettext_lazy(
            "Runs debootstrap again on the host and replaces the template's directory with the new tree, with"
            " the recipe's touches. VMs made before keep their disks; new ones are cloned from the new tree."
        ),
        gettext_lazy("I understand: the template's directory on that host is replaced."),
    ),
}


def _queue_rebuild(what: str, host: Host, template: LabTemplate, actor) -> Task:
    if what == "golden":
        return enqueue_golden_build(host, template, actor=actor)
    return enqueue_template_build(host, template.name, rebuild_spec(template), actor)


@login_required
def template_rebuild(request: HttpRequest, pk: int, what: str) -> HttpResponse:
    """Rebuild the template's tree, or build its golden LV, on a host: a confirmation page, then POST."""
    template = get_template_for_user(request, pk)
    if what not in REBUILDS:
        raise Http404
    title, explanation, checkbox = REBUILDS[what]
    hosts = Host.objects.exclude(thin_pool="").order_by("name") if what == "golden" else None
    form = HostConfirmForm(request.POST or None, label=str(checkbox), hosts=hosts)
    if request.method == "POST":
        if not form.is_valid():
            messages.error(request, _("Nothing was done: choose a host and tick the confirmation box first."))
        else:
            try:
                task = _queue_rebuild(what, form.cleaned_data["host"], template, request.user)
            except (InvalidName, ServiceError) as e:
                messages.error(request, getattr(e, "message", str(e)))
            else:
                return redirect("template_build", pk=task.pk)
    ctx = {"template": template, "form": form, "title": title, "explanation": explanation, "what": what}
    return render(request, "labs/template_confirm.html", ctx)


def _build_context(task: Task) -> dict:
    running = task.status in RUNNING
    return {
        "task": task,
        "progress": _progress(task),
        "running": running,
        "poll": POLL_BUSY,
        "template": LabTemplate.objects.filter(name=task.target).first(),
    }


@login_required
def template_build(request: HttpRequest, pk: int) -> HttpResponse:
    """One build: its progress bar and its log, followed live while it runs."""
    task = get_template_build_for_user(request, pk)
    return render(request, "labs/template_build.html", _build_context(task))


@live_login_required
def template_build_live(request: HttpRequest, pk: int) -> HttpResponse:
    """The build's progress and log, polled by htmx; the fragment stops polling once the build has ended."""
    task = get_template_build_for_user(request, pk)
    return render(request, "labs/_template_build_live.html", _build_context(task))
