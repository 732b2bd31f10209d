"""Per-dom0 credentials with least privilege: a PostgreSQL role and a Redis ACL user for each host.

A dom0 is trusted less than the panel server (its guests' owners are root in
them, and some study security), so one broken dom0 must not own the panel or
the other hosts. Each gets:

- a PostgreSQL role whose grants cover only the tables and columns its jobs
  read or write (no password hashes, no sessions), with row-level security
  limiting the guest, task, audit, host and key tables to its own host;
- a Redis user that reaches only its own queue, its own jobs' keys (job ids
  carry the host: `queueing.new_job_id`) and its own console streams.

`manage.py dom0_credentials <host>` runs `provision()` on the panel server,
as the database's owner and a Redis user allowed ACL SETUSER, and prints the
dom0's environment file. Running it again rotates both passwords.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from django.db import connection
from psycopg import sql
from redis import Redis
from redis.exceptions import ResponseError

from labs.models import (
    AuditEvent,
    Guest,
    Host,
    HostUsageSample,
    IpPool,
    Lab,
    LabTemplate,
    SavePoint,
    SshKey,
    Task,
    UsageCursor,
    UsageSample,
    UsageTotal,
)
from labs.services import queueing

# A usage ring's point is overwritten in place (labs.services.usage).
_RING_COLUMNS = (
    "bucket",
    "n",
    "cpu",
    "cpu_max",
    "mem_mb",
    "mem_max_mb",
    "net_rx",
    "net_tx",
    "disk_read",
    "disk_write",
)
# What a dom0's jobs write, by model: every other column is read-only to it.
# (SELECT is granted on the whole row of the models in READ.)
UPDATES: dict[type, tuple[str, ...]] = {
    Host: (
        "total_memory_mb",
        "free_memory_mb",
        "xen_version",
        "last_seen",
        "health_ok",
        "health_report",
        "health_checked_at",
        "vg_size_mb",
        "vg_free_mb",
    ),
    Guest: ("status", "last_error", "observed_state", "observed_at", "busy_with", "memory_mb"),
    Task: ("status", "started_at", "finished_at", "error", "log", "dom0_seconds", "step", "steps_done", "guest_id"),
    AuditEvent: ("result", "message", "guest_id"),
    UsageSample: _RING_COLUMNS,
    HostUsageSample: _RING_COLUMNS,
    UsageTotal: ("run_seconds", "cpu_seconds", "peak_memory_mb", "last_seen", "guest_id"),
    UsageCursor: ("state",),
    SavePoint: ("status", "size_mb"),
}
_USAGE: tuple[type, ...] = (UsageSample, HostUsageSample, UsageTotal, UsageCursor)
READ: tuple[type, ...] = (Host, Guest, Task, AuditEvent, Lab, LabTemplate, IpPool, SshKey, SavePoint, *_USAGE)
# Template builds register their result; the sync writes usage samples; a teardown deletes its guest
# (and with it the guest's samples and save points); a save point's job deletes it when its volume is gone.
INSERT: tuple[type, ...] = (LabTemplate, *_USAGE)
UPDATE_ALL: tuple[type, ...] = (LabTemplate,)
DELETE: tuple[type, ...] = (Guest, UsageSample, SavePoint)
# Models whose rows a dom0 sees only for its own host, and how to say which. A dom0 is its queue
# name, not its row's id, which a re-created Host row would change under a running worker.
_MINE = "(SELECT id FROM labs_host WHERE queue_name = {queue})"
ROW_POLICIES: dict[type, str] = {
    Host: "queue_name = {queue}",
    Guest: f"host_id IN {_MINE}",
    Task: f"host_id IN {_MINE}",
    # Its jobs' outcomes, and the rows that point at its guests. A teardown clears the guest of those, and
    # PostgreSQL wants a row it updates by id to stay visible: one with no task (a refused action, a console
    # session) then names nothing but the VM, whose name is still its live guest's while the teardown runs.
    AuditEvent: (
        f"task_id IN (SELECT id FROM labs_task WHERE host_id IN {_MINE})"
        f" OR guest_id IN (SELECT id FROM labs_guest WHERE host_id IN {_MINE})"
        f" OR (task_id IS NULL AND guest_id IS NULL"
        f" AND target IN (SELECT domain_name FROM labs_guest WHERE host_id IN {_MINE}))"
    ),
    # The public keys of its guests' students, which provisioning writes into the guests.
    SshKey: f"user_id IN (SELECT student_id FROM labs_guest WHERE host_id IN {_MINE})",
    # Usage: its guests' samples, its own host's, and the totals and cursor it keeps (by host: a total
    # outlives its guest, and the teardown that deletes the guest sets the total's guest to null).
    UsageSample: f"guest_id IN (SELECT id FROM labs_guest WHERE host_id IN {_MINE})",
    HostUsageSample: f"host_id IN {_MINE}",
    UsageTotal: f"host_id IN {_MINE}",
    UsageCursor: f"host_id IN {_MINE}",
    # Its guests' save points: the jobs mark them taken, and delete them with their volume.
    SavePoint: f"guest_id IN (SELECT id FROM labs_guest WHERE host_id IN {_MINE})",
}


@dataclass(frozen=True)
class Dom0Credentials:
    host: Host
    database_url: str
    redis_url: str
    # Where Redis keeps the new user across its restarts: "aclfile", "config" (CONFIG REWRITE), or "" (nowhere).
    redis_saved: str = ""

    def env_file(self) -> str:
        """The dom0's /etc/xenpanel/xenpanel.env: its own credentials and profile, no panel secret."""
        return (
            f"# xenpanel on {self.host.name}: made by `manage.py dom0_credentials {self.host.name}` on the panel.\n"
            "# This dom0's own credentials. It holds no SECRET_KEY and no other host's access.\n"
            "DJANGO_SETTINGS_MODULE=xenpanel.settings_dom0\n"
            "XENPANEL_DOM0=xen\n"
            f"DATABASE_URL={self.database_url}\n"
            f"REDIS_URL={self.redis_url}\n"
        )


def role_name(host: Host) -> str:
    """The host's PostgreSQL role: per database, so two panels on one cluster do not share roles."""
    return f"{connection.settings_dict['NAME']}_dom0_{host.queue_name}"[-63:]


def redis_user(host: Host) -> str:
    return f"xenpanel-dom0-{host.queue_name}"


def _table(model: type) -> sql.Identifier:
    return sql.Identifier(model._meta.db_table)  # type: ignore[attr-defined]


def _columns(model: type, names: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def database_statements(host: Host, password: str) -> list[sql.Composable]:
    """Create or update the host's role: login with `password`, the grants above, and its row policies."""
    role = sql.Identifier(role_name(host))
    queue = sql.Literal(host.queue_name)
    stmts: list[sql.Composable] = [
        sql.SQL(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN CREATE ROLE {role}; END IF;"
            " END $$"
        ).format(name=sql.Literal(role_name(host)), role=role),
        sql.SQL("ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD {pw}").format(
            role=role, pw=sql.Literal(password)
        ),
        sql.SQL("GRANT CONNECT ON DATABASE {db} TO {role}").format(
            db=sql.Identifier(connection.settings_dict["NAME"]), role=role
        ),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {role}").format(role=role),
    ]
    for model in READ:
        stmts.append(sql.SQL("GRANT SELECT ON {t} TO {role}").format(t=_table(model), role=role))
    for model, cols in UPDATES.items():
        stmts.append(
            sql.SQL("GRANT UPDATE ({c}) ON {t} TO {role}").format(c=_columns(model, cols), t=_table(model), role=role)
        )
    for model in UPDATE_ALL:
        stmts.append(sql.SQL("GRANT UPDATE ON {t} TO {role}").format(t=_table(model), role=role))
    for model in INSERT:
        stmts.append(sql.SQL("GRANT INSERT ON {t} TO {role}").format(t=_table(model), role=role))
    for model in DELETE:
        stmts.append(sql.SQL("GRANT DELETE ON {t} TO {role}").format(t=_table(model), role=role))
    for model, where in ROW_POLICIES.items():
        policy = sql.Identifier(f"{role_name(host)}_rows"[-63:])
        stmts += [
            sql.SQL("ALTER TABLE {t} ENABLE ROW LEVEL SECURITY").format(t=_table(model)),
            sql.SQL("DROP POLICY IF EXISTS {p} ON {t}").format(p=policy, t=_table(model)),
            sql.SQL("CREATE POLICY {p} ON {t} FOR ALL TO {role} USING (" + where + ")").format(
                p=policy, t=_table(model), role=role, queue=queue
            ),
        ]
    return stmts


def redis_rules(host: Host) -> list[str]:
    """ACL SETUSER rules: the host's queue, registries and jobs, rq's worker bookkeeping, its console streams."""
    q, jobs = host.queue_name, queueing.job_id_prefix(host.queue_name)
    return [
        # Keys: its queue and rq's per-queue registries (rq:<registry>:<queue>), its own jobs
        # and their results and executions, and the worker bookkeeping rq shares between workers.
        f"~rq:queue:{q}",
        f"~rq:queue:{q}:*",
        f"~rq:*:{q}",
        f"~rq:job:{jobs}*",
        f"~rq:job::{jobs}*",  # rq 2 spells a job's dependencies key with two colons
        f"~rq:results:{jobs}*",
        f"~rq:executions:{jobs}*",
        f"~rq:execution:{jobs}*",
        "~rq:queues",
        "~rq:workers",
        "~rq:worker:*",
        "~rq:suspended",
        f"~xenpanel:console:{q}:*",
        # rq's worker listens for commands on its own channel.
        "&rq:pubsub:*",
        # Commands: the ordinary ones, none of the administrative or dangerous ones.
        "+@all",
        "-@admin",
        "-@dangerous",
        "+info",  # rq reads the server's version at start-up
        "+client|setname",
        "+client|getname",
        "+client|id",
    ]


def provision(host: Host, database_host: str | None = None, redis_host: str | None = None) -> Dom0Credentials:
    """Create or rotate the host's database role and Redis user; their URLs as the dom0 reaches the panel.

    `database_host` and `redis_host` replace the host part of the panel's own
    URLs (the panel may reach them on loopback, a dom0 over the network).
    """
    if connection.vendor != "postgresql":
        raise ValueError("per-dom0 database roles need PostgreSQL (SQLite is one file on the panel machine)")
    db_password, redis_password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    with connection.cursor() as cursor:
        for stmt in database_statements(host, db_password):
            cursor.execute(stmt)
    conn: Redis = queueing.redis_connection(host.queue_name)
    conn.execute_command("ACL", "SETUSER", redis_user(host), "reset", "on", f">{redis_password}", *redis_rules(host))
    saved = persist_redis_users(conn)
    db = connection.settings_dict
    address = f"{database_host or db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    database_url = urlunsplit(
        ("postgres", f"{quote(role_name(host))}:{quote(db_password)}@{address}", f"/{db['NAME']}", "", "")
    )
    panel_redis = urlsplit(_panel_redis_url())
    netloc = f"{quote(redis_user(host))}:{quote(redis_password)}@{redis_host or panel_redis.hostname}"
    if panel_redis.port:
        netloc += f":{panel_redis.port}"
    redis_url = urlunsplit((panel_redis.scheme, netloc, panel_redis.path, panel_redis.query, ""))
    return Dom0Credentials(host, database_url, redis_url, saved)


def revoke(host: Host) -> None:
    """Drop the host's role and Redis user (a dom0 taken out of service, or a test's)."""
    role = sql.Identifier(role_name(host))
    with connection.cursor() as cursor:
        for model in ROW_POLICIES:
            policy = sql.Identifier(f"{role_name(host)}_rows"[-63:])
            cursor.execute(sql.SQL("DROP POLICY IF EXISTS {p} ON {t}").format(p=policy, t=_table(model)))
        cursor.execute(sql.SQL("SELECT 1 FROM pg_roles WHERE rolname = {n}").format(n=sql.Literal(role_name(host))))
        if cursor.fetchone():
            cursor.execute(sql.SQL("DROP OWNED BY {role}").format(role=role))
            cursor.execute(sql.SQL("DROP ROLE {role}").format(role=role))
    conn = queueing.redis_connection(host.queue_name)
    conn.execute_command("ACL", "DELUSER", redis_user(host))
    persist_redis_users(conn)


def persist_redis_users(conn: Redis) -> str:
    """Save Redis's users where it reads them at start-up; a user only in memory is gone after a restart.

    "aclfile" with an ACL file configured (ACL SAVE), "config" when Redis can
    rewrite its configuration file (CONFIG REWRITE keeps the users there),
    "" when it has neither (a Redis started without a configuration file).
    """
    for how, command in (("aclfile", ("ACL", "SAVE")), ("config", ("CONFIG", "REWRITE"))):
        try:
            conn.execute_command(*command)
        except ResponseError:
            continue
        return how
    return ""


def _panel_redis_url() -> str:
    from django.conf import settings

    return settings.REDIS_URL
