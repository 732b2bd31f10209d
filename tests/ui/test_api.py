"""The JSON API (/api/v1/): every route for every role by token, tokens that do not work, CSRF, throttling, bodies."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labs.models import ApiToken, AuditEvent, Guest, Lab, SavePoint, Task
from labs.services import api_tokens
from labs.services.queueing import redis_connection
from tests.ui.conftest import set_state

ROLES = ("owner", "other_student", "other_instructor", "lab_instructor", "admin")


@pytest.fixture
def users(alice, bob, charlie, ivy, admin_user):
    return {
        "owner": alice,
        "other_student": bob,
        "other_instructor": charlie,
        "lab_instructor": ivy,
        "admin": admin_user,
    }


def token_for(user, days: int = 30) -> str:
    return api_tokens.create_token(user, "script", days)[1]


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def call(client, method: str, url: str, token: str | None = None, body: dict | None = None):
    extra = bearer(token) if token else {}
    if method == "get":
        return client.get(url, **extra)
    return client.post(url, json.dumps(body or {}), content_type="application/json", **extra)


@pytest.fixture
def task(running_guest, alice) -> Task:
    return Task.objects.create(
        kind="reboot", guest=running_guest, lab=running_guest.lab, host=running_guest.host, actor=alice, steps_total=1
    )


ROSTER = "new1, New One, new1@example.edu\nnew2, New Two,"


@pytest.fixture
def save_point(running_guest) -> SavePoint:
    return SavePoint.objects.create(
        guest=running_guest, label="before exercise 3", volume="vm-x.sp1", method="copy", size_mb=64, status="ready"
    )


def _routes(guest, task, lab, template, pool, point):
    """(method, url, body, {role: status}) for every API route."""
    s = lambda *codes: dict(zip(ROLES, codes, strict=True))  # noqa: E731
    g, lab_pk, sp = guest.pk, lab.pk, f"/api/v1/guests/{guest.pk}/save-points"
    return [
        ("get", "/api/v1/guests", None, s(200, 200, 200, 200, 200)),
        ("get", f"/api/v1/guests/{g}", None, s(200, 404, 404, 200, 200)),
        ("get", f"/api/v1/guests/{g}/actions/reboot", None, s(405, 405, 405, 405, 405)),
        # An empty body confirms nothing: the registry's destructive actions answer 400 to whoever may run them.
        ("post", f"/api/v1/guests/{g}/actions/destroy", {}, s(400, 404, 404, 400, 400)),
        ("post", f"/api/v1/guests/{g}/actions/teardown", {}, s(404, 404, 404, 400, 400)),
        ("post", f"/api/v1/guests/{g}/actions/provision", {}, s(404, 404, 404, 404, 404)),
        ("post", f"/api/v1/guests/{g}/actions/format-disk", {}, s(404, 404, 404, 404, 404)),
        ("get", f"/api/v1/tasks/{task.pk}", None, s(200, 404, 404, 200, 200)),
        # Save points: a refused label, or no confirm: true, for whoever may see the guest; 404 for the rest.
        ("get", sp, None, s(200, 404, 404, 200, 200)),
        ("post", sp, {"label": ""}, s(400, 404, 404, 400, 400)),
        ("get", f"{sp}/{point.pk}", None, s(200, 404, 404, 200, 200)),
        ("post", f"{sp}/{point.pk}/return", {}, s(400, 404, 404, 400, 400)),
        ("post", f"{sp}/{point.pk}/delete", {}, s(400, 404, 404, 400, 400)),
        # Their plain action names: pointed to the routes above.
        ("post", f"/api/v1/guests/{g}/actions/savepoint", {}, s(400, 404, 404, 400, 400)),
        (
            "post",
            "/api/v1/labs",
            {"template": 0, "pool": 0, "memory_mb": 256, "roster": ""},
            s(404, 404, 422, 422, 422),
        ),
        ("get", f"/api/v1/labs/{lab_pk}", None, s(404, 404, 404, 200, 200)),
        ("post", f"/api/v1/labs/{lab_pk}/teardown", {}, s(404, 404, 404, 400, 400)),
        # A lab's save points: its instructors' and the admins'; a refused label, or none by that name, is a 400.
        ("get", f"/api/v1/labs/{lab_pk}/save-points", None, s(404, 404, 404, 200, 200)),
        ("post", f"/api/v1/labs/{lab_pk}/save-points", {"label": ""}, s(404, 404, 404, 400, 400)),
        ("post", f"/api/v1/labs/{lab_pk}/save-points/return", {"label": point.label}, s(404, 404, 404, 400, 400)),
        ("get", "/api/v1/openapi.json", None, s(200, 200, 200, 200, 200)),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_every_route_for_every_role_by_token(
    client, users, role, running_guest, task, lab, template, pool, save_point
):
    token = token_for(users[role])
    wrong = []
    for method, url, body, expected in _routes(running_guest, task, lab, template, pool, save_point):
        r = call(client, method, url, token, body)
        if r.status_code != expected[role]:
            wrong.append(f"{method.upper()} {url}: {r.status_code}, expected {expected[role]}: {r.content[:200]!r}")
    assert not wrong, "\n".join(wrong)
    assert not Task.objects.exclude(pk=task.pk).exists()
    assert Guest.objects.filter(status=Guest.Status.READY).count() == 1
    assert list(SavePoint.objects.values_list("status", flat=True)) == ["ready"]


def _dead_tokens(users) -> dict[str, str | None]:
    alice = users["owner"]
    expired = token_for(alice)
    ApiToken.objects.filter(digest=api_tokens.digest(expired)).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked = token_for(alice)
    api_tokens.revoke_token(alice, ApiToken.objects.get(digest=api_tokens.digest(revoked)))
    inactive = token_for(users["other_student"])
    users["other_student"].is_active = False
    users["other_student"].save()
    return {
        "none": None,
        "made up": "xp_" + "A" * 43,
        "not ours": "abc",
        "expired": expired,
        "revoked": revoked,
        "inactive user": inactive,
    }


def test_no_token_or_a_dead_one_gets_401_everywhere(
    client, users, running_guest, task, lab, template, pool, save_point
):
    wrong = []
    for name, token in _dead_tokens(users).items():
        for method, url, body, _expected in _routes(running_guest, task, lab, template, pool, save_point):
            if url.endswith("openapi.json"):
                continue
            r = call(client, method, url, token, body)
            if r.status_code != (405 if url.endswith("/actions/reboot") else 401):
                wrong.append(f"{name}: {method.upper()} {url}: {r.status_code}")
    assert not wrong, "\n".join(wrong)
    assert not Task.objects.exclude(pk=task.pk).exists()


def test_the_guest_list_holds_what_the_user_may_see(client, users, alice_guest, bob_guest):
    def names(role):
        r = call(client, "get", "/api/v1/guests", token_for(users[role]))
        assert r.status_code == 200
        body = r.json()
        assert body["count"] == len(body["items"])
        return sorted(g["name"] for g in body["items"])

    assert names("owner") == ["net101-alice"]
    assert names("other_student") == ["net101-bob"]
    assert names("other_instructor") == []
    assert names("lab_instructor") == names("admin") == ["net101-alice", "net101-bob"]


def test_guest_detail_lists_the_actions_of_the_role(client, alice, ivy, running_guest):
    body = call(client, "get", f"/api/v1/guests/{running_guest.pk}", token_for(alice)).json()
    assert (body["name"], body["student"], body["state"], body["observed_state"]) == (
        "net101-alice",
        "alice",
        "running",
        "r",
    )
    actions = {a["name"]: a for a in body["actions"]}
    assert "teardown" not in actions and "provision" not in actions
    assert actions["reboot"]["allowed"] and not actions["start"]["allowed"]
    assert actions["destroy"]["confirm"].startswith("Destroy stops the VM at once")
    assert actions["reboot"]["confirm"] is None
    assert actions["reboot"]["url"] == f"/api/v1/guests/{running_guest.pk}/actions/reboot"
    assert actions["savepoint"]["url"] == f"/api/v1/guests/{running_guest.pk}/save-points"
    body = call(client, "get", f"/api/v1/guests/{running_guest.pk}", token_for(ivy)).json()
    assert "teardown" in {a["name"] for a in body["actions"]}


def test_an_action_answers_202_with_its_task_to_poll(client, alice, running_guest):
    token = token_for(alice)
    r = call(client, "post", f"/api/v1/guests/{running_guest.pk}/actions/reboot", token)
    assert r.status_code == 202, r.content
    task = Task.objects.get()
    body = r.json()
    assert (body["id"], body["kind"], body["status"], body["guest"]) == (task.pk, "reboot", "queued", running_guest.pk)
    assert (body["steps_done"], body["steps_total"]) == (0, 1)
    assert AuditEvent.objects.filter(action="reboot", actor=alice, result="requested").exists()
    Task.objects.filter(pk=task.pk).update(status="running", step="reboot", log="xl reboot net101-alice\n")
    polled = call(client, "get", body["url"], token).json()
    assert (polled["status"], polled["step"], polled["log"]) == ("running", "reboot", "xl reboot net101-alice\n")
    # The guest is busy now: a second action conflicts with its state.
    r = call(client, "post", f"/api/v1/guests/{running_guest.pk}/actions/shutdown", token)
    assert r.status_code == 409 and "busy" in r.json()["detail"]


def test_destructive_actions_need_confirm_true(client, alice, running_guest):
    token = token_for(alice)
    url = f"/api/v1/guests/{running_guest.pk}/actions/destroy"
    r = call(client, "post", url, token, {"confirm": False})
    assert r.status_code == 400 and "confirm: true" in r.json()["detail"]
    assert not Task.objects.exists()
    assert call(client, "post", url, token, {"confirm": True}).status_code == 202
    assert Task.objects.get().kind == "destroy"


def test_a_refused_state_is_409_and_changes_nothing(client, alice, alice_guest):
    set_state(alice_guest, "")
    r = call(client, "post", f"/api/v1/guests/{alice_guest.pk}/actions/reboot", token_for(alice))
    assert r.status_code == 409
    assert r.json()["detail"] == "Cannot reboot alice's VM: it is stopped."
    assert not Task.objects.exists()


def test_memory_change_takes_memory_mb(client, alice, running_guest):
    token = token_for(alice)
    url = f"/api/v1/guests/{running_guest.pk}/actions/mem_set"
    r = call(client, "post", url, token, {})
    assert r.status_code == 400 and "whole number" in r.json()["detail"]
    r = call(client, "post", url, token, {"memory_mb": 512})
    assert r.status_code == 202, r.content
    assert Task.objects.get().args == {"memory_mb": 512}


def test_create_a_batch_poll_it_and_tear_it_down(client, ivy, template, pool, host):
    token = token_for(ivy)
    body = {"template": "debian-12", "pool": pool.pk, "memory_mb": 256, "roster": ROSTER, "slug": "api1"}
    r = call(client, "post", "/api/v1/labs", token, body)
    assert r.status_code == 202, r.content
    created = r.json()
    lab = Lab.objects.get(slug="api1")
    assert created["lab"]["id"] == lab.pk
    assert [a["username"] for a in created["new_accounts"]] == ["new1", "new2"]
    assert created["campus_accounts"] == [] and created["enrolled"] == []
    assert sorted(created["tasks"]) == sorted(Task.objects.filter(lab=lab).values_list("pk", flat=True))
    polled = call(client, "get", f"/api/v1/labs/{lab.pk}", token).json()
    assert polled["progress"]["total"] == 2 and polled["progress"]["pending"] == 2
    assert [g["student"] for g in polled["guests"]] == ["new1", "new2"]
    # Busy guests are torn down by the sync loop once their jobs end; idle ones get a task now.
    Guest.objects.filter(lab=lab).update(busy_with="", status=Guest.Status.READY)
    assert call(client, "post", f"/api/v1/labs/{lab.pk}/teardown", token).status_code == 400
    r = call(client, "post", f"/api/v1/labs/{lab.pk}/teardown", token, {"confirm": True})
    assert r.status_code == 202, r.content
    assert [t["kind"] for t in r.json()["tasks"]] == ["teardown", "teardown"]
    assert r.json()["lab"]["status"] == "tearing_down"


def test_batch_validation_lists_each_line(client, ivy, template, pool):
    roster = "ok1, Fine,\nBad User, X,\nok1, Again,\nok4, Four, not-an-email"
    r = call(
        client,
        "post",
        "/api/v1/labs",
        token_for(ivy),
        {"template": "nope", "pool": pool.name, "memory_mb": 256, "roster": roster},
    )
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert [(e["line"], e["field"]) for e in errors] == [
        (None, "template"),
        (2, "username"),
        (3, "username"),
        (4, "email"),
    ]
    assert "There is no template 'nope'." == errors[0]["message"]
    assert not Lab.objects.exists()
    r = call(
        client,
        "post",
        "/api/v1/labs",
        token_for(ivy),
        {"template": template.pk, "pool": pool.pk, "memory_mb": 99999, "roster": "ok1"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "memory_mb"


def test_existing_accounts_are_confirmed_with_the_token_given(client, ivy, alice, template, pool, host):
    token = token_for(ivy)
    body = {"template": template.pk, "pool": pool.pk, "memory_mb": 256, "roster": "alice\nnew9", "slug": "api2"}
    r = call(client, "post", "/api/v1/labs", token, body)
    assert r.status_code == 409
    assert [a["username"] for a in r.json()["accounts"]] == ["alice"]
    assert not Lab.objects.exists()
    r = call(client, "post", "/api/v1/labs", token, {**body, "confirm_existing": r.json()["confirm_existing"]})
    assert r.status_code == 202, r.content
    assert r.json()["enrolled"] == ["alice"] and [a["username"] for a in r.json()["new_accounts"]] == ["new9"]


def test_cookie_auth_needs_the_csrf_token_and_a_token_does_not(alice, running_guest):
    url = f"/api/v1/guests/{running_guest.pk}/actions/reboot"
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.get(f"/api/v1/guests/{running_guest.pk}").status_code == 200
    assert browser.post(url, "{}", content_type="application/json").status_code == 403
    assert not Task.objects.exists()
    page = browser.get(reverse("my_vms"))
    csrf = page.cookies["csrftoken"].value
    r = browser.post(url, "{}", content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert r.status_code == 202
    Task.objects.all().delete()
    set_state(running_guest, "r")
    script = Client(enforce_csrf_checks=True)
    assert call(script, "post", url, token_for(alice)).status_code == 202


def test_each_token_is_throttled(client, settings, alice, running_guest):
    settings.XENPANEL_API_RATE = 3
    token = token_for(alice)
    other = token_for(alice)
    # Counts left by earlier tests' tokens, whose ids the database may give again.
    conn = redis_connection()
    for key in conn.scan_iter("xenpanel:api-rate:*"):
        conn.delete(key)
    url = f"/api/v1/guests/{running_guest.pk}"
    assert [call(client, "get", url, token).status_code for _ in range(3)] == [200, 200, 200]
    r = call(client, "get", url, token)
    assert r.status_code == 429 and 1 <= int(r["Retry-After"]) <= 60
    assert call(client, "get", url, other).status_code == 200


def test_last_use_is_recorded(client, alice, running_guest):
    token = token_for(alice)
    row = ApiToken.objects.get(digest=api_tokens.digest(token))
    assert row.last_used_at is None
    call(client, "get", "/api/v1/guests", token)
    row.refresh_from_db()
    assert row.last_used_at is not None and timezone.now() - row.last_used_at < timedelta(seconds=30)


def test_schema_and_docs_are_served_without_a_cdn(client):
    schema = client.get("/api/v1/openapi.json").json()
    for path in (
        "/api/v1/guests",
        "/api/v1/guests/{guest_id}",
        "/api/v1/guests/{guest_id}/actions/{action}",
        "/api/v1/tasks/{task_id}",
        "/api/v1/labs",
        "/api/v1/labs/{lab_id}",
        "/api/v1/labs/{lab_id}/teardown",
        "/api/v1/guests/{guest_id}/save-points",
        "/api/v1/guests/{guest_id}/save-points/{sp_id}",
        "/api/v1/guests/{guest_id}/save-points/{sp_id}/return",
        "/api/v1/guests/{guest_id}/save-points/{sp_id}/delete",
        "/api/v1/labs/{lab_id}/save-points",
        "/api/v1/labs/{lab_id}/save-points/return",
    ):
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"
    docs = client.get("/api/v1/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in docs
    assert "cdn" not in docs.lower() and "https://" not in docs


ODD_BODIES = [
    {},
    [],
    "text",
    {"confirm": "yes please"},
    {"confirm": True, "memory_mb": -5},
    {"confirm": True, "memory_mb": 10**12},
    {"template": None, "pool": [], "memory_mb": "x", "roster": 5},
    {"template": 10**15, "pool": "no such pool", "memory_mb": 256, "roster": "\x00\n" * 3, "expires_at": "yesterday"},
]
ODD_IDS = ["0", "-1", "99999999999999999999", "abc"]


def _operations(client):
    schema = client.get("/api/v1/openapi.json").json()
    for path, methods in schema["paths"].items():
        for method in methods:
            yield method, path


def test_no_input_makes_a_server_error(client, settings, users, running_guest, task, lab):
    """Schemathesis-style, cheaply: every operation of the schema, odd ids, actions and bodies, for two roles."""
    settings.XENPANEL_API_RATE = 0  # hundreds of requests a token: the rate limit would answer them all
    actions = ["reboot", "mem_set", "teardown", "provision", "x" * 300, "%00"]
    wrong, statuses = [], set()
    for role in ("owner", "admin"):
        token = token_for(users[role])
        for method, path in _operations(client):
            ids = [*ODD_IDS, str(running_guest.pk), str(task.pk), str(lab.pk)]
            urls = {re.sub(r"\{action\}", a, re.sub(r"\{\w+_id\}", i, path)) for i in ids for a in actions}
            for url in sorted(urls):
                for body in ODD_BODIES if method == "post" else [None]:
                    r = call(client, method, url, token, body)
                    statuses.add(r.status_code)
                    if r.status_code >= 500 or r.status_code == 200 and method == "post":
                        wrong.append(f"{role} {method.upper()} {url} {body!r}: {r.status_code}")
    assert not wrong, "\n".join(wrong[:20])
    assert {200, 202, 400, 404, 409, 422} <= statuses and 429 not in statuses
