"""tests/e2e: the product on the Xen testbed needs PostgreSQL (the dom0 worker shares the panel's database).

A run on PostgreSQL (CI) runs the `needs_postgres` tests directly, on
pytest-django's test database. A run on SQLite (a developer without
DATABASE_URL) cannot share its database with a worker inside QEMU, so those
tests are deselected and the `postgres_relay` test runs them again in a
nested pytest on the machine's PostgreSQL instead. Either way they run;
nothing is skipped.
"""

from __future__ import annotations

from django.db import connections


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "needs_postgres: runs on PostgreSQL (the dom0 worker shares the database)")
    config.addinivalue_line("markers", "postgres_relay: on SQLite, runs the needs_postgres tests on PostgreSQL")


def pytest_collection_modifyitems(config, items) -> None:
    on_postgres = connections["default"].vendor == "postgresql"
    # The systemd Debian guest boots for minutes under TCG: only when asked for by name.
    systemd_asked = "debian_systemd" in (config.option.markexpr or "")
    drop = [
        item
        for item in items
        if (item.get_closest_marker("needs_postgres") and not on_postgres)
        or (item.get_closest_marker("postgres_relay") and on_postgres)
        or (item.get_closest_marker("debian_systemd") and not systemd_asked)
    ]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item not in drop]
