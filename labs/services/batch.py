"""Create a lab batch: validate everything, then allocate and queue in one transaction."""

from __future__ import annotations

import re
import secrets
import string
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import get_hasher, make_password
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from labs.access import is_instructor
from labs.dom0 import names
from labs.dom0.errors import InvalidName
from labs.models import AuditEvent, Guest, Host, IpPool, Lab, LabTemplate, Task
from labs.roster import USERNAME_RE, RosterEntry
from labs.services import ipam, limits, queueing
from labs.services.actions import JOB_STEPS
from labs.services.errors import QuotaExceeded, ServiceError

# Lab short names become the first half of domain names and hostnames.
SLUG_RE = re.compile(r"[a-z][a-z0-9-]{0,19}(?<!-)")
PASSWORD_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "lI1O0o")
# The initial account password is random (~81 bits), so key stretching adds
# nothing; a cheap PBKDF2 keeps a 100-student batch under a second. Django
# re-hashes with its full iteration count at the student's first login.
INITIAL_PASSWORD_ITERATIONS = 1_000


@dataclass
class BatchResult:
    lab: Lab
    guests: list[Guest]
    new_accounts: list[tuple[str, str]] = field(default_factory=list)  # (username, password), shown once


@dataclass
class _Plan:
    entry: RosterEntry
    domain: str
    hostname: str
    user: object | None = None
    host: Host | None = None


def random_password(length: int = 14) -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def _initial_password_hash(password: str) -> str:
    try:
        hasher = get_hasher("pbkdf2_sha256")
    except ValueError:  # not in PASSWORD_HASHERS: use whatever the site uses
        return make_password(password)
    return hasher.encode(password, hasher.salt(), iterations=INITIAL_PASSWORD_ITERATIONS)


def guest_names(slug: str, username: str) -> tuple[str, str]:
    """(Xen domain name, hostname) for a student in a lab; InvalidName when they do not fit."""
    domain = names.domain_name(f"{slug}-{username}")
    # Hostnames allow neither '_' nor '.'; the domain name keeps the username as typed.
    hostname = names.hostname(re.sub(r"[_.]", "-", domain).strip("-")[:63])
    return domain, hostname


def _default_slug(name: str) -> str:
    base = slugify(name).replace("_", "-")[:16].strip("-") or "lab"
    if not base[0].isalpha():
        base = ("lab-" + base)[:16].strip("-")
    slug, n = base, 2
    while Lab.objects.filter(slug=slug).exclude(status=Lab.Status.TORN_DOWN).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def _check_request(instructor, template: LabTemplate, roster: list[RosterEntry], memory_mb: int, expires_at) -> None:
    if not is_instructor(instructor):
        raise ServiceError(_("Only instructors and administrators can create lab batches."))
    if not roster:
        raise ServiceError(_("The roster is empty: add at least one student."), field="roster")
    seen: set[str] = set()
    for entry in roster:
        if not USERNAME_RE.fullmatch(entry.username):
            raise ServiceError(_("%(name)r is not a valid username.") % {"name": entry.username}, field="roster")
        if entry.username in seen:
            raise ServiceError(_("%(name)s is on the roster twice.") % {"name": entry.username}, field="roster")
        seen.add(entry.username)
    limits.check_guest_memory(memory_mb, template, settings.XENPANEL_DEFAULT_LAB_MAX_GUEST_MEMORY_MB)
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError(_("The expiry date is in the past."), field="expires_at")


def _place(plans: list[_Plan], hosts: list[Host], memory_mb: int, disk_mb: int, thin: bool = False) -> None:
    """Put each guest on the enabled host with the most free memory (and room in its VG when known).

    `thin`: the guests are thin clones, so hosts whose thin pool was nearly
    full at their last health check get none (a full pool fails every guest
    on it). A pool not read yet is not held against its host.
    """
    if not hosts:
        raise ServiceError(_("No host accepts new guests: enable a host first."), field="hosts")
    allocated = limits.allocated_mb(hosts)
    free_mem: dict[int, int] = {}
    for host in hosts:
        free = limits.host_free_mb(host, allocated.get(host.pk, 0))
        # Rule: a host that has never reported its memory (no state sync or
        # health check yet) gets no new guests, rather than a guess.
        if free is not None:
            free_mem[host.pk] = free
    if not free_mem:
        raise ServiceError(
            _(
                "No host has reported its memory yet: wait for the state sync (a few seconds after its worker starts)"
                " or run manage.py check_hosts."
            ),
            field="hosts",
        )
    free_disk: dict[int, int | None] = {}
    for host in hosts:
        if host.vg_free_mb is None:
            free_disk[host.pk] = None
            continue
        # Volumes of guests not yet provisioned are not in vg_free_mb yet.
        pending = Guest.objects.filter(
            host=host, status__in=[Guest.Status.PENDING, Guest.Status.PROVISIONING]
        ).select_related("lab__template")
        promised = sum(g.lab.template.root_size_mb + g.lab.template.swap_size_mb for g in pending)
        free_disk[host.pk] = host.vg_free_mb - promised
    by_pk = {h.pk: h for h in hosts}
    full_pools = {}
    if thin:
        fills = {h.pk: limits.thin_pool_fill(h) for h in hosts}
        full_pools = {pk: fill for pk, fill in fills.items() if fill is not None and fill.full}
    for plan in plans:
        room = [
            pk
            for pk, free in free_mem.items()
            if free >= memory_mb and (free_disk[pk] is None or free_disk[pk] >= disk_mb)
        ]
        fits = [pk for pk in room if pk not in full_pools]
        if not fits and room:
            summary = "; ".join(f"{by_pk[pk].name} ({fill.describe()})" for pk, fill in sorted(full_pools.items()))
            raise QuotaExceeded(
                _(
                    "Not enough host capacity for thin clones: the thin pool is %(limit)d %% full or more on"
                    " %(summary)s at the last health check, so no new thin clones go there. Extend the pool or"
                    " remove guests, then run a health check."
                )
                % {"limit": limits.THIN_POOL_FULL_PERCENT, "summary": summary},
                field="hosts",
            )
        if not fits and any(free >= memory_mb for free in free_mem.values()):
            # Memory is there but no volume group can hold the root and swap
            # volumes: say so, or the instructor looks at free memory in vain.
            summary = ", ".join(
                f"{by_pk[pk].name}: {max(free, 0)} MiB" for pk, free in sorted(free_disk.items()) if free is not None
            )
            raise QuotaExceeded(
                _(
                    "Not enough host capacity: %(n)d guest(s) need %(disk)d MiB of disk each for their root and swap"
                    " volumes (free in the hosts' volume groups: %(summary)s)."
                )
                % {"n": len(plans), "disk": disk_mb, "summary": summary},
                field="hosts",
            )
        if not fits:
            summary = ", ".join(f"{by_pk[pk].name}: {max(free, 0)} MiB" for pk, free in sorted(free_mem.items()))
            raise QuotaExceeded(
                _(
                    "Not enough host capacity: %(n)d guest(s) of %(mem)d MiB do not fit (free memory after the dom0"
                    " reserve: %(summary)s)."
                )
                % {"n": len(plans), "mem": memory_mb, "summary": summary},
                field="hosts",
            )
        best = max(fits, key=lambda pk: (free_mem[pk], -pk))
        plan.host = by_pk[best]
        free_mem[best] -= memory_mb
        if free_disk[best] is not None:
            free_disk[best] -= disk_mb


def create_lab_batch(
    instructor,
    template: LabTemplate,
    pool: IpPool,
    roster: list[RosterEntry],
    memory_mb: int,
    hosts=None,
    expires_at: datetime | None = None,
    name: str | None = None,
    slug: str | None = None,
) -> BatchResult:
    """Create a lab with one guest per roster line and queue their provisioning.

    Everything is checked before anything is written; then one transaction
    locks the pool and hosts, allocates, writes and pings Redis. The jobs are
    sent when it commits; if Redis fails then, the rows are removed again.
    """
    _check_request(instructor, template, roster, memory_mb, expires_at)
    name = (name or "").strip() or f"{template.name} {timezone.localdate():%Y-%m-%d}"
    slug = (slug or "").strip() or _default_slug(name)
    if not SLUG_RE.fullmatch(slug):
        raise ServiceError(
            _("Use 1-20 lower-case letters, digits or '-' for the short name, starting with a letter."), field="slug"
        )
    plans: list[_Plan] = []
    for entry in roster:
        try:
            domain, hostname = guest_names(slug, entry.username)
            names.volume_name(f"vm-{domain}.raiz")
        except InvalidName:
            raise ServiceError(
                _(
                    "The guest name %(slug)s-%(user)s is too long or not valid: use a shorter lab short name"
                    " (domain names have at most 48 characters)."
                )
                % {"slug": slug, "user": entry.username},
                field="slug",
            ) from None
        plans.append(_Plan(entry, domain, hostname))

    User = get_user_model()
    try:
        with transaction.atomic():
            result = _create_locked(instructor, template, pool, plans, memory_mb, hosts, expires_at, name, slug, User)
    except IntegrityError:
        # Only a concurrent batch can get here (everything else was checked
        # under the locks): same short name, or a MAC drawn twice.
        raise ServiceError(
            _("Another batch was created at the same moment with a clashing name or address; submit again."),
            field="slug",
        ) from None
    return result


def _create_locked(instructor, template, pool, plans, memory_mb, hosts, expires_at, name, slug, User) -> BatchResult:
    pool = IpPool.objects.select_for_update().get(pk=pool.pk)
    host_qs = Host.objects.select_for_update().order_by("pk")
    if hosts is not None:
        host_rows = list(host_qs.filter(pk__in=[getattr(h, "pk", h) for h in hosts]))
        for h in host_rows:
            if not h.enabled:
                raise ServiceError(_("Host %(host)s does not accept new guests.") % {"host": h.name}, field="hosts")
    else:
        host_rows = list(host_qs.filter(enabled=True))
    if Lab.objects.filter(slug=slug).exclude(status=Lab.Status.TORN_DOWN).exists():
        raise ServiceError(_("The short name %(slug)s is in use by another lab.") % {"slug": slug}, field="slug")

    usernames = [p.entry.username for p in plans]
    existing = {u.username: u for u in User.objects.select_for_update().filter(username__in=usernames).order_by("pk")}
    for plan in plans:
        plan.user = existing.get(plan.entry.username)
    quotas = limits.quotas_for(existing.values())
    usage = limits.usage_for(existing.values())
    default_quota = limits.default_quota()
    for plan in plans:
        user = plan.user
        if user is None:
            limits.check_student_quota(User(username=plan.entry.username), default_quota, limits.Usage(), 1, memory_mb)
        else:
            limits.check_student_quota(user, quotas[user.pk], usage.get(user.pk, limits.Usage()), 1, memory_mb)

    thin = template.clone_method == LabTemplate.CloneMethod.THIN
    _place(plans, host_rows, memory_mb, template.root_size_mb + template.swap_size_mb, thin=thin)
    ips = ipam.allocate_ips(pool, len(plans))
    macs = ipam.allocate_macs(pool, len(plans))

    # All checks passed: write.
    lab = Lab.objects.create(
        name=name[:100], slug=slug, template=template, pool=pool, memory_mb=memory_mb, expires_at=expires_at
    )
    lab.instructors.add(instructor)
    new_accounts: list[tuple[str, str]] = []
    new_users = []
    for plan in plans:
        if plan.user is None:
            password = random_password()
            plan.user = User(
                username=plan.entry.username,
                email=plan.entry.email,
                first_name=plan.entry.first_name[:150],
                last_name=plan.entry.last_name[:150],
                password=_initial_password_hash(password),
            )
            new_users.append(plan.user)
            new_accounts.append((plan.entry.username, password))
    if new_users:
        User.objects.bulk_create(new_users)
        if any(u.pk is None for u in new_users):  # databases without RETURNING
            by_name = {u.username: u for u in User.objects.filter(username__in=[u.username for u in new_users])}
            for plan in plans:
                plan.user = by_name.get(plan.entry.username, plan.user)

    guests = Guest.objects.bulk_create(
        [
            Guest(
                lab=lab,
                student=plan.user,
                host=plan.host,
                pool=pool,
                domain_name=plan.domain,
                hostname=plan.hostname,
                ip=ip,
                mac=mac,
                root_lv=f"{plan.host.lv_prefix}{plan.domain}.raiz",
                swap_lv=f"{plan.host.lv_prefix}{plan.domain}.swap" if template.swap_size_mb else "",
                memory_mb=memory_mb,
                status=Guest.Status.PENDING,
                busy_with="provision",
                initial_password=random_password(12),
            )
            for plan, ip, mac in zip(plans, ips, macs, strict=True)
        ]
    )
    tasks = Task.objects.bulk_create(
        [
            Task(
                kind="provision",
                guest=g,
                lab=lab,
                host=g.host,
                actor=instructor,
                target=g.domain_name,
                steps_total=len(JOB_STEPS["provision"]),
                rq_job_id=f"xenpanel-{uuid.uuid4().hex}",
            )
            for g in guests
        ]
    )
    events = [
        AuditEvent(
            actor=instructor,
            action="create_lab",
            lab=lab,
            target=lab.slug,
            result=AuditEvent.Result.SUCCEEDED,
            message=_("%(n)d guest(s) on pool %(pool)s, %(mem)d MiB each; %(new)d new account(s).")
            % {"n": len(guests), "pool": pool.name, "mem": memory_mb, "new": len(new_users)},
        ),
        *(
            AuditEvent(
                actor=instructor,
                action="create_account",
                target=u.username,
                lab=lab,
                result=AuditEvent.Result.SUCCEEDED,
            )
            for u in new_users
        ),
        *(AuditEvent.requested(t) for t in tasks),
    ]
    AuditEvent.objects.bulk_create(events)
    queueing.ping({h.queue_name for h in host_rows})

    new_user_pks = [u.pk for u in new_users]

    def undo() -> None:
        AuditEvent.objects.filter(lab=lab).delete()
        Task.objects.filter(lab=lab).delete()
        Guest.objects.filter(lab=lab).delete()
        lab.delete()
        User.objects.filter(pk__in=new_user_pks).delete()

    queueing.enqueue_after_commit(tasks, undo)
    return BatchResult(lab=lab, guests=guests, new_accounts=new_accounts)
