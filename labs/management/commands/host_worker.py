from __future__ import annotations

from functools import partial

import django_rq
from django.core.management.base import BaseCommand
from rq.logutils import setup_loghandlers

from labs.jobs.pool import HostWorkerPool, jobs_at_a_time


class Command(BaseCommand):
    help = (
        "Run a host's RQ workers: as many at once as the host's 'jobs at a time' (read again every few seconds),"
        " each a labs.jobs.HostWorker on the given queues."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("queues", nargs="+", help="the host's RQ queue (and 'default' on the panel server)")
        parser.add_argument("--burst", action="store_true", help="stop once the queues are empty (tests, benches)")

    def handle(self, *args, **options) -> None:
        level = {0: "WARNING", 1: "INFO"}.get(options["verbosity"], "DEBUG")
        setup_loghandlers(level)
        queues = options["queues"]
        pool = HostWorkerPool(queues, django_rq.get_connection(queues[0]), partial(jobs_at_a_time, queues))
        pool.start(burst=options["burst"], logging_level=level)
