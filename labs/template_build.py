"""Template builds: a Task on the host's queue that runs debootstrap on that dom0 and registers a LabTemplate.

`enqueue_template_build()` (used by `manage.py build_template` and the admin
action) writes the Task row and queues `build_template_job` on the host's
queue once the row is committed; the job runs `labs.dom0.template` through
the host's own runner, logs every command on the Task, and on success
creates or updates the LabTemplate row that points at the new tree, its
kernel and its initrd.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from redis.exceptions import RedisError
from rq import Queue

from labs.dom0.errors import Dom0Error
from labs.dom0.template import TemplateBuilder, TemplateSpec
from labs.jobs import Recorder, StepFailed, _finish, connect_host
from labs.models import AuditEvent, Host, LabTemplate, Task
from labs.services import queueing
from labs.services.errors import QueueUnavailable, ServiceError

KIND = "build_template"
JOB_FUNC = "labs.template_build.build_template_job"
STEPS = ("check", "bootstrap", "register")
# The bootstrap step alone may take most of an hour on a slow mirror.
JOB_TIMEOUT = 2 * 3600
# Where templates go when no path is given.
TEMPLATE_ROOT = "/srv/xenpanel/templates"
# A root volume must hold the tree plus room for the student's work.
MIN_ROOT_MB = 4096


def default_path(name: str) -> str:
    return f"{TEMPLATE_ROOT}/{name}"


def make_spec(
    *, path: str, suite: str | None = None, mirror: str | None = None, tool: str = "debootstrap", replace: bool = False
) -> TemplateSpec:
    """A TemplateSpec with the settings' suite and mirror as defaults; InvalidName on a bad value."""
    spec = TemplateSpec(
        path=path,
        suite=suite or settings.XENPANEL_TEMPLATE_SUITE,
        mirror=mirror or settings.XENPANEL_TEMPLATE_MIRROR,
        tool=tool,  # type: ignore[arg-type]
        replace=replace,
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
            rq_job_id=f"xenpanel-{uuid.uuid4().hex}",
        )
        AuditEvent.objects.create(actor=actor, action=KIND, target=name, result=AuditEvent.Result.REQUESTED, task=task)

    def send() -> None:
        try:
            # A plain rq Queue: the Task row is committed already (below), so
            # django-rq's own on-commit deferral would only hide a Redis error.
            Queue(host.queue_name, connection=queueing.redis_connection(host.queue_name)).enqueue_call(
                JOB_FUNC,
                args=(task.pk,),
                job_id=task.rq_job_id,
                timeout=JOB_TIMEOUT,
                result_ttl=3600,
                failure_ttl=7 * 24 * 3600,
                description=f"{KIND} {name} on {host.name}",
            )
        except RedisError as e:
            # Nothing was queued: leave no Task that would look lost later.
            with transaction.atomic():
                AuditEvent.objects.filter(task=task).delete()
                task.delete()
            raise QueueUnavailable(
                _("The job queue (Redis) is not reachable, so nothing was started. (%(error)s)") % {"error": e}
            ) from None

    # A worker must never pick up a job whose Task row it cannot see yet.
    if connection.in_atomic_block:
        transaction.on_commit(send)
    else:
        send()
    return task


def _register(task: Task, result) -> LabTemplate:
    name = task.args["name"]
    template, created = LabTemplate.objects.get_or_create(
        name=name,
        defaults={"rootfs_path": result.path, "kernel": result.kernel, "ramdisk": result.ramdisk},
    )
    template.rootfs_path = result.path
    template.kernel = result.kernel
    template.ramdisk = result.ramdisk
    template.root_device = task.args.get("root_device", "xvda")
    template.fs_type = task.args.get("fs_type", "ext4")
    # mkfs -d clones need the whole tree plus room to work in.
    template.root_size_mb = max(template.root_size_mb, MIN_ROOT_MB, 2 * result.size_mb)
    template.full_clean()
    template.save()
    return template


def build_template_job(task_id: int) -> str:
    """The RQ job: build the tree on this dom0, then register it."""
    task = Task.objects.select_related("host").filter(pk=task_id).first()
    if task is None:
        return f"task {task_id} no longer exists"
    claimed = Task.objects.filter(pk=task.pk, status=Task.Status.QUEUED).update(
        status=Task.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return f"task {task_id} is already {task.status}"
    task.status, task.started_at = Task.Status.RUNNING, timezone.now()
    if task.host is None:
        _finish(task, False, "The host no longer exists.")
        return "no host"
    host = connect_host(task.host)
    rec = Recorder(task, host, task.host.volume_group)
    rec.log(f"build template {task.target} on {task.host.name}")
    args = task.args
    try:
        with rec.step("check"):
            runner = getattr(host, "runner", None)
            if runner is None:
                raise Dom0Error(
                    "template builds run debootstrap on a real dom0; this worker runs the simulated one"
                    " (XENPANEL_DOM0=simulated)"
                )
            spec = TemplateSpec(
                path=args["path"],
                suite=args["suite"],
                mirror=args["mirror"],
                tool=args["tool"],
                arch=args.get("arch", "amd64"),
                extra_packages=tuple(args.get("extra_packages", ())),
                replace=bool(args.get("replace")),
                root_device=args.get("root_device", "xvda"),
                fs_type=args.get("fs_type", "ext4"),
            )
            builder = TemplateBuilder(runner, log=rec.log)
            builder.check(spec)
            rec.save()
        with rec.step("bootstrap"):
            result = rec.call(builder.build, spec)
            rec.log(f"built {result.path} ({result.size_mb} MiB), kernel {result.kernel}")
            rec.save()
        with rec.step("register"):
            template = _register(task, result)
            rec.log(f"registered template {template.name} (#{template.pk})")
        _finish(task, True)
        return "ok"
    except (StepFailed, Dom0Error) as e:
        step, error = (e.step, e.error) if isinstance(e, StepFailed) else (task.step or "check", e)
        rec.log(f"FAILED in step {step}:\n{error.detail()}")
        _finish(task, False, f"{step}: {error.detail()}")
        return "failed"
    except Exception as e:
        rec.log(f"FAILED with an internal error: {e!r}")
        _finish(task, False, f"internal error: {e!r}")
        raise
