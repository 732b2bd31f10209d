"""Template builds, the service side: check the request, record the Task and queue it on the host's worker.

Used by `manage.py build_template`, the admin action and the panel's template
pages; the jobs are `labs.jobs.template.build_template_job` (the tree) and
`build_golden_job` (the golden LV that thin clones snapshot). Also the rule
of how a template's guests are cloned on a host (`clone_method_on`).
"""

from __future__ import annotations

from dataclasses import asdict

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from labs.dom0.template import TemplateBuilder, TemplateSpec
from labs.models import AuditEvent, Host, LabTemplate, Task
from labs.services import queueing
from labs.services.errors import ServiceError

KIND = "build_template"
STEPS = ("check", "bootstrap", "register")
GOLDEN_KIND = "build_golden"
GOLDEN_STEPS = ("check", "volume", "fill", "swap in")
KINDS = (KIND, GOLDEN_KIND)
# Where templates go when no path is given.
TEMPLATE_ROOT = "/srv/xenpanel/templates"
# A root volume must hold the tree plus room for the student's work.
MIN_ROOT_MB = 4096


def default_path(name: str) -> str:
    return f"{TEMPLATE_ROOT}/{name}"


def make_spec(
    *,
    path: str,
    suite: str | None = None,
    mirror: str | None = None,
    tool: str = "debootstrap",
    replace: bool = False,
    init: str = "systemd",
    kernel: str = "",
    ramdisk: str = "",
) -> TemplateSpec:
    """A TemplateSpec with the settings' suite and mirror as defaults; InvalidName on a bad value."""
    spec = TemplateSpec(
        path=path,
        suite=suite or settings.XENPANEL_TEMPLATE_SUITE,
        mirror=mirror or settings.XENPANEL_TEMPLATE_MIRROR,
        tool=tool,  # type: ignore[arg-type]
        replace=replace,
        init=init,  # type: ignore[arg-type]
        kernel=kernel,
        ramdisk=ramdisk,
    )
    # Checked here, before a Task exists: a typo is the caller's error, not a failed job.
    return TemplateBuilder.check(spec)


def enqueue_template_build(host: Host, name: str, spec: TemplateSpec, actor=None) -> Task:
    """Record a build Task and queue it on `host`'s worker once committed; QueueUnavailable if Redis is down."""
    if not name or len(name) > 64:
        raise ServiceError(_("Give the template a name of at most 64 characters."))
    args = {"name": name, **asdict(spec), "extra_packages": list(spec.extra_packages)}
    return _enqueue(host, KIND, name, args, len(STEPS), actor)


def rebuild_spec(template: LabTemplate) -> TemplateSpec:
    """The spec that rebuilds `template` in place: its last successful build's choices (suite, mirror, tool,
    init, kernel), so a rebuild keeps the variant it was built as; the settings' defaults otherwise."""
    last = (
        Task.objects.filter(kind=KIND, target=template.name, status=Task.Status.SUCCEEDED)
        .order_by("-finished_at", "-pk")
        .values_list("args", flat=True)
        .first()
    ) or {}
    kept = {k: last[k] for k in ("suite", "mirror", "tool", "init", "kernel", "ramdisk") if last.get(k)}
    return make_spec(path=template.rootfs_path, replace=True, **kept)


def golden_volume_name(template: LabTemplate) -> str:
    """The template's golden LV, the same on every host (its id, so a renamed template keeps it)."""
    return template.golden_volume or f"xenpanel-golden-{template.pk}"


def enqueue_golden_build(host: Host, template: LabTemplate, actor=None) -> Task:
    """Queue the build of `template`'s golden LV on `host`; ServiceError when the host has no thin pool."""
    if not host.thin_pool:
        raise ServiceError(
            _("Host %(host)s has no thin pool: a golden LV is a thin volume. Set the host's thin pool first.")
            % {"host": host.name},
            field="host",
        )
    args = {"template_id": template.pk, "volume": golden_volume_name(template)}
    return _enqueue(host, GOLDEN_KIND, template.name, args, len(GOLDEN_STEPS), actor)


def uses_thin(template: LabTemplate) -> bool:
    """Whether the template's guests may be thin clones (placement then keeps them off nearly full pools)."""
    return template.clone_method == LabTemplate.CloneMethod.THIN or bool(template.golden_volume)


def clone_method_on(template: LabTemplate, thin_pool: str, volumes) -> str:
    """How a guest of `template` is cloned on a host: a thin snapshot when the host's VG has a thin pool and the
    template's golden LV is among `volumes` (the host's LV names), whatever the template's default; else its
    method (mkfs unless the admin chose otherwise). A template set to thin by hand stays thin."""
    if template.clone_method == LabTemplate.CloneMethod.THIN:
        return template.clone_method
    if thin_pool and template.golden_volume and template.golden_volume in volumes:
        return LabTemplate.CloneMethod.THIN
    return template.clone_method


def _enqueue(host: Host, kind: str, target: str, args: dict, steps: int, actor) -> Task:
    with transaction.atomic():
        task = Task.objects.create(
            kind=kind,
            host=host,
            actor=actor,
            target=target,
            args=args,
            steps_total=steps,
            rq_job_id=queueing.new_job_id(host),
        )
        event = AuditEvent.objects.create(
            actor=actor, action=kind, target=target, result=AuditEvent.Result.REQUESTED, task=task
        )

        def undo() -> None:
            # Nothing was queued: leave no Task that would look lost later.
            event.delete()
            task.delete()

        queueing.enqueue_after_commit([task], undo)
    return task
