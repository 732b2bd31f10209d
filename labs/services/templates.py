"""Template builds, the service side: check the request, record the Task and queue it on the host's worker.

Used by `manage.py build_template` and the admin action; the job itself is
`labs.jobs.template.build_template_job`.
"""

from __future__ import annotations

from dataclasses import asdict

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from labs.dom0.template import TemplateBuilder, TemplateSpec
from labs.models import AuditEvent, Host, Task
from labs.services import queueing
from labs.services.errors import ServiceError

KIND = "build_template"
STEPS = ("check", "bootstrap", "register")
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
    with transaction.atomic():
        task = Task.objects.create(
            kind=KIND,
            host=host,
            actor=actor,
            target=name,
            args={"name": name, **asdict(spec), "extra_packages": list(spec.extra_packages)},
            steps_total=len(STEPS),
            rq_job_id=queueing.new_job_id(host),
        )
        event = AuditEvent.objects.create(
            actor=actor, action=KIND, target=name, result=AuditEvent.Result.REQUESTED, task=task
        )

        def undo() -> None:
            # Nothing was queued: leave no Task that would look lost later.
            event.delete()
            task.delete()

        queueing.enqueue_after_commit([task], undo)
    return task
