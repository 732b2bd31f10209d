"""Personal API tokens: made, shown once, stored as a digest, expiring, revocable, audited and throttled.

A token is `xp_` and 43 random URL-safe characters (256 bits): far too many
to guess, so a plain SHA-256 of it is what the database keeps and what a
request is looked up by (one indexed query; a slow password hash would cost
every API call). The list shows the first characters only.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from labs.models import ApiToken, AuditEvent
from labs.services.errors import ServiceError
from labs.services.queueing import redis_connection

log = logging.getLogger(__name__)

TOKEN_PREFIX = "xp_"
SHOWN_PREFIX = 10  # characters of the token the list shows: "xp_" and 7 random ones
MAX_LIVE_TOKENS = 20
MAX_DAYS = 365
DEFAULT_DAYS = 90
# last_used_at is written at most this often per token, so polling scripts do not write on every GET.
LAST_USED_PRECISION = timedelta(minutes=1)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def live_tokens(user) -> int:
    return ApiToken.objects.filter(user=user, revoked_at=None, expires_at__gt=timezone.now()).count()


def create_token(user, name: str, days: int) -> tuple[ApiToken, str]:
    """A new token for `user`, good for `days`; returns the row and the token itself, to be shown once."""
    name = name.strip()
    if not name:
        raise ServiceError(_("Give the token a name, such as the script that uses it."), field="name")
    if not 1 <= days <= MAX_DAYS:
        raise ServiceError(_("A token lasts from 1 to %(max)d days.") % {"max": MAX_DAYS}, field="days")
    if live_tokens(user) >= MAX_LIVE_TOKENS:
        raise ServiceError(
            _("You have %(max)d tokens already: revoke one you no longer use first.") % {"max": MAX_LIVE_TOKENS}
        )
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name[:64],
        prefix=plain[:SHOWN_PREFIX],
        digest=digest(plain),
        expires_at=timezone.now() + timedelta(days=days),
    )
    _audit(user, "create_api_token", token, _("expires %(when)s") % {"when": f"{token.expires_at:%Y-%m-%d %H:%M} UTC"})
    return token, plain


def revoke_token(user, token: ApiToken) -> None:
    """Revoke one of the user's tokens (the caller found it through labs.access); revoking twice changes nothing."""
    if ApiToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=timezone.now()):
        _audit(user, "revoke_api_token", token)
    token.refresh_from_db(fields=["revoked_at"])


def _audit(user, action: str, token: ApiToken, message: str = "") -> None:
    AuditEvent.objects.create(
        actor=user,
        action=action,
        target=f"{token.name} ({token.prefix}…)"[:100],
        result=AuditEvent.Result.SUCCEEDED,
        message=message,
    )


def authenticate(plain: str) -> ApiToken | None:
    """The live token of an active user that `plain` is, with its user; None for anything else."""
    if not plain.startswith(TOKEN_PREFIX) or len(plain) > 100:
        return None
    try:
        # get(), not first(): no ORDER BY to build for a unique column.
        token = ApiToken.objects.select_related("user").get(digest=digest(plain))
    except ApiToken.DoesNotExist:
        return None
    if not token.is_live or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def throttled(token: ApiToken) -> int:
    """0 when the token may make this request; else the seconds until its next minute starts.

    XENPANEL_API_RATE requests a minute per token (0: no limit), counted in
    Redis so every web worker shares the count. With Redis down the request
    goes through: the API's reads do not need Redis, and its actions report
    the outage themselves.
    """
    rate = settings.XENPANEL_API_RATE
    if not rate:
        return 0
    now = time.time()
    key = f"xenpanel:api-rate:{token.pk}:{int(now // 60)}"
    try:
        with redis_connection().pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            used = pipe.execute()[0]
    except RedisError as e:
        log.warning("API rate limit not applied, Redis is not answering: %s", e)
        return 0
    return 0 if used <= rate else max(1, 60 - int(now % 60))
