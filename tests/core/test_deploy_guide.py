"""deploy/README.md's panel server steps, run block by block as root in a scratch root.

The guide's `sh server` blocks run as written, except where a `sh test` block follows and says why
(no network for apt and pip, no accounts made on this machine). Paths and ports are the scratch
root's (test_deploy_scratch.py), and so are `systemctl`, `nginx` and the packages' files: Debian's
nginx, a Redis from Debian's redis.conf and a throwaway PostgreSQL cluster laid out as Debian's.

The panel's address is 127.0.0.2: loopback, and not 127.0.0.1, which Redis would refuse to bind twice
(`bind 127.0.0.1 -::1 <panel address>`). Then the panel logs in to both the way a dom0 worker does:
PostgreSQL and Redis on that address, with the passwords the guide set.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import redis

from tests.core.test_deploy_scratch import (
    DEPLOY,
    NGINX,
    ROOT,
    Browser,
    Scratch,
    alive,
    make_certificate,
    postgres_bindir,
    read_env_file,
    snapshot_repository,
)
from tests.e2e.guide import Guide, parse

NAME = "panel.example.edu"
PANEL_ADDRESS = "127.0.0.2"
VALUES = {
    "PANEL_ADDRESS": PANEL_ADDRESS,
    "DOM0_ADDRESSES": "127.0.0.3,127.0.0.4",
    "DB_PASSWORD": "guide-db-8c1f",
    "REDIS_PASSWORD": "guide-redis-41ab",
    "ADMIN_PASSWORD": "guide-admin-77d0",
}
# What the test cannot do here, and so runs a stand-in for.
STAND_INS = {"apt-get install": "no network", "pip install": "no network", "useradd": "no accounts"}

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the guide's steps run as root"),
    pytest.mark.skipif(not Path(NGINX).exists(), reason="Debian's nginx is not installed (scripts/setup.sh --dev)"),
    pytest.mark.skipif(postgres_bindir() is None, reason="PostgreSQL is not installed (scripts/setup.sh --dev)"),
    pytest.mark.timeout(300),
]


def panel_guide() -> Guide:
    return parse(path=DEPLOY / "README.md", places=("server",), stand_in="test", runs_on="the test's scratch root")


def guide_sections(guide: Guide) -> tuple[list, list]:
    """The install steps, and those of the Upgrades section."""
    text = (DEPLOY / "README.md").read_text()
    upgrades = text[: text.index("\n## Upgrades\n")].count("\n") + 2
    return (
        [s for s in guide.steps if s.documented.line < upgrades],
        [s for s in guide.steps if s.documented.line > upgrades],
    )


def run_in(scratch: Scratch):
    def execute(script: str) -> tuple[int, str]:
        r = scratch.sh(script, TEST_VENV=str(ROOT / ".venv"))
        return r.returncode, r.stdout + r.stderr

    return execute


@pytest.fixture(scope="module")
def deployed():
    s = Scratch.create("xenpanel-guide-")
    try:
        snapshot_repository(s.root / "xenpanel.git")
        s.path("/root").mkdir(exist_ok=True)
        cert, key = make_certificate(s.path("/root"), NAME)
        values = {**VALUES, "REPO": str(s.root / "xenpanel.git"), "TLS_CERT": str(cert), "TLS_KEY": str(key)}
        guide = panel_guide()
        install, _ = guide_sections(guide)
        guide.run(install, values, run_in(s))
        yield SimpleNamespace(scratch=s, guide=guide, install=install, values=values)
    finally:
        s.destroy()


def test_every_step_ran_and_stand_ins_only_where_the_guide_says_why(deployed):
    assert [r.step for r in deployed.guide.ran] == deployed.install and all(r.rc == 0 for r in deployed.guide.ran)
    stand_ins = [s for s in deployed.install if s.stand_in]
    assert sorted(next(k for k in STAND_INS if k in s.documented.code) for s in stand_ins) == sorted(STAND_INS)
    for step in stand_ins:
        assert step.run.code.startswith("# "), f"line {step.run.line}: a stand-in says why, first"


def test_postgresql_takes_the_panel_on_its_address_with_the_password(deployed):
    s, v = deployed.scratch, deployed.values
    assert s.psql("SHOW listen_addresses").strip() == f"localhost,{PANEL_ADDRESS}"
    assert s.psql("SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL").strip() == "0"
    rules = s.psql(
        "SELECT address, auth_method FROM pg_hba_file_rules"
        " WHERE database = '{xenpanel}' AND user_name = '{all}' ORDER BY line_number"
    ).split()
    assert rules == [f"{a}|scram-sha-256" for a in v["DOM0_ADDRESSES"].split(",")]
    url = f"postgresql://xenpanel:{v['DB_PASSWORD']}@{PANEL_ADDRESS}:{s.ports['postgresql']}/xenpanel"
    with psycopg.connect(url, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("xenpanel",)
        # The guide's migrate and createsuperuser went there.
        assert conn.execute("SELECT is_superuser FROM auth_user WHERE username = 'admin'").fetchone() == (True,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url.replace(v["DB_PASSWORD"], "wrong"), connect_timeout=10).close()


def redis_client(deployed, password: str | None) -> redis.Redis:
    return redis.Redis(PANEL_ADDRESS, deployed.scratch.ports["redis"], password=password, socket_timeout=10)


def test_redis_wants_the_password_and_the_panel_worker_has_it(deployed):
    s = deployed.scratch
    with pytest.raises(redis.AuthenticationError):
        redis_client(deployed, None).ping()
    r = redis_client(deployed, deployed.values["REDIS_PASSWORD"])
    assert PANEL_ADDRESS in r.config_get("bind")["bind"].split()
    # xenpanel-rqworker@default registers itself in Redis once it is up.
    deadline = time.monotonic() + 30
    while not r.smembers("rq:workers") and time.monotonic() < deadline:
        assert s.pid("xenpanel-rqworker@default.service"), s.log("xenpanel-rqworker@default.service")[-3000:]
        time.sleep(0.2)
    assert r.smembers("rq:workers"), s.log("xenpanel-rqworker@default.service")[-3000:]


def test_the_env_file_is_private_and_the_settings_take_it(deployed):
    s, v = deployed.scratch, deployed.values
    path = s.path("/etc/xenpanel/xenpanel.env")
    assert path.stat().st_mode & 0o777 == 0o600
    env = read_env_file(path)
    example = read_env_file(DEPLOY / "xenpanel.env.example")
    assert env.keys() == example.keys()
    assert env["SECRET_KEY"] != example["SECRET_KEY"] and len(env["SECRET_KEY"]) >= 50
    assert env["ALLOWED_HOSTS"] == NAME and env["SECURE_PROXY_SSL"] == "true"
    assert env["REDIS_URL"] == f"redis://:{v['REDIS_PASSWORD']}@{PANEL_ADDRESS}:{s.ports['redis']}/0"
    # `manage.py check --deploy`, as the guide runs it: what is left is what nginx does.
    check = deployed.guide.output_of("check --deploy")
    assert set(re.findall(r"\((security\.\w+)\)", check)) == {"security.W004", "security.W008"}, check


def test_the_units_run_as_enabled_and_the_panel_answers_through_nginx(deployed):
    s, v = deployed.scratch, deployed.values
    wanted = {f"xenpanel-{u}.service" for u in ("web", "asgi", "sync", "rqworker@default")}
    assert {p.name for p in s.path("/etc/systemd/system/multi-user.target.wants").iterdir()} == wanted
    assert wanted | {"nginx.service", "redis-server.service", "postgresql.service"} <= set(s.running())
    # gunicorn's command line is the unit's ExecStart (after the interpreter of its #! line).
    cmdline = Path(f"/proc/{s.pid('xenpanel-web.service')}/cmdline").read_bytes().decode().split("\0")
    assert cmdline[1:-1] == shlex.split(s.rewrite(s.load_unit("xenpanel-web").get("ExecStart")))

    b = Browser(NAME, s.ports["https"], s.path("/etc/ssl/certs/xenpanel.pem"))
    assert b.login(v.get("ADMIN_USER", "admin"), v["ADMIN_PASSWORD"]).status == 302
    admin = b.get("/admin/")
    assert admin.status == 200 and "Site administration" in admin.text
    assert b.get("/static/css/xenpanel.css").status == 200
    assert b.get("/ws/healthz").text == "ok\n"  # uvicorn, the console's websockets


def test_redis_keeps_what_it_was_given_across_a_crash(deployed):
    """appendonly yes: a write acknowledged before Redis is killed is there when it starts again."""
    s = deployed.scratch
    r = redis_client(deployed, deployed.values["REDIS_PASSWORD"])
    assert r.info("persistence")["aof_enabled"] == 1
    r.set("xenpanel-test:acknowledged", "yes")
    pid = s.pid("redis-server.service")
    os.kill(pid, signal.SIGKILL)
    while alive(pid):
        time.sleep(0.02)
    s.systemctl("start", "redis-server")
    assert r.get("xenpanel-test:acknowledged") == b"yes"
