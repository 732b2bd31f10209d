"""`manage.py console_agent --host <name>`: serve the browser consoles of one dom0 (see labs.jobs.console)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from labs.jobs.console import run_agent
from labs.models import Host


class Command(BaseCommand):
    help = "Serve the browser consoles of the guests of one host: xl console in a pty, through Redis."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", required=True, help="the Host's name, as in the admin")

    def handle(self, *args, host: str, **options) -> None:
        row = Host.objects.filter(name=host).first()
        if row is None:
            raise CommandError(f"no host named {host!r}")
        self.stdout.write(f"console_agent: serving the consoles of {row.name} (queue {row.queue_name})")
        try:
            run_agent(row)
        except RuntimeError as e:
            raise CommandError(str(e)) from None
        self.stdout.write("console_agent: stopped")
