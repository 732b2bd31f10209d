"""deploy/: the systemd units, nginx site and env example refer to things that exist and fit together."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import get_commands
from rq.worker import BaseWorker
from rq.worker_pool import WorkerPool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTALL_DIR = "/opt/xenpanel"
UNITS = [
    "xenpanel-web.service",
    "xenpanel-asgi.service",
    "xenpanel-sync.service",
    "xenpanel-rqworker@.service",
    "xenpanel-console-agent@.service",
]


def unit(name: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (systemd allows repeated keys)."""
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / name).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def exec_start(name: str) -> list[str]:
    (line,) = unit(name)["ExecStart"]
    return shlex.split(line)


def in_repo(path: str) -> Path:
    assert path.startswith(INSTALL_DIR + "/"), path
    return ROOT / path[len(INSTALL_DIR) + 1 :]


def test_every_deploy_file_is_described_in_the_readme():
    readme = (DEPLOY / "README.md").read_text()
    for f in DEPLOY.iterdir():
        if f.name != "README.md" and f.suffix != ".md":
            assert f"`{f.name}`" in readme, f.name


@pytest.mark.parametrize("name", UNITS)
def test_units_run_programs_and_commands_that_exist(name):
    u = unit(name)
    assert u["WorkingDirectory"] == [INSTALL_DIR]
    assert u["EnvironmentFile"] == ["/etc/xenpanel/xenpanel.env"]
    argv = exec_start(name)
    program = in_repo(argv[0])
    # The venv's programs: the venv this suite runs in has the same layout.
    assert program.exists() and os.access(program, os.X_OK), program
    if argv[1] == "manage.py":
        assert (ROOT / "manage.py").exists()
        assert argv[2] in get_commands(), f"manage.py {argv[2]} does not exist"
    elif argv[0].endswith("/uvicorn"):
        module, attribute = argv[1].split(":")
        source = ROOT / (module.replace(".", "/") + ".py")
        assert re.search(rf"^{attribute} = ", source.read_text(), re.M), argv[1]
    else:
        assert argv[0].endswith("/gunicorn")
        module = argv[1].split(":")[0]
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
        assert settings.WSGI_APPLICATION == f"{module}.application"


def test_worker_unit_is_a_template_over_the_queue_name_with_the_host_worker_class():
    argv = exec_start("xenpanel-rqworker@.service")
    assert argv[2:] == ["host_worker", "%i"]
    # rq's worker pool of HostWorkers, sized by the Host's jobs at a time.
    pool = importlib.import_module("labs.jobs.pool").HostWorkerPool
    assert issubclass(pool, WorkerPool)
    assert issubclass(importlib.import_module("labs.jobs").HostWorker, BaseWorker)
    assert unit("xenpanel-rqworker@.service")["KillMode"] == ["mixed"]  # SIGTERM to the pool alone


def test_console_agent_unit_is_a_template_over_the_host_name_run_as_root():
    u = unit("xenpanel-console-agent@.service")
    argv = exec_start("xenpanel-console-agent@.service")
    assert argv[1:] == ["manage.py", "console_agent", "--host", "%i"]
    assert u["User"] == ["root"]  # xl console needs root
    assert u["Restart"] == ["always"]
    # The guide installs and starts it on each dom0, named after the Host.
    guide = (DEPLOY / "dom0-setup.md").read_text()
    assert 'systemctl enable --now "xenpanel-console-agent@$HOST"' in guide
    assert 'console_agent --host "$HOST" --check' in guide


def test_nginx_proxies_to_the_web_units_address_and_serves_collected_static():
    conf = (DEPLOY / "nginx-xenpanel.conf").read_text()
    argv = exec_start("xenpanel-web.service")
    bind = argv[argv.index("--bind") + 1]
    assert re.search(rf"proxy_pass http://{re.escape(bind)};", conf)
    # /ws/ (the console's websockets) goes to the ASGI unit.
    asgi = exec_start("xenpanel-asgi.service")
    address = f"{asgi[asgi.index('--host') + 1]}:{asgi[asgi.index('--port') + 1]}"
    assert re.search(rf"location /ws/ \{{\s*proxy_pass http://{re.escape(address)};", conf)
    static_root = Path(settings.STATIC_ROOT).relative_to(settings.BASE_DIR)
    location = re.search(r"location /(\S+)/ \{\s*alias (\S+);", conf)
    assert location.group(1) == settings.STATIC_URL.strip("/")
    assert location.group(2) == f"{INSTALL_DIR}/{static_root}/"
    # Django must trust the forwarded scheme, which the example env file switches on.
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf


def env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "xenpanel.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value
    return values


def test_env_example_sets_only_variables_that_settings_read():
    source = (ROOT / "xenpanel" / "settings.py").read_text()
    for key in env_example():
        assert re.search(rf'\(\s*"{key}"', source), f"settings.py does not read {key}"


def test_env_example_is_a_valid_production_configuration(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XENPANEL_", "DATABASE_", "REDIS_"))}
    env.update(env_example(), DJANGO_SETTINGS_MODULE="xenpanel.settings")
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.XENPANEL_DOM0, s.SECURE_PROXY_SSL_HEADER, "
        "s.SESSION_COOKIE_SECURE)"
    )
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [
        "False",
        "django.db.backends.postgresql",
        "xen",
        "('HTTP_X_FORWARDED_PROTO',",
        "'https')",
        "True",
    ]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(tmp_path):
    """`systemd-analyze verify` on the units, pointed at this checkout instead of /opt/xenpanel."""
    names = []
    for name in UNITS:
        text = (DEPLOY / name).read_text().replace(INSTALL_DIR, str(ROOT))
        text = text.replace("/etc/xenpanel/xenpanel.env", str(DEPLOY / "xenpanel.env.example"))
        # The xenpanel account exists only on a real panel server.
        text = re.sub(r"^(User|Group)=xenpanel$", r"\1=root", text, flags=re.M)
        instance = name.replace("@.", "@dom0-a.")
        (tmp_path / instance).write_text(text)
        names.append(str(tmp_path / instance))
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
