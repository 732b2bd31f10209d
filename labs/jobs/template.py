"""The template jobs: build the tree (debootstrap) on this dom0 and register it; build a template's golden LV.

`labs.services.templates` records the Task and queues the job on the host's
queue; the job runs `labs.dom0.template` through the host (`template_ops`:
the real dom0's runner, or the simulated dom0, which runs nothing), logs every
command on the Task as it goes (the panel's build page follows it) and, on
success, creates or updates the LabTemplate row that points at the new tree,
its kernel and its initrd, or at its golden LV.
"""

from __future__ import annotations

from labs.dom0.base import Dom0Host
from labs.dom0.errors import Dom0Error
from labs.dom0.template import TemplateBuilder, TemplateHost, TemplateResult, TemplateSpec, template_ops
from labs.jobs import connect
from labs.jobs.progress import Recorder, StepFailed, claim, finish
from labs.models import LabTemplate, Task
from labs.services.templates import MIN_ROOT_MB, golden_volume_name


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
    return _run(rec, _build_steps)


def _live_log(rec: Recorder):
    """A log that is written as it grows: a build runs for minutes and its page shows every command."""

    def log(line: str) -> None:
        rec.log(line)
        rec.save()

    return log


def _build_steps(rec: Recorder) -> None:
    task = rec.task
    with rec.step("check"):
        ops = template_ops(rec.host)
        spec = TemplateBuilder.check(_spec(task.args))
        rec.save()
    with rec.step("bootstrap"):
        result = rec.call(ops.build_template, spec, _live_log(rec))
        rec.log(f"built {result.path} ({result.size_mb} MiB), kernel {result.kernel}")
        rec.save()
    with rec.step("register"):
        template = _register(task, result)
        rec.log(f"registered template {template.name} (#{template.pk})")


def _run(rec: Recorder, steps) -> str:
    """Run a template job's steps; the task ends succeeded, or failed with the step and the dom0's words."""
    task = rec.task
    try:
        steps(rec)
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


# ---------------------------------------------------------------- the golden LV
def build_golden_job(task_id: int) -> str:
    """The RQ job: fill a thin volume with the template's tree and make it the template's golden LV.

    Built under `<name>.new` and renamed into place at the end, so a thin
    clone never snapshots a half-built golden LV; guests already cloned from
    an older one keep their data (a thin snapshot outlives its origin).
    """
    task = Task.objects.select_related("host").filter(pk=task_id).first()
    if task is None:
        return f"task {task_id} no longer exists"
    if not claim(task):
        return f"task {task_id} is already {task.status}"
    template = LabTemplate.objects.filter(pk=task.args.get("template_id")).first()
    if task.host is None or template is None:
        finish(task, False, "The host or the template no longer exists.")
        return "gone"
    host = connect.connect_host(task.host)
    rec = Recorder(task, host, task.host.volume_group)
    rec.log(f"build the golden LV of template {template.name} on {task.host.name}")
    return _run(rec, lambda r: _golden_steps(r, host, template))


def _golden_steps(rec: Recorder, host: Dom0Host, template: LabTemplate) -> None:
    name = golden_volume_name(template)
    partial = f"{name}.new"
    with rec.step("check"):
        if not rec.task.host or not rec.task.host.thin_pool:
            raise Dom0Error(f"host {rec.task.host} has no thin pool: a golden LV is a thin volume")
        ops: TemplateHost = template_ops(host)
        existing = {v.name for v in rec.call(host.list_volumes)}
        if partial in existing:
            # Left over from a build that crashed: start again from nothing.
            rec.call(host.remove_volume, partial)
            rec.log(f"removed the unfinished {partial}")
        rec.save()
    with rec.step("volume"):
        vol = rec.call(ops.create_thin_volume, partial, template.root_size_mb)
        rec.log(f"created thin volume {vol.path} ({template.root_size_mb} MiB)")
        rec.save()
    with rec.step("fill"):
        rec.call(host.clone_template, template.rootfs_path, vol.path, template.fs_type, "mkfs")
        rec.log(f"mkfs.{template.fs_type} -d {template.rootfs_path} {vol.path}")
        rec.save()
    with rec.step("swap in"):
        if name in existing:
            rec.call(host.remove_volume, name)
            rec.log(f"removed the old golden LV {name}")
        rec.call(ops.rename_volume, partial, name)
        rec.log(f"renamed {partial} to {name}")
        LabTemplate.objects.filter(pk=template.pk).update(golden_volume=name)
        rec.log(f"template {template.name}: golden LV {name}; hosts with a thin pool now clone it by thin snapshot")
