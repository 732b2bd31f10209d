from __future__ import annotations

from django.core.management.base import BaseCommand

from labs.models import Host


class Command(BaseCommand):
    help = "Print the RQ queue name of every host, one per line."

    def handle(self, *args, **options) -> None:
        # Disabled hosts only refuse new guests; their existing guests still
        # need a worker for start, shutdown, teardown and the state sync.
        for name in Host.objects.values_list("queue_name", flat=True):
            self.stdout.write(name)
