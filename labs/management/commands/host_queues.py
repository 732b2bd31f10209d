from __future__ import annotations

from django.core.management.base import BaseCommand

from labs.models import Host


class Command(BaseCommand):
    help = "Print the RQ queue name of every enabled host, one per line."

    def handle(self, *args, **options) -> None:
        for name in Host.objects.filter(enabled=True).values_list("queue_name", flat=True):
            self.stdout.write(name)
