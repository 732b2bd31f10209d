"""My API tokens: a token made on the page is shown once, stored as a digest, listed, audited and revoked."""

from __future__ import annotations

import re

from django.test import Client
from django.urls import reverse

from labs.models import ApiToken, AuditEvent
from labs.services import api_tokens


def _create(client, name="grading", days=30):
    return client.post(reverse("api_tokens"), {"name": name, "days": days}, follow=True)


def test_a_new_token_is_shown_once_and_stored_hashed(client, alice, running_guest):
    client.force_login(alice)
    page = _create(client).content.decode()
    plain = re.search(r"(xp_[A-Za-z0-9_-]{43})", page).group(1)
    row = ApiToken.objects.get()
    assert (row.user, row.name, row.prefix) == (alice, "grading", plain[:10])
    assert row.digest == api_tokens.digest(plain) and plain not in row.digest
    assert 29 <= (row.expires_at - row.created_at).days <= 30
    again = client.get(reverse("api_tokens")).content.decode()
    assert plain not in again and f"{plain[:10]}…" in again and "never" in again
    assert AuditEvent.objects.filter(
        action="create_api_token", actor=alice, target=f"grading ({plain[:10]}…)"
    ).exists()
    # The token works, and its last use shows on the page.
    r = client.get(f"/api/v1/guests/{running_guest.pk}", HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert r.status_code == 200
    assert "never" not in client.get(reverse("api_tokens")).content.decode()


def test_expiry_is_bounded(client, alice):
    client.force_login(alice)
    assert "Ensure this value is less than or equal to 365." in _create(client, days=400).content.decode()
    assert "Ensure this value is greater than or equal to 1." in _create(client, days=0).content.decode()
    assert not ApiToken.objects.exists()


def test_revoking_stops_the_token_and_is_audited(client, alice, running_guest):
    token, plain = api_tokens.create_token(alice, "old", 10)
    client.force_login(alice)
    assert "Revoke the token old?" in client.get(reverse("api_token_revoke", args=[token.pk])).content.decode()
    r = client.post(reverse("api_token_revoke", args=[token.pk]), follow=True)
    assert "revoked" in r.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="revoke_api_token", actor=alice).count() == 1
    # A script has no session cookie to fall back on.
    r = Client().get(f"/api/v1/guests/{running_guest.pk}", HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert r.status_code == 401
    client.post(reverse("api_token_revoke", args=[token.pk]))
    assert AuditEvent.objects.filter(action="revoke_api_token").count() == 1


def test_someone_elses_token_is_a_404_even_for_an_admin(client, alice, admin_user):
    token, _plain = api_tokens.create_token(alice, "mine", 10)
    client.force_login(admin_user)
    assert client.get(reverse("api_token_revoke", args=[token.pk])).status_code == 404
    assert client.post(reverse("api_token_revoke", args=[token.pk])).status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert "mine" not in client.get(reverse("api_tokens")).content.decode()


def test_the_number_of_live_tokens_is_bounded(client, alice):
    for n in range(api_tokens.MAX_LIVE_TOKENS):
        api_tokens.create_token(alice, f"t{n}", 1)
    client.force_login(alice)
    assert "revoke one you no longer use first" in _create(client).content.decode()
    assert ApiToken.objects.count() == api_tokens.MAX_LIVE_TOKENS
