"""Create a lab batch: validate everything, then allocate and queue in one transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import get_hasher, make_password
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from labs.access import PRIVILEGED_ACCOUNTS, is_instructor
from labs.dom0 import names
from labs.dom0.errors import InvalidName
from labs.models import AuditEvent, Guest, Host, IpPool, Lab, LabTemplate, Task
from labs.roster import USERNAME_RE, RosterEntry
from labs.services import capacity, ipam, limits, queueing, quotas, templates
from labs.services.accounts import random_password
from labs.services.batch_preview import BatchPreview, check_preview, preview
from labs.services.errors import AccountsToConfirm, QuotaExceeded, ServiceError
from labs.services.registry import steps_total

# Lab short names become the first half of domain names and hostnames.
SLUG_RE = re.compile(r"[a-z][a-z0-9-]{0,19}(?<!-)")
# A derived short name leaves room for a 30-character username in a 48-character domain name.
DEFAULT_SLUG_LENGTH = 16
# The initial account password is random (~81 bits), so key stretching adds
# nothing; a cheap PBKDF2 keeps a 100-student batch under a second. Django
# re-hashes with its full iteration count at the student's first login.
INITIAL_PASSWORD_ITERATIONS = 1_000


@dataclass
class BatchResult:
    lab: Lab
    guests: list[Guest]
    new_accounts: list[tuple[str, str]] = field(default_factory=list)  # (username, password), shown once
    enrolled: list = field(default_factory=list)  # existing accounts that got a VM
    campus_accounts: list[str] = field(default_factory=list)  # new accounts that sign in with the campus password


@dataclass
class _Plan:
    entry: RosterEntry
    domain: str
    hostname: str
    user: Any = None  # the account: found under lock, or made by the batch
    host: Host | None = None


def _initial_password_hash(password: str) -> str:
    try:
        hasher = get_hasher("pbkdf2_sha256")
    except ValueError:  # not in PASSWORD_HASHERS: use whatever the site uses
        return make_password(password)
    return hasher.encode(password, hasher.salt(), iterations=INITIAL_PASSWORD_ITERATIONS)  # type: ignore[call-arg]


def guest_names(slug: str, username: str) -> tuple[str, str]:
    """(Xen domain name, hostname) for a student in a lab; InvalidName when they do not fit."""
    domain = names.domain_name(f"{slug}-{username}")
    # Hostnames allow neither '_' nor '.'; the domain name keeps the username as typed.
    hostname = names.hostname(re.sub(r"[_.]", "-", domain).strip("-")[:63])
    return domain, hostname


def _cut_at_words(slug: str, length: int) -> str:
    """The slug's first words that fit in `length` (redes-de-computadores: redes-de); a long first word is cut."""
    words = [w for w in slug.split("-") if w]
    kept = ""
    for word in words:
        if len(kept) + bool(kept) + len(word) > length:
            break
        kept = f"{kept}-{word}" if kept else word
    return kept or (words[0][:length] if words else "")


def _default_slug(name: str) -> str:
    base = slugify(name).replace("_", "-")
    if base and not base[0].isalpha():
        base = "lab-" + base
    base = _cut_at_words(base, DEFAULT_SLUG_LENGTH) or "lab"
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


@dataclass
class _Request:
    """What the instructor asked for, checked: the batch as one value instead of ten arguments."""

    instructor: Any
    template: LabTemplate
    pool: IpPool
    memory_mb: int
    hosts: list | None
    expires_at: datetime | None
    name: str
    slug: str
    confirm_existing: str | None
    campus: frozenset[str] = frozenset()  # roster usernames without an account that the campus directory knows
    confirm_preview: str | None = None  # the token of the preview the instructor saw (BatchPreview.token)


@dataclass
class _Layout:
    """Where the batch goes, worked out under the locks by the code that creates it; nothing reserved yet."""

    pool: IpPool
    host_rows: list[Host]
    enrolled: list  # existing accounts, by username
    ips: list[str]
    standing: dict[str, tuple[quotas.Quota, quotas.Usage]]  # each student's quota and what they hold now


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
    confirm_existing: str | None = None,
    confirm_preview: str | None = None,
) -> BatchResult:
    """Create a lab with one guest per roster line and queue their provisioning.

    Everything is checked before anything is written; then one transaction
    locks the pool and hosts, allocates, writes and pings Redis. The jobs are
    sent when it commits; if Redis fails then, the rows are removed again.

    Roster lines naming existing accounts enrol them (audited), never an
    instructor or administrator account. `confirm_existing` is what the
    instructor confirmed: the token of the very list of existing accounts
    (existing_accounts_token), "" for none; any other list raises
    AccountsToConfirm with the list and its token, and nothing is created.
    The API passes it; None, for code that builds rosters itself
    (benchmarks, tests), skips the confirmation only.

    `confirm_preview`: the token of the preview the instructor saw
    (preview_lab_batch; the panel's form), which lists the existing accounts
    too; the batch is created only when it is still exactly that preview,
    else PreviewChanged says what changed.
    """
    request, plans = _prepare(
        instructor, template, pool, roster, memory_mb, hosts, expires_at, name, slug, confirm_existing
    )
    request.confirm_preview = confirm_preview
    try:
        with transaction.atomic():
            result = _create_locked(request, plans)
    except IntegrityError:
        # Only a concurrent batch can get here (everything else was checked
        # under the locks): same short name, or a MAC drawn twice.
        raise ServiceError(
            _("Another batch was created at the same moment with a clashing name or address; submit again."),
            field="slug",
        ) from None
    return result


def preview_lab_batch(
    instructor, template: LabTemplate, pool: IpPool, roster: list[RosterEntry], memory_mb: int, **options
) -> BatchPreview:
    """What create_lab_batch would create now, checked as it checks (ServiceError alike); nothing is written
    or reserved. `options`: hosts, expires_at, name, slug, as create_lab_batch takes them.

    Pass the preview's token to create_lab_batch(confirm_preview=...): it
    creates exactly this batch, or raises PreviewChanged with a new preview
    and what changed (another batch took the addresses, an account appeared...).
    """
    request, plans = _prepare(instructor, template, pool, roster, memory_mb, confirm_existing=None, **options)
    with transaction.atomic():
        layout = _lay_out(request, plans)
        return preview(request, plans, layout)


def _prepare(
    instructor,
    template,
    pool,
    roster,
    memory_mb,
    hosts=None,
    expires_at=None,
    name=None,
    slug=None,
    confirm_existing=None,
) -> tuple[_Request, list[_Plan]]:
    """The request checked (no locks yet) and each student's names."""
    _check_request(instructor, template, roster, memory_mb, expires_at)
    name = (name or "").strip() or f"{template.name} {timezone.localdate():%Y-%m-%d}"
    slug = (slug or "").strip() or _default_slug(name)
    if not SLUG_RE.fullmatch(slug):
        raise ServiceError(
            _("Use 1-20 lower-case letters, digits or '-' for the short name, starting with a letter."), field="slug"
        )
    plans = [_plan(slug, entry) for entry in roster]
    request = _Request(
        instructor, template, pool, memory_mb, hosts, expires_at, name, slug, confirm_existing, _campus(roster)
    )
    return request, plans


def _plan(slug: str, entry: RosterEntry) -> _Plan:
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
    return _Plan(entry, domain, hostname)


def _campus(roster: list[RosterEntry]) -> frozenset[str]:
    """The roster's usernames with no account yet that are campus accounts (asked before any lock is taken)."""
    # Imported here: it brings python-ldap, which the panel has and a dom0 (which imports this module) does not.
    from labs.services import campus

    if not campus.enabled():
        return frozenset()
    usernames = [e.username for e in roster]
    known = set(get_user_model().objects.filter(username__in=usernames).values_list("username", flat=True))
    return frozenset(campus.campus_usernames([u for u in usernames if u not in known]))


def _lock_hosts(hosts: list | None) -> list[Host]:
    """The hosts the batch may use, locked: the ones asked for (all enabled), else every enabled host."""
    host_qs = Host.objects.select_for_update().order_by("pk")
    if hosts is None:
        return list(host_qs.filter(enabled=True))
    rows = list(host_qs.filter(pk__in=[getattr(h, "pk", h) for h in hosts]))
    for h in rows:
        if not h.enabled:
            raise ServiceError(_("Host %(host)s does not accept new guests.") % {"host": h.name}, field="hosts")
    return rows


def existing_accounts_token(instructor, users) -> str:
    """What confirms enrolling exactly these existing accounts, for this instructor: a keyed digest of the list."""
    listed = ",".join(f"{u.pk}:{u.username}" for u in sorted(users, key=lambda u: u.pk))
    return salted_hmac("xenpanel.batch.existing-accounts", f"{instructor.pk}|{listed}").hexdigest()


def _refuse_privileged(existing: dict) -> None:
    """A roster enrols students: an instructor or administrator account on it stops the batch."""
    names = sorted(
        set(
            get_user_model()
            .objects.filter(PRIVILEGED_ACCOUNTS, pk__in=[u.pk for u in existing.values()])
            .values_list("username", flat=True)
        )
    )
    if names:
        raise ServiceError(
            _(
                "%(users)s: instructor and administrator accounts cannot be enrolled from a roster. Remove them"
                " from the roster."
            )
            % {"users": ", ".join(names)},
            field="roster",
        )


def _require_confirmation(req: _Request, existing: dict) -> None:
    """Existing accounts get a VM only when the instructor confirmed this very list (see create_lab_batch)."""
    if req.confirm_existing is None or not existing:
        return
    token = existing_accounts_token(req.instructor, existing.values())
    if constant_time_compare(token, req.confirm_existing):
        return
    n = len(existing)
    if req.confirm_existing:
        message = _("The existing accounts on the roster changed since you confirmed them: check the list again.")
    else:
        message = ngettext(
            "The roster names %(n)d account that already exists: check it below, then confirm.",
            "The roster names %(n)d accounts that already exist: check them below, then confirm.",
            n,
        ) % {"n": n}
    accounts = sorted(existing.values(), key=lambda u: u.username)
    raise AccountsToConfirm(message, accounts, token, changed=bool(req.confirm_existing))


def _check_accounts(req: _Request, plans: list[_Plan]) -> tuple[list, dict[str, tuple[quotas.Quota, quotas.Usage]]]:
    """The roster's existing accounts, locked, checked and set on plans; each student's quota must hold one more guest.

    Returns them by username, and each student's (quota, usage now). The lock
    serializes quota checks per student with guest actions
    (labs.services.actions) and other batches. Every student over a quota is
    named at once, not the first only.
    """
    User = get_user_model()
    usernames = [p.entry.username for p in plans]
    existing = {u.username: u for u in User.objects.select_for_update().filter(username__in=usernames).order_by("pk")}
    _refuse_privileged(existing)
    if req.confirm_preview is None:  # a preview lists the existing accounts itself
        _require_confirmation(req, existing)
    quota_of = quotas.quotas_for(existing.values())
    usage = quotas.usage_for(existing.values())
    default = quotas.default_quota()
    standing: dict[str, tuple[quotas.Quota, quotas.Usage]] = {}
    refusals: list[str] = []
    for plan in plans:
        user = plan.user = existing.get(plan.entry.username)
        if user is None:
            standing[plan.entry.username] = (default, quotas.Usage())
            user = User(username=plan.entry.username)
        else:
            standing[user.username] = (quota_of[user.pk], usage.get(user.pk, quotas.Usage()))
        try:
            quotas.check_student_quota(user, *standing[user.username], 1, req.memory_mb)
        except QuotaExceeded as e:
            refusals.append(e.message)
    if refusals:
        raise QuotaExceeded(_quota_refusal(refusals), field="roster")
    return sorted(existing.values(), key=lambda u: u.username), standing


def _quota_refusal(refusals: list[str]) -> str:
    n = len(refusals)
    head = ngettext(
        "%(n)d student would go over a quota; nothing was created:",
        "%(n)d students would go over their quotas; nothing was created:",
        n,
    ) % {"n": n}
    return " ".join([head, *refusals])


def _create_accounts(plans: list[_Plan], campus_names: frozenset[str]) -> tuple[list, list[tuple[str, str]]]:
    """Accounts for the roster lines that have none; (the new users, the (username, password) pairs to show).

    A campus account gets no usable panel password and none to show: its student signs in with the
    campus password (labs.campus).
    """
    User = get_user_model()
    new_users, new_accounts = [], []
    for plan in plans:
        if plan.user is None:
            password = None if plan.entry.username in campus_names else random_password()
            plan.user = User(
                username=plan.entry.username,
                email=plan.entry.email,
                first_name=plan.entry.first_name[:150],
                last_name=plan.entry.last_name[:150],
                password=_initial_password_hash(password) if password else make_password(None),
            )
            new_users.append(plan.user)
            if password:
                new_accounts.append((plan.entry.username, password))
    if new_users:
        User.objects.bulk_create(new_users)
        if any(u.pk is None for u in new_users):  # databases without RETURNING
            by_name = {u.username: u for u in User.objects.filter(username__in=[u.username for u in new_users])}
            for plan in plans:
                plan.user = by_name.get(plan.entry.username, plan.user)
    return new_users, new_accounts


def _lay_out(req: _Request, plans: list[_Plan]) -> _Layout:
    """Lock, check everything, and place each guest and its address; the preview and the creation share it."""
    pool = IpPool.objects.select_for_update().get(pk=req.pool.pk)
    host_rows = _lock_hosts(req.hosts)
    if Lab.objects.filter(slug=req.slug).exclude(status=Lab.Status.TORN_DOWN).exists():
        raise ServiceError(_("The short name %(slug)s is in use by another lab.") % {"slug": req.slug}, field="slug")
    enrolled, standing = _check_accounts(req, plans)
    template = req.template
    thin = templates.uses_thin(template)
    disk_mb = template.root_size_mb + template.swap_size_mb
    for plan, host in zip(
        plans, capacity.place(len(plans), host_rows, req.memory_mb, disk_mb, thin=thin), strict=True
    ):
        plan.host = host
    return _Layout(pool, host_rows, enrolled, ipam.allocate_ips(pool, len(plans)), standing)


def _create_locked(req: _Request, plans: list[_Plan]) -> BatchResult:
    layout = _lay_out(req, plans)
    if req.confirm_preview is not None:
        check_preview(req, plans, layout)
    pool, host_rows, enrolled, ips = layout.pool, layout.host_rows, layout.enrolled, layout.ips
    template = req.template
    macs = ipam.allocate_macs(pool, len(plans))

    # All checks passed: write.
    lab = Lab.objects.create(
        name=req.name[:100],
        slug=req.slug,
        template=template,
        pool=pool,
        memory_mb=req.memory_mb,
        expires_at=req.expires_at,
    )
    lab.instructors.add(req.instructor)
    new_users, new_accounts = _create_accounts(plans, req.campus)
    guests = Guest.objects.bulk_create(
        [_guest(lab, plan, ip, mac, req.memory_mb) for plan, ip, mac in zip(plans, ips, macs, strict=True)]
    )
    tasks = Task.objects.bulk_create(
        [
            Task(
                kind="provision",
                guest=g,
                lab=lab,
                host=g.host,
                actor=req.instructor,
                target=g.domain_name,
                steps_total=steps_total("provision"),
                rq_job_id=queueing.new_job_id(g.host),
            )
            for g in guests
        ]
    )
    AuditEvent.objects.bulk_create(_events(req, lab, guests, new_users, enrolled, tasks))
    queueing.ping({h.queue_name for h in host_rows})

    new_user_pks = [u.pk for u in new_users]

    def undo() -> None:
        AuditEvent.objects.filter(lab=lab).delete()
        Task.objects.filter(lab=lab).delete()
        Guest.objects.filter(lab=lab).delete()
        lab.delete()
        get_user_model().objects.filter(pk__in=new_user_pks).delete()

    queueing.enqueue_after_commit(tasks, undo)
    campus_accounts = [u.username for u in new_users if u.username in req.campus]
    return BatchResult(lab, guests, new_accounts, enrolled, campus_accounts)


def _guest(lab: Lab, plan: _Plan, ip: str, mac: str, memory_mb: int) -> Guest:
    host = plan.host
    assert host is not None  # placed before any guest is built
    return Guest(
        lab=lab,
        student=plan.user,
        host=host,
        pool=lab.pool,
        domain_name=plan.domain,
        hostname=plan.hostname,
        ip=ip,
        mac=mac,
        root_lv=f"{host.lv_prefix}{plan.domain}.raiz",
        swap_lv=f"{host.lv_prefix}{plan.domain}.swap" if lab.template.swap_size_mb else "",
        memory_mb=memory_mb,
        status=Guest.Status.PENDING,
        busy_with="provision",
        initial_password=random_password(12),
    )


def _events(
    req: _Request, lab: Lab, guests: list[Guest], new_users: list, enrolled: list, tasks: list[Task]
) -> list[AuditEvent]:
    """The batch's audit trail: the lab, each new account, each existing account enrolled, each provisioning."""
    return [
        AuditEvent(
            actor=req.instructor,
            action="create_lab",
            lab=lab,
            target=lab.slug,
            result=AuditEvent.Result.SUCCEEDED,
            message=_("%(n)d guest(s) on pool %(pool)s, %(mem)d MiB each; %(new)d new account(s).")
            % {"n": len(guests), "pool": lab.pool.name, "mem": req.memory_mb, "new": len(new_users)},
        ),
        *(
            AuditEvent(
                actor=req.instructor,
                action=action,
                target=u.username,
                lab=lab,
                result=AuditEvent.Result.SUCCEEDED,
                message=_("campus account") if u.username in req.campus else "",
            )
            for action, users in (("create_account", new_users), ("enrol_account", enrolled))
            for u in users
        ),
        *(AuditEvent.requested(t) for t in tasks),
    ]
