"""`manage.py console_agent --host <name>`: serve the browser consoles of one dom0 (see labs.jobs.console).

The Host row may come after the agent (a dom0 set up before an admin adds it): the agent waits for it.
`--check [--wait SECONDS]` serves nothing: it exits 0 once the host's agent has checked in with Redis
(deploy/dom0-setup.md runs it on the panel once the Host exists).
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from labs.models import Host
from labs.services import console

HOST_POLL_SECONDS = 5.0


class Command(BaseCommand):
    help = "Serve the browser consoles of the guests of one host: xl console in a pty, through Redis."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", required=True, help="the Host's name, as in the admin")
        parser.add_argument("--check", action="store_true", help="only check that the host's agent is running")
        parser.add_argument("--wait", type=float, default=0, help="with --check: wait up to this many seconds")

    def handle(self, *args, host: str, check: bool, wait: float, **options) -> None:
        deadline = time.monotonic() + wait if check else float("inf")
        row = self.host_row(host, deadline)
        if check:
            self.check_running(row, deadline)
            return
        from labs.jobs.console import run_agent  # the agent's code, only when serving

        self.stdout.write(f"console_agent: serving the consoles of {row.name} (queue {row.queue_name})")
        try:
            run_agent(row)
        except RuntimeError as e:
            raise CommandError(str(e)) from None
        self.stdout.write("console_agent: stopped")

    def host_row(self, name: str, deadline: float) -> Host:
        said = False
        while (row := Host.objects.filter(name=name).first()) is None:
            if time.monotonic() >= deadline:
                raise CommandError(f"no host named {name!r}")
            if not said:
                self.stdout.write(f"console_agent: no Host {name!r} yet; waiting for it to be added in the admin")
                said = True
            close_old_connections()
            time.sleep(HOST_POLL_SECONDS)
        return row

    def check_running(self, row: Host, deadline: float) -> None:
        while not console.agent_running(row.queue_name):
            if time.monotonic() >= deadline:
                raise CommandError(f"no console agent has checked in for {row.name} (queue {row.queue_name})")
            time.sleep(1)
        self.stdout.write(f"console_agent: the agent for {row.name} is running")
