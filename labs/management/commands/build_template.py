"""Queue a template build (debootstrap or mmdebstrap) on a host's worker; the job registers the LabTemplate."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from labs.dom0.errors import InvalidName
from labs.dom0.template import INITS, TOOLS, TemplateBuilder
from labs.models import Host, Task
from labs.services.errors import ServiceError
from labs.services.templates import default_path, enqueue_template_build, make_spec


class Command(BaseCommand):
    help = (
        "Build a guest template on a dom0 with debootstrap (suite and mirror from XENPANEL_TEMPLATE_SUITE /"
        " XENPANEL_TEMPLATE_MIRROR unless given) and register it as a LabTemplate."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="template name, e.g. debian-12")
        parser.add_argument("--host", required=True, help="the Host (dom0) whose worker builds it")
        parser.add_argument("--suite", help="Debian suite (default: XENPANEL_TEMPLATE_SUITE)")
        parser.add_argument("--mirror", help="Debian mirror URL (default: XENPANEL_TEMPLATE_MIRROR)")
        parser.add_argument("--path", help="directory on the dom0 (default: /srv/xenpanel/templates/<name>)")
        parser.add_argument("--tool", choices=TOOLS, default="debootstrap")
        parser.add_argument(
            "--init", choices=INITS, default="systemd", help="the guests' init (sysvinit boots faster)"
        )
        parser.add_argument("--kernel", default="", help="a dom0 kernel the guests boot (default: one in the tree)")
        parser.add_argument("--ramdisk", default="", help="the initrd that goes with --kernel")
        parser.add_argument("--replace", action="store_true", help="rebuild over an existing tree at --path")
        parser.add_argument("--wait", action="store_true", help="wait for the job and print its log")
        parser.add_argument("--dry-run", action="store_true", help="print what the dom0 would run; queue nothing")

    def handle(self, *args, name: str, host: str, **options) -> None:
        row = Host.objects.filter(name=host).first()
        if row is None:
            raise CommandError(f"no such host: {host}")
        try:
            spec = make_spec(
                path=options["path"] or default_path(name),
                suite=options["suite"],
                mirror=options["mirror"],
                tool=options["tool"],
                replace=options["replace"],
                init=options["init"],
                kernel=options["kernel"],
                ramdisk=options["ramdisk"],
            )
        except InvalidName as e:
            raise CommandError(str(e)) from None
        if options["dry_run"]:
            self.stdout.write(f"would queue on {row.queue_name} (host {row.name}), then run there:")
            for line in TemplateBuilder.plan(spec):
                self.stdout.write(f"  {line}")
            self.stdout.write(f"and register LabTemplate {name!r} at {spec.path}")
            return
        try:
            task = enqueue_template_build(row, name, spec)
        except ServiceError as e:
            raise CommandError(str(e.message)) from None
        self.stdout.write(f"task {task.pk}: build of {name} at {spec.path} queued on {row.queue_name}")
        if not options["wait"]:
            return
        while True:
            task.refresh_from_db()
            if task.status in (Task.Status.SUCCEEDED, Task.Status.FAILED):
                break
            time.sleep(2)
        self.stdout.write(task.log)
        if task.status == Task.Status.FAILED:
            raise CommandError(f"build failed: {task.error}")
        self.stdout.write(self.style.SUCCESS(f"template {name} registered"))
