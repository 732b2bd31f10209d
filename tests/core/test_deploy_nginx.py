"""deploy/nginx-xenpanel.conf on Debian's own nginx, in front of gunicorn, with real HTTPS requests.

The site goes in as deploy/README.md puts it (sites-available, sites-enabled, Debian's default site
out, `nginx -t`, reload) into Debian's /etc/nginx, in a scratch root (test_deploy_scratch.py). Only
paths, ports (nginx on 127.0.0.1 only) and a throwaway certificate are the test's own. gunicorn and
uvicorn (the console's websockets) run with their units' ExecStart and the example env file, with a
SQLite database and a Redis of its own in place of the panel server's. A drop-in adds an access log
format that shows the headers nginx passes to gunicorn.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import ssl
import time
from pathlib import Path

import pytest
import websockets.sync.client

from tests.core.test_deploy_scratch import (
    DEMO_LAB,
    DEMO_PASSWORD,
    DEPLOY,
    NGINX,
    ROOT,
    Browser,
    Scratch,
    csrf_token,
    make_certificate,
    multipart,
    snapshot_repository,
)

NAME = "panel.example.edu"  # the example's name, kept: the test never looks it up
BODY_LIMIT = 2 * 1024 * 1024  # client_max_body_size 2m
STATIC = "css/xenpanel.css"
pytestmark = [
    pytest.mark.skipif(not Path(NGINX).exists(), reason="Debian's nginx is not installed (scripts/setup.sh --dev)"),
    pytest.mark.timeout(300),
]

ACCESS_LOG = (
    "access %%(m)s %%(U)s %%(q)s %%(s)s host=%%({host}i)s for=%%({x-forwarded-for}i)s proto=%%({x-forwarded-proto}i)s"
)


@pytest.fixture(scope="module")
def server():
    """The panel behind nginx with Debian's default site; the site is installed but nginx not yet reloaded."""
    s = Scratch.create("xenpanel-nginx-")
    try:
        snapshot_repository(s.root / "xenpanel.git")
        app = s.install_project(s.root / "xenpanel.git")
        s.install_packages("redis-server", "nginx")
        s.path("/root").mkdir(exist_ok=True)
        cert, key = make_certificate(s.path("/root"), NAME)
        s.write_env_file(
            DATABASE_URL=f"sqlite:///{app / 'var' / 'xenpanel.sqlite3'}",
            REDIS_URL=f"redis://127.0.0.1:{s.ports['redis']}/0",
        )
        s.manage("migrate", "-v0")
        s.manage("collectstatic", "--noinput", "-v0")
        s.manage("seed_demo")
        units = s.path("/etc/systemd/system")
        for unit in ("xenpanel-web.service", "xenpanel-asgi.service"):
            (units / unit).write_text((DEPLOY / unit).read_text())
        (units / "xenpanel-web.service.d").mkdir()
        log_format = shlex.quote(f"GUNICORN_CMD_ARGS=--access-logformat {shlex.quote(ACCESS_LOG)}")
        (units / "xenpanel-web.service.d" / "access-log.conf").write_text(f"[Service]\nEnvironment={log_format}\n")
        s.systemctl("start", "xenpanel-web", "xenpanel-asgi")
        # The guide's nginx block, with the test's certificate.
        r = s.sh(
            f"install -m 644 {cert} /etc/ssl/certs/xenpanel.pem\n"
            f"install -m 600 {key} /etc/ssl/private/xenpanel.key\n"
            "cp /opt/xenpanel/deploy/nginx-xenpanel.conf /etc/nginx/sites-available/xenpanel\n"
            "ln -sf ../sites-available/xenpanel /etc/nginx/sites-enabled/xenpanel\n"
            "rm -f /etc/nginx/sites-enabled/default\n"
        )
        assert r.returncode == 0, r.stderr
        yield s
    finally:
        s.destroy()


@pytest.fixture(scope="module")
def site(server):
    """nginx reloaded with the site, as `systemctl reload nginx` does after `nginx -t`."""
    server.systemctl("reload", "nginx")
    return server


def browser(s: Scratch) -> Browser:
    # The throwaway certificate is its own CA.
    return Browser(NAME, s.ports["https"], s.path("/etc/ssl/certs/xenpanel.pem"))


def gunicorn_saw(s: Scratch, method: str, path: str, at_least: int = 0, having: str = "") -> list[str]:
    """The access log's lines for `method path` (and `having`).

    A worker logs a request after it has answered it: wait up to 10 s for `at_least` lines; for none,
    until a request made now is in the log, and a moment more.
    """

    def found() -> list[str]:
        prefix = f"access {method} {path} "
        return [
            line for line in s.log("xenpanel-web.service").splitlines() if line.startswith(prefix) and having in line
        ]

    deadline = time.monotonic() + 10
    if at_least:
        while len(lines := found()) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        return lines
    marker = f"sync={time.monotonic_ns()}"
    Browser(NAME, s.ports["web"], None, scheme="http").get(f"/healthz/?{marker}")
    while marker not in s.log("xenpanel-web.service") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    return found()


def test_debian_nginx_accepts_the_site(server):
    r = server.nginx("-t")
    assert r.returncode == 0, f"nginx -t rejects deploy/nginx-xenpanel.conf:\n{r.stderr}"
    version = server.nginx("-v").stderr
    assert "nginx/" in version


def test_plain_http_is_redirected_to_https(site):
    r = Browser(NAME, site.ports["http"], None, scheme="http").get("/labs/?page=2")
    assert r.status == 301
    assert r.header("Location") == f"https://{NAME}/labs/?page=2"


def test_https_offers_http2_and_sends_hsts_as_the_guide_promises(site):
    b = browser(site)
    context = ssl.create_default_context(cafile=str(site.path("/etc/ssl/certs/xenpanel.pem")))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", site.ports["https"]), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname=NAME) as tls:
            assert tls.selected_alpn_protocol() == "h2"
    promised = re.search(r"`Strict-Transport-Security: ([^`]+)`", (DEPLOY / "README.md").read_text()).group(1)
    r = b.get("/login/")
    assert r.status == 200 and 'name="password"' in r.text
    assert r.header("Strict-Transport-Security") == promised
    # Django does not send its own (SECURE_HSTS_SECONDS is unset): one header, nginx's.
    assert len(r.headers.get_all("Strict-Transport-Security")) == 1


def test_login_a_page_and_csrf_over_the_forwarded_scheme(site):
    b = browser(site)
    login = b.login("instructor", DEMO_PASSWORD)
    assert login.status == 302, login.text[:2000]
    assert login.header("Location") == "/"
    # SECURE_PROXY_SSL=true: the cookies Django sets behind nginx are Secure.
    assert any(c.startswith("sessionid=") and "Secure" in c for c in b.set_cookies), b.set_cookies
    assert any(c.startswith("csrftoken=") and "Secure" in c for c in b.set_cookies), b.set_cookies
    page = b.get("/labs/")
    assert page.status == 200 and "instructor" in page.text
    assert page.header("Strict-Transport-Security")
    assert gunicorn_saw(site, "GET", "/labs/", at_least=1)

    # Django knows the request came over HTTPS (X-Forwarded-Proto): a POST with neither Origin nor
    # Referer fails the check Django makes on HTTPS requests only...
    form = b.get("/login/")
    token = csrf_token(form.text)
    bare = f"csrfmiddlewaretoken={token}&username=instructor&password=wrong".encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    refused = b.request("POST", "/login/", bare, headers, origin=False)
    assert refused.status == 403, refused.text[:1000]
    assert "Forbidden (Referer checking failed - no Referer.): /login/" in site.log("xenpanel-web.service")
    # ...which the same POST straight to gunicorn (plain HTTP, no X-Forwarded-Proto) does not meet:
    # the login form again, for the wrong password.
    direct = Browser(NAME, site.ports["web"], None, scheme="http")
    direct.cookies = dict(b.cookies)
    answer = direct.request("POST", "/login/", bare, headers, origin=False)
    assert answer.status == 200 and 'name="password"' in answer.text


def test_gunicorn_gets_the_forwarded_headers(site):
    b = browser(site)
    assert b.get("/healthz/").status == 200
    line = gunicorn_saw(site, "GET", "/healthz/", at_least=1, having="proto=https")[-1]
    assert f"host={NAME} " in line and "for=127.0.0.1 " in line and line.endswith("proto=https"), line
    guide = (DEPLOY / "README.md").read_text()
    assert "`X-Forwarded-For`" in guide and "`X-Forwarded-Proto: https`" in guide


def test_static_files_are_served_by_nginx(site):
    r = browser(site).get(f"/static/{STATIC}")
    assert r.status == 200
    assert r.body == (ROOT / "static" / STATIC).read_bytes()
    assert r.header("Cache-Control") == "max-age=604800"  # expires 7d
    assert r.header("Strict-Transport-Security")
    assert not gunicorn_saw(site, "GET", f"/static/{STATIC}")


def test_a_roster_upload_at_the_body_limit_reaches_the_panel_and_one_byte_more_gets_413(site):
    b = browser(site)
    assert b.login("instructor", DEMO_PASSWORD).status == 302
    form = b.get("/labs/new/")
    assert form.status == 200
    token = csrf_token(form.text)
    fields = {"csrfmiddlewaretoken": token, "name": "Networks 101", "memory_mb": "256"}
    headers = {"Accept-Language": "en"}

    body, content_type = multipart(fields, "roster_file", "roster.csv", BODY_LIMIT)
    r = b.request("POST", "/labs/new/", body, {**headers, "Content-Type": content_type})
    # Through nginx whole: the panel read the file and answers with its own, smaller limit.
    assert r.status == 200, r.text[:1000]
    assert "The roster file is too large (at most 512 KiB)." in r.text
    assert len(gunicorn_saw(site, "POST", "/labs/new/", at_least=1)) == 1

    body, content_type = multipart(fields, "roster_file", "roster.csv", BODY_LIMIT + 1)
    r = b.request("POST", "/labs/new/", body, {**headers, "Content-Type": content_type})
    assert r.status == 413
    assert r.header("Strict-Transport-Security")  # `always`: on nginx's own errors too
    assert len(gunicorn_saw(site, "POST", "/labs/new/")) == 1  # never reached gunicorn


def test_nginx_waits_for_gunicorn_as_long_as_gunicorn_lets_a_worker_run(site):
    dump = site.nginx("-T")
    assert dump.returncode == 0, dump.stderr
    site_conf = dump.stdout.split("sites-enabled/xenpanel:", 1)[1]
    location = re.search(r"location / \{(.*?)\}", site_conf, re.S).group(1)
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", location).group(1)
    argv = shlex.split(re.search(r"^ExecStart=(.*)$", (DEPLOY / "xenpanel-web.service").read_text(), re.M).group(1))
    assert read_timeout == argv[argv.index("--timeout") + 1]
    assert f"nginx waits {read_timeout} s for gunicorn" in (DEPLOY / "README.md").read_text()


def test_the_console_websocket_opens_through_nginx(site):
    """/ws/ reaches uvicorn as a websocket, signed in by the session cookie; the panel's side of a console.

    The guest's dom0 runs no console agent here (that is a dom0's service), so the socket, once open,
    says so and closes with 4503: past the upgrade, the Origin check, the session and the ticket.
    """
    assert browser(site).get("/ws/healthz").text == "ok\n"
    guest = int(site.manage("shell", "-v0", "-c", DEMO_LAB).stdout.split()[1])
    b = browser(site)
    assert b.login("student1", DEMO_PASSWORD).status == 302
    assert b.get(f"/vms/{guest}/").status == 200
    r = b.request("POST", f"/vms/{guest}/console/ticket/", b"", {"X-CSRFToken": b.cookies["csrftoken"]})
    assert r.status == 200, r.text[:1000]
    ticket = json.loads(r.text)["ticket"]
    context = ssl.create_default_context(cafile=str(site.path("/etc/ssl/certs/xenpanel.pem")))
    sock = socket.create_connection(("127.0.0.1", site.ports["https"]), timeout=10)
    with websockets.sync.client.connect(
        f"wss://{NAME}/ws/console/{guest}/?ticket={ticket}",
        sock=sock,
        ssl=context,
        server_hostname=NAME,
        origin=f"https://{NAME}",
        additional_headers={"Cookie": "; ".join(f"{k}={v}" for k, v in b.cookies.items())},
        open_timeout=10,
    ) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"t": "event", "e": "no_agent", "a": ""}
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            ws.recv(timeout=10)
    assert ws.close_code == 4503
