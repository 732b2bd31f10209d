"""The template-build job: debootstrap on this dom0, then register the tree as a LabTemplate.

`labs.services.templates` records the Task and queues this job on the
host's queue; the job runs `labs.dom0.template` through the host's own
runner, logs every command on the Task and, on success, creates or updates
the LabTemplate row that points at the new tree, its kernel and its initrd.
"""

from __future__ import annotations

from labs.dom0.errors import Dom0Error
from labs.dom0.template import TemplateBuilder, TemplateResult, TemplateSpec
from labs.jobs import connect
from labs.jobs.progress import Recorder, StepFailed, claim, finish
from labs.models import LabTemplate, Task
from labs.services.templates import MIN_ROOT_MB


def _register(task: Task, result: TemplateResult) -> LabTemplate:
    name = task.args["name"]
    template, _created = LabTemplate.objects.get_or_create(
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


def _spec(args: dict) -> TemplateSpec:
    return TemplateSpec(
        path=args["path"],
        suite=args["suite"],
        mirror=args["mirror"],
        tool=args["tool"],
        arch=args.get("arch", "amd64"),
        extra_packages=tuple(args.get("extra_packages", ())),
        replace=bool(args.get("replace")),
        root_device=args.get("root_device", "xvda"),
        fs_type=args.get("fs_type", "ext4"),
        init=args.get("init", "systemd"),
        kernel=args.get("kernel", ""),
        ramdisk=args.get("ramdisk", ""),
    )


def build_template_job(task_id: int) -> str:
    """The RQ job: build the tree on this dom0, then register it."""
    task = Task.objects.select_related("host").filter(pk=task_id).first()
    if task is None:
        return f"task {task_id} no longer exists"
    if not claim(task):
        return f"task {task_id} is already {task.status}"
    if task.host is None:
        finish(task, False, "The host no longer exists.")
        return "no host"
    host = connect.connect_host(task.host)
    rec = Recorder(task, host, task.host.volume_group)
    rec.log(f"build template {task.target} on {task.host.name}")
    try:
        with rec.step("check"):
            runner = getattr(host, "runner", None)
            if runner is None:
                raise Dom0Error(
                    "template builds run debootstrap on a real dom0; this worker runs the simulated one"
                    " (XENPANEL_DOM0=simulated)"
                )
            spec = _spec(task.args)
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
        finish(task, True)
        return "ok"
    except (StepFailed, Dom0Error) as e:
        step, error = (e.step, e.error) if isinstance(e, StepFailed) else (task.step or "check", e)
        rec.log(f"FAILED in step {step}:\n{error.detail()}")
        finish(task, False, f"{step}: {error.detail()}")
        return "failed"
    except Exception as e:
        rec.log(f"FAILED with an internal error: {e!r}")
        finish(task, False, f"internal error: {e!r}")
        raise
