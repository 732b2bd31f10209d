"""Every URL in the project against every role, from one table.

A view added without a row here fails `test_every_url_has_a_row`, so nobody
can ship a page whose permissions were never written down. Only admin/, rq/
and i18n/ are skipped: they carry their own authentication (staff-only admin
and RQ dashboard, the language switch that is public by design).
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from labs.models import ApiToken, SavePoint, SshKey, Task
from labs.services import api_tokens

SKIPPED_PREFIXES = ("admin/", "rq/", "i18n/")
ROLES = ("anonymous", "owner", "other_student", "other_instructor", "lab_instructor", "admin")

# name: (method, args builder, {role: status}); a status per role, in ROLES order.
ANON, OWNER, STUDENT2, INSTR2, INSTR, ADMIN = range(6)


def _statuses(*codes: int) -> dict[str, int]:
    assert len(codes) == len(ROLES)
    return dict(zip(ROLES, codes, strict=True))


# What each kind of page gives each role.
PUBLIC = _statuses(200, 200, 200, 200, 200, 200)
ANY_USER = _statuses(302, 200, 200, 200, 200, 200)
REDIRECT = _statuses(302, 302, 302, 302, 302, 302)
GUEST_PAGE = _statuses(302, 200, 404, 404, 200, 200)
GUEST_POST = _statuses(302, 302, 404, 404, 302, 302)
INSTRUCTORS = _statuses(302, 404, 404, 200, 200, 200)
LAB_PAGE = _statuses(302, 404, 404, 404, 200, 200)
LAB_POST = _statuses(302, 404, 404, 404, 302, 302)
POST_ONLY = _statuses(405, 405, 405, 405, 405, 405)
ADMINS = _statuses(302, 404, 404, 404, 404, 200)
# The JSON API, here by session cookie (tests/ui/test_api.py: by token): no login redirect, a 401.
API_ANY_USER = _statuses(401, 200, 200, 200, 200, 200)
API_GUEST = _statuses(401, 200, 404, 404, 200, 200)
API_LAB = _statuses(401, 404, 404, 404, 200, 200)

TABLE = {
    "home": [("get", lambda o: [], REDIRECT)],
    "healthz": [("get", lambda o: [], PUBLIC)],
    "whoami": [("get", lambda o: [], ANY_USER)],
    "login": [("get", lambda o: [], PUBLIC)],
    "logout": [("get", lambda o: [], POST_ONLY)],
    # An empty POST is a form with errors, shown again: nothing changes.
    "password_change": [("get", lambda o: [], ANY_USER), ("post", lambda o: [], ANY_USER)],
    "my_vms": [("get", lambda o: [], ANY_USER)],
    # An empty POST is the form with its error, shown again.
    "ssh_keys": [("get", lambda o: [], ANY_USER), ("post", lambda o: [], ANY_USER)],
    # Only the key's owner (alice) may see or delete it; admins too get a 404 (the admin shows keys).
    "ssh_key_delete": [
        ("get", lambda o: [o["key"].pk], _statuses(302, 200, 404, 404, 404, 404)),
        ("post", lambda o: [o["key"].pk], _statuses(302, 302, 404, 404, 404, 404)),
    ],
    "guest_detail": [("get", lambda o: [o["guest"].pk], GUEST_PAGE)],
    "guest_live": [("get", lambda o: [o["guest"].pk], GUEST_PAGE)],
    # A one-time console ticket (JSON) for whoever may see the guest page.
    "console_ticket": [
        ("get", lambda o: [o["guest"].pk], POST_ONLY),
        ("post", lambda o: [o["guest"].pk], _statuses(302, 200, 404, 404, 200, 200)),
    ],
    "guest_confirm": [
        ("get", lambda o: [o["guest"].pk, "destroy"], GUEST_PAGE),
        ("get", lambda o: [o["guest"].pk, "reset"], GUEST_PAGE),
        # Deleting a VM is for the lab's instructors only.
        ("get", lambda o: [o["guest"].pk, "teardown"], _statuses(302, 404, 404, 404, 200, 200)),
        ("get", lambda o: [o["guest"].pk, "reboot"], _statuses(302, 404, 404, 404, 404, 404)),
    ],
    "guest_action": [
        ("get", lambda o: [o["guest"].pk, "reboot"], POST_ONLY),
        ("post", lambda o: [o["guest"].pk, "reboot"], GUEST_POST),
        ("post", lambda o: [o["guest"].pk, "teardown"], _statuses(302, 404, 404, 404, 302, 302)),
        ("post", lambda o: [o["guest"].pk, "format-disk"], _statuses(302, 404, 404, 404, 404, 404)),
    ],
    "lab_list": [("get", lambda o: [], INSTRUCTORS)],
    # An empty POST (no "Create"): the form with its errors, nothing previewed or created.
    "lab_create": [("get", lambda o: [], INSTRUCTORS), ("post", lambda o: [], INSTRUCTORS)],
    "lab_detail": [("get", lambda o: [o["lab"].pk], LAB_PAGE)],
    "lab_live": [("get", lambda o: [o["lab"].pk], LAB_PAGE)],
    # Nothing stashed in the session: the owner is sent on to the lab page.
    "lab_accounts": [("get", lambda o: [o["lab"].pk], LAB_POST)],
    "lab_confirm_teardown": [("get", lambda o: [o["lab"].pk], LAB_PAGE)],
    # Class hours: an empty POST is the form with its errors, shown again (nothing saved).
    "lab_class_hours": [("get", lambda o: [o["lab"].pk], LAB_PAGE), ("post", lambda o: [o["lab"].pk], LAB_PAGE)],
    # Without the ticked box, nothing starts: back to the confirmation page.
    "lab_start_stopped": [("get", lambda o: [o["lab"].pk], LAB_PAGE), ("post", lambda o: [o["lab"].pk], LAB_POST)],
    # An empty POST is refused with a message (nothing changes) and back to the lab page.
    "lab_expiry": [("get", lambda o: [o["lab"].pk], POST_ONLY), ("post", lambda o: [o["lab"].pk], LAB_POST)],
    "lab_guests_csv": [("get", lambda o: [o["lab"].pk], LAB_PAGE)],
    # Save points: an empty label is refused with a message, back to the page; without the ticked box
    # nothing happens (back to the confirmation page). One taken for the whole lab is the instructors' to delete.
    "save_point_take": [
        ("get", lambda o: [o["guest"].pk], POST_ONLY),
        ("post", lambda o: [o["guest"].pk], GUEST_POST),
    ],
    "save_point_return": [
        ("get", lambda o: [o["guest"].pk, o["save_point"].pk], GUEST_PAGE),
        ("post", lambda o: [o["guest"].pk, o["save_point"].pk], GUEST_POST),
        ("get", lambda o: [o["guest"].pk, o["lab_save_point"].pk], GUEST_PAGE),
    ],
    "save_point_delete": [
        ("get", lambda o: [o["guest"].pk, o["save_point"].pk], GUEST_PAGE),
        ("post", lambda o: [o["guest"].pk, o["save_point"].pk], GUEST_POST),
        ("get", lambda o: [o["guest"].pk, o["lab_save_point"].pk], _statuses(302, 404, 404, 404, 200, 200)),
        ("post", lambda o: [o["guest"].pk, o["lab_save_point"].pk], _statuses(302, 404, 404, 404, 302, 302)),
    ],
    "lab_save_point_take": [("get", lambda o: [o["lab"].pk], POST_ONLY), ("post", lambda o: [o["lab"].pk], LAB_POST)],
    # Without a label there is nothing to confirm: back to the lab page.
    "lab_save_point_return": [("get", lambda o: [o["lab"].pk], LAB_POST), ("post", lambda o: [o["lab"].pk], LAB_POST)],
    "student_password_confirm": [
        ("get", lambda o: [o["lab"].pk, o["guest"].student_id], LAB_PAGE),
        # Someone with no VM in the lab is nobody the lab's instructors can reset.
        ("get", lambda o: [o["lab"].pk, o["no_guest"].pk], _statuses(302, 404, 404, 404, 404, 404)),
    ],
    # Without the ticked box the lab's instructors are sent back to the confirmation page.
    "student_password_reset": [
        ("get", lambda o: [o["lab"].pk, o["guest"].student_id], POST_ONLY),
        ("post", lambda o: [o["lab"].pk, o["guest"].student_id], LAB_POST),
        ("post", lambda o: [o["lab"].pk, o["no_guest"].pk], _statuses(302, 404, 404, 404, 404, 404)),
    ],
    # Nothing waiting in the session: the lab's instructors are sent on to the lab page.
    "student_password_new": [
        ("get", lambda o: [o["lab"].pk, o["guest"].student_id], LAB_POST),
        ("get", lambda o: [o["lab"].pk, o["no_guest"].pk], _statuses(302, 404, 404, 404, 404, 404)),
    ],
    "lab_action": [
        ("get", lambda o: [o["lab"].pk, "retry_failed"], POST_ONLY),
        ("post", lambda o: [o["lab"].pk, "retry_failed"], LAB_POST),
        ("post", lambda o: [o["lab"].pk, "explode"], _statuses(302, 404, 404, 404, 404, 404)),
    ],
    # My API tokens: only the token's owner (alice) may revoke it; admins too get a 404.
    "api_tokens": [("get", lambda o: [], ANY_USER), ("post", lambda o: [], ANY_USER)],
    "api_token_revoke": [
        ("get", lambda o: [o["token"].pk], _statuses(302, 200, 404, 404, 404, 404)),
        ("post", lambda o: [o["token"].pk], _statuses(302, 302, 404, 404, 404, 404)),
    ],
    "api:guests": [("get", lambda o: [], API_ANY_USER)],
    "api:guest": [("get", lambda o: [o["guest"].pk], API_GUEST)],
    # The guest is not running: reboot conflicts with its state (409) for whoever may ask.
    "api:guest_action": [
        ("get", lambda o: [o["guest"].pk, "reboot"], POST_ONLY),
        ("post", lambda o: [o["guest"].pk, "reboot"], _statuses(401, 409, 404, 404, 409, 409)),
        ("post", lambda o: [o["guest"].pk, "teardown"], _statuses(401, 404, 404, 404, 400, 400)),
        ("post", lambda o: [o["guest"].pk, "format-disk"], _statuses(401, 404, 404, 404, 404, 404)),
    ],
    "api:task": [("get", lambda o: [o["task"].pk], API_GUEST)],
    # Save points: an empty object lacks the label for anyone signed in (422; with one, strangers get a 404:
    # tests/ui/test_api.py); without confirm: true nothing is returned to or deleted (400). One taken for the
    # whole lab is the instructors' to delete.
    "api:guest_save_points": [
        ("get", lambda o: [o["guest"].pk], API_GUEST),
        ("post", lambda o: [o["guest"].pk], _statuses(401, 422, 422, 422, 422, 422)),
    ],
    "api:guest_save_point": [
        ("get", lambda o: [o["guest"].pk, o["save_point"].pk], API_GUEST),
        ("get", lambda o: [o["guest"].pk, o["lab_save_point"].pk], API_GUEST),
    ],
    "api:save_point_return": [
        ("get", lambda o: [o["guest"].pk, o["save_point"].pk], POST_ONLY),
        ("post", lambda o: [o["guest"].pk, o["save_point"].pk], _statuses(401, 400, 404, 404, 400, 400)),
        ("post", lambda o: [o["guest"].pk, o["lab_save_point"].pk], _statuses(401, 400, 404, 404, 400, 400)),
    ],
    "api:save_point_delete": [
        ("post", lambda o: [o["guest"].pk, o["save_point"].pk], _statuses(401, 400, 404, 404, 400, 400)),
        ("post", lambda o: [o["guest"].pk, o["lab_save_point"].pk], _statuses(401, 404, 404, 404, 400, 400)),
    ],
    # An empty object lacks the batch's fields for anyone signed in (422); a whole one gets students a 404
    # (test_api.py).
    "api:labs": [("get", lambda o: [], POST_ONLY), ("post", lambda o: [], _statuses(401, 422, 422, 422, 422, 422))],
    "api:lab": [("get", lambda o: [o["lab"].pk], API_LAB)],
    "api:lab_teardown": [("post", lambda o: [o["lab"].pk], _statuses(401, 404, 404, 404, 400, 400))],
    # A lab's save points: an empty object lacks the label for anyone signed in (422; with one, students and
    # strangers get a 404: tests/ui/test_api.py and tests/pipeline/test_api_lab_save_points.py).
    "api:lab_save_points": [
        ("get", lambda o: [o["lab"].pk], API_LAB),
        ("post", lambda o: [o["lab"].pk], _statuses(401, 422, 422, 422, 422, 422)),
    ],
    "api:lab_save_point_return": [
        ("get", lambda o: [o["lab"].pk], POST_ONLY),
        ("post", lambda o: [o["lab"].pk], _statuses(401, 422, 422, 422, 422, 422)),
    ],
    # /api/v1/ itself is nothing (ninja's placeholder; its docs are at /api/v1/docs).
    "api:api-root": [("get", lambda o: [], _statuses(404, 404, 404, 404, 404, 404))],
    "api:openapi-json": [("get", lambda o: [], PUBLIC)],
    "api:openapi-view": [("get", lambda o: [], PUBLIC)],
    # A lab's audit trail is its instructors' (and admins').
    "lab_audit": [("get", lambda o: [o["lab"].pk], LAB_PAGE)],
    # Templates and their builds are the admins'; an empty POST is the form with its errors (or, for a
    # rebuild, the message that nothing was done), shown again: nothing is queued.
    "template_list": [("get", lambda o: [], ADMINS), ("post", lambda o: [], ADMINS)],
    "template_detail": [("get", lambda o: [o["template"].pk], ADMINS)],
    "template_rebuild": [
        ("get", lambda o: [o["template"].pk, "golden"], ADMINS),
        ("get", lambda o: [o["template"].pk, "tree"], ADMINS),
        ("post", lambda o: [o["template"].pk, "golden"], ADMINS),
        ("get", lambda o: [o["template"].pk, "explode"], _statuses(302, 404, 404, 404, 404, 404)),
    ],
    "template_build": [("get", lambda o: [o["build"].pk], ADMINS)],
    "template_build_live": [("get", lambda o: [o["build"].pk], ADMINS)],
    "host_list": [("get", lambda o: [], INSTRUCTORS)],
    "host_detail": [("get", lambda o: [o["host"].pk], INSTRUCTORS)],
    # Usage charts: the same rules as the pages they sit on (the guest's, the lab's, the host's).
    "guest_usage": [("get", lambda o: [o["guest"].pk], GUEST_PAGE)],
    "guest_usage_json": [("get", lambda o: [o["guest"].pk], GUEST_PAGE)],
    "lab_sparklines": [("get", lambda o: [o["lab"].pk], LAB_PAGE)],
    "lab_usage": [("get", lambda o: [o["lab"].pk], LAB_PAGE)],
    "lab_usage_csv": [("get", lambda o: [o["lab"].pk], LAB_PAGE)],
    "host_usage": [("get", lambda o: [o["host"].pk], INSTRUCTORS)],
    "host_usage_json": [("get", lambda o: [o["host"].pk], INSTRUCTORS)],
}


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for p in patterns:
        route = prefix + str(p.pattern)
        if route.startswith(SKIPPED_PREFIXES):
            continue
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, route, f"{p.namespace}:" if p.namespace else namespace)
        elif isinstance(p, URLPattern):
            yield route, p.name and namespace + p.name


def test_every_url_has_a_row():
    found = dict(_walk(get_resolver().url_patterns))
    unnamed = [route for route, name in found.items() if not name]
    assert not unnamed, f"URL patterns without a name: {unnamed}"
    names = set(found.values())
    assert names - TABLE.keys() == set(), "views without a row in TABLE"
    assert TABLE.keys() - names == set(), "rows in TABLE for views that no longer exist"


@pytest.fixture
def alice_key(alice) -> SshKey:
    return SshKey.objects.create(
        user=alice, key_type="ssh-ed25519", body="AAAA", bits=256, comment="alice@laptop", fingerprint="SHA256:x"
    )


@pytest.fixture
def alice_token(alice) -> ApiToken:
    return api_tokens.create_token(alice, "script", 30)[0]


@pytest.fixture
def cast(alice, bob, charlie, ivy, admin_user, alice_guest, bob_guest, lab, host, alice_key, alice_token):
    return {
        "users": {
            "anonymous": None,
            "owner": alice,
            "other_student": bob,
            "other_instructor": charlie,
            "lab_instructor": ivy,
            "admin": admin_user,
        },
        "objects": {
            "guest": alice_guest,
            "lab": lab,
            "host": host,
            "no_guest": charlie,
            "key": alice_key,
            "token": alice_token,
            "save_point": SavePoint.objects.create(
                guest=alice_guest,
                label="before exercise 3",
                volume="vm-x.sp1",
                method="copy",
                size_mb=64,
                status="ready",
            ),
            "lab_save_point": SavePoint.objects.create(
                guest=alice_guest,
                label="class",
                volume="vm-x.sp2",
                method="copy",
                size_mb=64,
                status="ready",
                lab_wide=True,
            ),
            "task": Task.objects.create(
                kind="start", guest=alice_guest, lab=lab, host=host, actor=alice, steps_total=1
            ),
            "template": lab.template,
            "build": Task.objects.create(kind="build_template", host=host, target=lab.template.name, steps_total=3),
        },
    }


def _requests(client, cast, role: str):
    """(method, url, name, expected status, response) for every row, as `role`."""
    user = cast["users"][role]
    if user is not None:
        client.force_login(user)
    for name, rows in TABLE.items():
        for method, args, expected in rows:
            url = reverse(name, args=args(cast["objects"]))
            # The API takes JSON: an empty object, which confirms nothing.
            body = (
                {"data": "{}", "content_type": "application/json"}
                if name.startswith("api:") and method == "post"
                else {}
            )
            yield method, url, name, expected[role], getattr(client, method)(url, **body)


@pytest.mark.parametrize("role", ROLES)
def test_every_url_for_role(client, cast, role):
    wrong = []
    for method, url, name, expected, response in _requests(client, cast, role):
        if response.status_code != expected:
            wrong.append(f"{method.upper()} {url} ({name}): {response.status_code}, expected {expected}")
        if role == "anonymous" and response.status_code == 302:
            assert response["Location"].startswith(reverse("login")), url
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("role", ROLES)
def test_every_post_needs_the_csrf_token(cast, role):
    # The test client skips CSRF checks unless told; a forged cross-site POST
    # carries no token and must change nothing.
    client = Client(enforce_csrf_checks=True)
    # The API without a session cookie is a 401 before anything (a script's token needs no CSRF token).
    wrong = [
        f"POST {url} ({name}): {response.status_code}, expected {expected}"
        for method, url, name, _expected, response in _requests(client, cast, role)
        if method == "post"
        and response.status_code != (expected := 401 if role == "anonymous" and name.startswith("api:") else 403)
    ]
    assert not wrong, "\n".join(wrong)
