"""Queue a health check (xl info, VG space, bridge, dom0 reserve) on each host's worker."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from labs.models import Host
from labs.services import upkeep


class Command(BaseCommand):
    help = "Queue a health check on every host (or the named ones); results appear on the Host rows."

    def add_arguments(self, parser) -> None:
        parser.add_argument("hosts", nargs="*", help="host names (default: all)")

    def handle(self, *args, hosts: list[str], **options) -> None:
        rows = Host.objects.all()
        if hosts:
            rows = rows.filter(name__in=hosts)
            missing = set(hosts) - set(rows.values_list("name", flat=True))
            if missing:
                raise CommandError(f"no such host: {', '.join(sorted(missing))}")
        for host in rows:
            job = upkeep.enqueue_health_check(host)
            state = f"queued on {host.queue_name}" if job else "already queued"
            self.stdout.write(f"{host.name}: health check {state}")
