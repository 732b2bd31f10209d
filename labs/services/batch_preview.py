"""The preview of a lab batch (labs.services.batch.preview_lab_batch) and its check when the batch is created.

The preview is computed by the code that creates (batch._lay_out, under the
same locks), so it cannot disagree with it; its token is a signed summary of
what it showed, which the creation compares with what it would create now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core import signing
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from labs.services import capacity, ipam, quotas
from labs.services.errors import PreviewChanged

if TYPE_CHECKING:
    from labs.services.batch import _Layout, _Plan, _Request

# What a preview's token is signed for; a preview older than this is shown again rather than trusted.
PREVIEW_SALT = "xenpanel.batch.preview"
PREVIEW_MAX_AGE = 24 * 3600


@dataclass
class PreviewRow:
    """One VM of a previewed batch."""

    username: str
    full_name: str  # as the roster gives it
    account_name: str | None  # an existing account's full name, which it keeps; None for a new account
    campus: bool
    domain: str
    hostname: str
    ip: str
    host: str
    memory_mb: int
    quota: quotas.Quota
    usage_after: quotas.Usage  # what the student holds with this VM

    @property
    def existing(self) -> bool:
        return self.account_name is not None

    @property
    def kept_name(self) -> str | None:
        """The account's name when the roster gives another one, which is not applied."""
        if self.account_name is not None and self.full_name and self.full_name != self.account_name:
            return self.account_name or "—"
        return None


@dataclass
class HostTotal:
    name: str
    free_mb: int | None  # before the batch
    guests: int
    memory_mb: int  # what the batch adds


@dataclass
class BatchPreview:
    """What a batch would create, computed by the code that creates it; `token` makes the create step check it."""

    name: str
    slug: str
    memory_mb: int
    rows: list[PreviewRow]
    hosts: list[HostTotal]
    pool_name: str
    pool_free: int
    token: str

    @property
    def existing(self) -> list[PreviewRow]:
        return [r for r in self.rows if r.existing]

    @property
    def total_memory_mb(self) -> int:
        return sum(r.memory_mb for r in self.rows)


def _summary(req: _Request, plans: list[_Plan], layout: _Layout) -> dict:
    """What a preview promises, as JSON: the lab's settings and each VM (a changed value is a changed batch)."""
    expires = req.expires_at.isoformat() if req.expires_at else None
    return {
        "i": req.instructor.pk,
        "lab": [req.name, req.slug, req.template.pk, req.pool.pk, req.memory_mb, expires],
        "vms": [
            [
                p.entry.username,
                getattr(p.user, "pk", None),
                p.domain,
                p.hostname,
                ip,
                getattr(p.host, "name", ""),
                p.entry.full_name,
                p.entry.email,
            ]
            for p, ip in zip(plans, layout.ips, strict=True)
        ],
    }


def preview(req: _Request, plans: list[_Plan], layout: _Layout) -> BatchPreview:
    rows = []
    for plan, ip in zip(plans, layout.ips, strict=True):
        quota, usage = layout.standing[plan.entry.username]
        user = plan.user
        rows.append(
            PreviewRow(
                username=plan.entry.username,
                full_name=plan.entry.full_name,
                account_name=None if user is None else user.get_full_name(),
                campus=plan.entry.username in req.campus,
                domain=plan.domain,
                hostname=plan.hostname,
                ip=ip,
                host=getattr(plan.host, "name", ""),
                memory_mb=req.memory_mb,
                quota=quota,
                usage_after=quotas.Usage(usage.guests + 1, usage.memory_mb + req.memory_mb),
            )
        )
    allocated = capacity.allocated_mb(layout.host_rows)
    hosts = [
        HostTotal(
            h.name,
            capacity.host_free_mb(h, allocated.get(h.pk, 0)),
            sum(1 for p in plans if p.host == h),
            sum(req.memory_mb for p in plans if p.host == h),
        )
        for h in layout.host_rows
    ]
    token = signing.dumps(_summary(req, plans, layout), salt=PREVIEW_SALT, compress=True)
    pool_free = ipam.free_ips(layout.pool).size
    return BatchPreview(req.name, req.slug, req.memory_mb, rows, hosts, layout.pool.name, pool_free, token)


def check_preview(req: _Request, plans: list[_Plan], layout: _Layout) -> None:
    """Go on only when the batch is exactly its preview; else PreviewChanged, with what changed and a new preview."""
    now = _summary(req, plans, layout)
    try:
        seen = signing.loads(req.confirm_preview or "", salt=PREVIEW_SALT, max_age=PREVIEW_MAX_AGE)
    except signing.BadSignature:
        seen = None
    if seen == now:
        return
    if isinstance(seen, dict) and seen.get("i") == now["i"]:
        changes = _changes(seen, now)
    else:
        changes = [_("The preview is too old or not yours: check this one.")]
    raise PreviewChanged(
        _("The batch is not what its preview showed, so nothing was created. Check the new preview, then create."),
        preview(req, plans, layout),
        changes,
    )


# What each column of a summary's VM row is, for the words of a change.
_VM_FIELDS = (None, "account", "VM name", "hostname", "address", "host", "full name", "e-mail")
MAX_CHANGES_LISTED = 20


def _changes(before: dict, after: dict) -> list[str]:
    """What differs between two summaries, in words (at most MAX_CHANGES_LISTED lines)."""
    changes = []
    if before.get("lab") != after["lab"]:
        changes.append(_("The lab's settings changed (name, short name, template, pool, memory or expiry)."))
    old = {row[0]: row for row in before.get("vms", [])}
    new = {row[0]: row for row in after["vms"]}
    if added := [u for u in new if u not in old]:
        changes.append(_("Added to the roster: %(users)s.") % {"users": ", ".join(added)})
    if removed := [u for u in old if u not in new]:
        changes.append(_("No longer on the roster: %(users)s.") % {"users": ", ".join(removed)})
    for username, row in new.items():
        if username in old and old[username] != row:
            changes.append(_row_change(username, old[username], row))
    if len(changes) > MAX_CHANGES_LISTED:
        more = len(changes) - MAX_CHANGES_LISTED
        changes = [*changes[:MAX_CHANGES_LISTED], ngettext("…and %(n)d more.", "…and %(n)d more.", more) % {"n": more}]
    return changes


def _row_change(username: str, old: list, new: list) -> str:
    if old[1] != new[1]:
        if new[1] is None:
            return _("%(user)s: the account no longer exists; a new one will be made.") % {"user": username}
        return _("%(user)s: an account with this username now exists, and will be enrolled.") % {"user": username}
    labels = {
        "VM name": _("VM name"),
        "hostname": _("hostname"),
        "address": _("address"),
        "host": _("host"),
        "full name": _("full name"),
        "e-mail": _("e-mail"),
    }
    parts = [
        _("%(what)s %(old)s → %(new)s") % {"what": labels[str(field)], "old": a or "—", "new": b or "—"}
        for field, a, b in zip(_VM_FIELDS, old, new, strict=True)
        if field not in (None, "account") and a != b
    ]
    return _("%(user)s: %(changes)s.") % {"user": username, "changes": "; ".join(parts)}
