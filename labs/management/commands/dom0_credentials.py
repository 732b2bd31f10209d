"""Create or rotate a dom0's own database role and Redis user, and print its environment file."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from labs.models import Host
from labs.services import credentials


class Command(BaseCommand):
    help = (
        "Give a dom0 its own PostgreSQL role (its own rows only, no secrets) and Redis user (its own queue and"
        " jobs only), and print its /etc/xenpanel/xenpanel.env. Run again to rotate both passwords."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("host", help="the host's name in the panel")
        parser.add_argument("--database-host", help="the panel's database as the dom0 reaches it (default: as here)")
        parser.add_argument("--redis-host", help="the panel's Redis as the dom0 reaches it (default: as here)")

    def handle(self, *args, host: str, database_host: str | None, redis_host: str | None, **options) -> None:
        row = Host.objects.filter(name=host).first()
        if row is None:
            raise CommandError(f"no host named {host!r}; add it in the admin first")
        try:
            made = credentials.provision(row, database_host=database_host, redis_host=redis_host)
        except ValueError as e:
            raise CommandError(str(e)) from None
        self.stdout.write(made.env_file(), ending="")
        if not made.redis_saved:
            self.stderr.write(
                f"warning: Redis could not save the user {credentials.redis_user(row)} (no ACL file, no configuration"
                " file to rewrite): it is lost when Redis restarts. Configure an aclfile (or start Redis from its"
                " configuration file) and run this again."
            )
