"""The panel's own answers when a request goes wrong (issue 13, part 4).

400, 403 (and a failed CSRF check), 404 and 500 are the panel's pages,
translated; the job-queue dashboard with Redis down says so; a megabyte
username is not sent back; a roster too big to read lands on its form.
"""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import translation
from django.views import defaults

from labs.models import Lab
from tests.conftest import PASSWORD
from tests.core.test_run_command import free_port

PT_BR = {"HTTP_ACCEPT_LANGUAGE": "pt-BR"}


def test_404_is_the_panels_page_and_lists_no_url(client, alice):
    client.force_login(alice)
    for headers, title in (({}, "Page not found"), (PT_BR, "Página não encontrada")):
        r = client.get("/no-such-page/", **headers)
        body = r.content.decode()
        assert r.status_code == 404 and title in body
        assert 'class="navbar-brand"' in body  # the panel's layout
        assert "URLconf" not in body and "admin/" not in body


def test_400_is_the_panels_page(client):
    for headers, title in (({}, "Bad request"), (PT_BR, "Requisição inválida")):
        r = client.get(reverse("login"), HTTP_HOST="evil.example", **headers)
        assert r.status_code == 400 and title in r.content.decode()


def test_403_is_the_panels_page(alice):
    request = RequestFactory().get("/")
    request.user = alice
    for language, title in (("en", "Not allowed"), ("pt-br", "Não permitido")):
        with translation.override(language):
            r = defaults.permission_denied(request, PermissionDenied())
        assert r.status_code == 403 and title in r.content.decode()


def test_a_failed_csrf_check_says_what_to_do(alice):
    client = Client(enforce_csrf_checks=True)
    for headers, text in (({}, "Form expired"), (PT_BR, "Formulário expirado")):
        r = client.post(reverse("login"), {"username": "alice", "password": PASSWORD}, **headers)
        body = r.content.decode()
        assert r.status_code == 403 and text in body and 'class="navbar-brand"' in body
        assert "CSRF verification failed" not in body


def test_500_is_the_panels_page_without_a_request(monkeypatch, alice):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    client = Client(raise_request_exception=False)
    client.force_login(alice)
    monkeypatch.setattr("labs.views.render", broken)
    for headers, text in (({}, "Server error"), (PT_BR, "Erro no servidor")):
        r = client.get(reverse("my_vms"), **headers)
        body = r.content.decode()
        assert r.status_code == 500 and text in body and "boom" not in body
    # Django renders it without a request context: nothing in it may need one.
    with translation.override("en"):
        assert "Server error" in defaults.server_error(RequestFactory().get("/")).content.decode()


@pytest.fixture
def redis_down(settings):
    settings.RQ_QUEUES = {"default": {"URL": f"redis://127.0.0.1:{free_port()}/0"}}


@pytest.mark.parametrize("path", ["/rq/", "/rq/queues/0/", "/rq/workers/0/"])
def test_job_queue_dashboard_with_redis_down_says_so(admin_user, redis_down, path):
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    r = client.get(path)
    assert r.status_code == 503
    body = r.content.decode()
    assert "Job queues unavailable" in body and "REDIS_URL" in body
    assert "Filas de tarefas indisponíveis" in client.get(path, **PT_BR).content.decode()


def test_job_queue_dashboard_is_still_staff_only(client, alice, redis_down):
    client.force_login(alice)
    r = client.get("/rq/")
    assert r.status_code == 302 and "login" in r["Location"]


def test_job_queue_dashboard_with_redis_up(admin_user):
    client = Client()
    client.force_login(admin_user)
    assert client.get("/rq/").status_code == 200


@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_a_megabyte_username_is_refused_and_not_sent_back(client, url, admin_user):
    huge = "a" * 1_000_000
    r = client.post(url, {"username": huge, "password": "x"})
    body = r.content.decode()
    assert r.status_code == 200
    assert "A username has at most 150 characters." in body
    assert "a" * 151 not in body and len(body) < 50_000
    # A wrong name of a normal length comes back as before, for correcting.
    body = client.post(url, {"username": "mistyped-name", "password": "x"}).content.decode()
    assert 'value="mistyped-name"' in body and "at most 150 characters" not in body
    # And a right one logs in.
    assert client.post(url, {"username": "root", "password": PASSWORD}).status_code == 302


def test_username_limit_in_portuguese(client):
    r = client.post(reverse("login"), {"username": "a" * 151, "password": "x"}, **PT_BR)
    assert "Um nome de usuário tem no máximo 150 caracteres." in r.content.decode()


TOO_BIG = "x" * (5 * 1024 * 1024)
ROSTER_TOO_BIG = (
    "The roster is too large (at most 512 KiB, about 8,192 lines). Nothing was created, and the form could not"
    " be read back: fill it in again with a shorter roster, or split the class into several labs."
)


def _csrf_client(user) -> tuple[Client, str]:
    """A client that goes through the CSRF check, as a browser does, and the form's token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get(reverse("lab_create")).content.decode()
    return client, re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


@pytest.mark.parametrize("encoding", ["multipart", "urlencoded"])
def test_a_roster_too_big_to_read_is_an_error_on_its_form(ivy, template, pool, host, encoding):
    client, token = _csrf_client(ivy)
    data = {"csrfmiddlewaretoken": token, "name": "Big", "template": template.pk, "pool": pool.pk}
    if encoding == "multipart":
        r = client.post(reverse("lab_create"), {**data, "roster_text": TOO_BIG})
    else:
        body = "&".join(f"{k}={v}" for k, v in data.items()) + "&roster_text=" + TOO_BIG
        r = client.post(reverse("lab_create"), body, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 413
    page = r.content.decode()
    assert ROSTER_TOO_BIG in r.context["form"].errors["roster_text"]
    assert 'id="lab-batch-form"' in page and "Bad request" not in page
    assert len(page) < 100_000
    assert not Lab.objects.exists()


def test_roster_too_big_in_portuguese(ivy, template, pool, host):
    client, token = _csrf_client(ivy)
    r = client.post(reverse("lab_create"), {"csrfmiddlewaretoken": token, "roster_text": TOO_BIG}, **PT_BR)
    assert r.status_code == 413
    assert "A lista de alunos é grande demais (no máximo 512 KiB, cerca de 8.192 linhas)." in r.content.decode()


def test_a_body_too_big_elsewhere_is_the_plain_400(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get(reverse("my_vms"))
    # A student (no new-batch form for them) posting the same to the form's URL gets the 400 page.
    r = client.post(reverse("lab_create"), {"roster_text": TOO_BIG})
    assert r.status_code == 400 and "Bad request" in r.content.decode()
