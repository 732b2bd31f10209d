"""The state sync loop (Healthchecks' `sendalerts` style): one long-running process.

Every tick it queues a `sync_host` job on each host's queue (so `xl list`
and `xl info` run on that dom0's worker, once per host per tick), fails
tasks whose worker died, starts the teardown of expired labs and finishes
teardowns that waited for busy guests. SIGTERM or SIGINT ends it after the
current tick.
"""

from __future__ import annotations

import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from labs.services import upkeep


class Command(BaseCommand):
    help = "Sync guest and host state every few seconds, detect lost jobs and expire labs."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between ticks (default 5)")
        parser.add_argument("--once", action="store_true", help="run one tick and exit")

    def handle(self, *args, interval: float, once: bool, **options) -> None:
        self.shutdown = False

        def stop(signum, frame) -> None:
            self.shutdown = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"sync_loop: every {interval:g} s")
        while not self.shutdown:
            started = time.monotonic()
            close_old_connections()
            summary = upkeep.tick()
            if options["verbosity"] > 1 or summary["errors"] or summary["lost"] or summary["expired"]:
                self.stdout.write(f"sync_loop: {summary}")
            if once:
                break
            # Sleep in short slices so a SIGTERM is honoured promptly.
            while not self.shutdown and time.monotonic() - started < interval:
                time.sleep(min(0.2, interval))
        self.stdout.write("sync_loop: stopped")
