"""The panel server in a scratch root: what the deploy tests (test_deploy_nginx, _guide, _upgrade) share.

No tests here. Run as a program, this file is also the scratch root's `systemctl`, `nginx` and
`scratch-install` (wrappers in <root>/bin, first on the guide blocks' PATH):

- Paths: /etc, /opt, /run and /var of the guide, the units and the packages' files live under the root.
- Ports: each service listens on a free loopback port instead of its usual one (nginx 80 and 443,
  gunicorn 8000, uvicorn 8001, PostgreSQL 5432, Redis 6379); nginx listens on 127.0.0.1 only.
- `scratch-install postgresql|redis-server|nginx` stands in for `apt-get install`: the package's own
  files (Debian's /etc/nginx, /etc/redis/redis.conf; a cluster laid out as pg_createcluster does),
  and its service started, as Debian does on install.
- `systemctl`: xenpanel's units from <root>/etc/systemd/system run with their ExecStart, WorkingDirectory,
  Environment and EnvironmentFile and nothing else (output in <root>/var/log/units/); Debian's
  nginx, redis-server and postgresql run as their packages' units would. No account is switched
  to, except `postgres`, which PostgreSQL needs.
- `nginx`: Debian's /usr/sbin/nginx on the root's configuration, rendered (paths and ports only)
  to <root>/run/nginx; not a daemon, pid file, logs and temp files under the root.
"""

from __future__ import annotations

import fnmatch
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# The well-known ports of the guide and the units, and what each becomes in the root.
PORTS = {"http": 80, "https": 443, "web": 8000, "asgi": 8001, "postgresql": 5432, "redis": 6379}
# systemd's PATH for services.
UNIT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PACKAGES = ("postgresql", "redis-server", "nginx")
NGINX = "/usr/sbin/nginx"


# `manage.py shell -c` after `manage.py seed_demo`: a lab of the demo's instructor with the demo students'
# guests, as a batch leaves them before its jobs run (the fields are those of every release so far).
DEMO_PASSWORD = "xenpanel-demo"
DEMO_LAB = """
from django.contrib.auth.models import User
from labs.models import Guest, Host, IpPool, Lab, LabTemplate
lab = Lab.objects.create(name="Networks 101", slug="net101", template=LabTemplate.objects.get(name="debian-12"),
                         pool=IpPool.objects.get(name="lab-net"), memory_mb=256)
lab.instructors.add(User.objects.get(username="instructor"))
for n, username in enumerate(("student1", "student2"), 1):
    name = f"net101-{username}"
    Guest.objects.create(lab=lab, student=User.objects.get(username=username), host=Host.objects.get(name="sim-dom0"),
                         pool=lab.pool, domain_name=name, hostname=name, ip=f"10.10.0.{10 + n}",
                         mac=f"00:16:3e:00:00:{n:02x}", root_lv=f"vm-{name}.raiz", swap_lv=f"vm-{name}.swap",
                         memory_mb=256)
print(lab.pk, *lab.guests.order_by("pk").values_list("pk", flat=True))
"""


class ScratchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"({path} does not exist)"


def postgres_bindir() -> Path | None:
    """Debian's PostgreSQL server programs, newest version first."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]), reverse=True)
    return found[0].parent if found else None


def snapshot_repository(dest: Path) -> str:
    """A bare repository whose main is this checkout as it is now (uncommitted work included), on top of HEAD.

    Returns the previous HEAD's commit. The tests clone it where the guide clones the project from.
    """
    git = ["git", "-c", "core.hooksPath=/dev/null"]
    subprocess.run([*git, "clone", "-q", "--bare", str(ROOT), str(dest)], check=True, capture_output=True)
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    env = dict(
        os.environ,
        GIT_DIR=str(dest),
        GIT_WORK_TREE=str(ROOT),
        GIT_INDEX_FILE=str(dest / "snapshot-index"),
        GIT_AUTHOR_NAME="deploy test",
        GIT_AUTHOR_EMAIL="deploy-test@localhost",
        GIT_COMMITTER_NAME="deploy test",
        GIT_COMMITTER_EMAIL="deploy-test@localhost",
    )
    subprocess.run([*git, "add", "-A"], env=env, check=True, capture_output=True)
    tree = subprocess.run([*git, "write-tree"], env=env, check=True, capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(
        [*git, "commit-tree", tree, "-p", head, "-m", "the working tree under test"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run([*git, "update-ref", "refs/heads/main", commit], env=env, check=True)
    subprocess.run([*git, "symbolic-ref", "HEAD", "refs/heads/main"], env=env, check=True)
    return head


def read_env_file(path: Path) -> dict[str, str]:
    """systemd's EnvironmentFile= for the simple files we ship: KEY=VALUE, comments, optional quotes."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@dataclass
class Unit:
    name: str  # xenpanel-rqworker@default.service
    values: dict[str, list[str]] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        v = self.values.get(key)
        return v[-1] if v else None


@dataclass
class Scratch:
    """The root, its ports and what runs in it. Saved in <root>/scratch.json for the stand-in programs."""

    root: Path
    ports: dict[str, int]
    python: str = sys.executable

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, prefix: str = "xenpanel-deploy-") -> Scratch:
        # Not pytest's tmp_path: its parents are private to the user running the tests, and
        # nginx's workers (www-data) and PostgreSQL (postgres) need to read their way in.
        root = Path(tempfile.mkdtemp(prefix=prefix))
        root.chmod(0o755)
        s = cls(root, {name: free_port() for name in PORTS})
        for d in ("bin", "etc/systemd/system", "etc/ssl/certs", "opt", "run/units", "tmp", "var/lib", "var/log/units"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "etc/ssl/private").mkdir(mode=0o700)
        (root / "scratch.json").write_text(json.dumps({"ports": s.ports, "python": s.python}))
        for command in ("systemctl", "nginx", "scratch-install"):
            wrapper = root / "bin" / command
            wrapper.write_text(
                f"#!/bin/sh\nexec {shlex.quote(s.python)} {shlex.quote(__file__)} {shlex.quote(str(root))}"
                f' {command} "$@"\n'
            )
            wrapper.chmod(0o755)
        return s

    @classmethod
    def load(cls, root: Path) -> Scratch:
        data = json.loads((root / "scratch.json").read_text())
        return cls(root, data["ports"], data["python"])

    def path(self, absolute: str) -> Path:
        """Where an absolute path of the guide lives in the root."""
        return self.root / absolute.lstrip("/")

    def rewrite(self, text: str) -> str:
        """The guide's paths and well-known ports, as they are in the root."""
        text = re.sub(r"(?<![\w.~/$-])/(etc|opt|run|var)(?=/)", lambda m: f"{self.root}/{m.group(1)}", text)
        text = re.sub(r"\b127\.0\.0\.1:8000\b", f"127.0.0.1:{self.ports['web']}", text)
        text = re.sub(r"\b127\.0\.0\.1:8001\b", f"127.0.0.1:{self.ports['asgi']}", text)
        text = re.sub(r"--port 8001\b", f"--port {self.ports['asgi']}", text)
        text = re.sub(r":5432\b", f":{self.ports['postgresql']}", text)
        return re.sub(r":6379\b", f":{self.ports['redis']}", text)

    def block_env(self, **extra: str) -> dict[str, str]:
        """The environment the guide's blocks run in: a root shell's, with the stand-ins first on PATH."""
        env = {
            "PATH": f"{self.root / 'bin'}:{UNIT_PATH}",
            "HOME": str(self.path("/root")),
            "LANG": "C.UTF-8",
            # psql's socket and port for `runuser -u postgres -- psql`: the root's cluster.
            "PGHOST": str(self.path("/run/postgresql")),
            "PGPORT": str(self.ports["postgresql"]),
            # No network for pip: requirements must already be in the venv.
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
        self.path("/root").mkdir(exist_ok=True)
        env.update(extra)
        return env

    def sh(self, script: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
        """Run a shell script as the guide's reader would, in the root (paths and ports rewritten)."""
        return subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + self.rewrite(script)],
            cwd=self.path("/root") if self.path("/root").is_dir() else self.root,
            env=self.block_env(**extra_env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # ------------------------------------------------------------------ the project
    def install_project(self, repository: Path, commit: str | None = None) -> Path:
        """/opt/xenpanel as the guide makes it (git clone, the suite's venv standing in for pip), plus var/."""
        app = self.path("/opt/xenpanel")
        subprocess.run(["git", "clone", "-q", str(repository), str(app)], check=True, capture_output=True)
        if commit:
            subprocess.run(["git", "-C", str(app), "reset", "-q", "--hard", commit], check=True, capture_output=True)
        (app / ".venv").symlink_to(ROOT / ".venv")
        (app / "var").mkdir(exist_ok=True)
        return app

    def write_env_file(self, **values: str) -> Path:
        """/etc/xenpanel/xenpanel.env: the shipped example with `values` in place of its lines (mode 600)."""
        lines = (DEPLOY / "xenpanel.env.example").read_text().splitlines()
        out, seen = [], set()
        for line in lines:
            key = line.split("=", 1)[0] if "=" in line and not line.startswith("#") else None
            if key in values:
                line = f"{key}={values[key]}"
                seen.add(key)
            out.append(line)
        unknown = set(values) - seen
        assert not unknown, f"the env example has no {sorted(unknown)}"
        path = self.path("/etc/xenpanel/xenpanel.env")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(out) + "\n")
        path.chmod(0o600)
        return path

    def manage(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """`.venv/bin/python manage.py ...` in /opt/xenpanel with the env file loaded, as the guide runs it."""
        app = self.path("/opt/xenpanel")
        env = {"PATH": UNIT_PATH, "LANG": "C.UTF-8", **read_env_file(self.path("/etc/xenpanel/xenpanel.env"))}
        r = subprocess.run(
            [str(app / ".venv/bin/python"), "manage.py", *args],
            cwd=app,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise ScratchError(
                f"manage.py {' '.join(args)}: exit {r.returncode}\n{r.stdout[-2000:]}{r.stderr[-3000:]}"
            )
        return r

    # ------------------------------------------------------------------ processes
    def _pidfile(self, unit: str) -> Path:
        return self.path(f"/run/units/{unit}.pid")

    def _log(self, unit: str) -> Path:
        return self.path(f"/var/log/units/{unit}.log")

    def log(self, unit: str) -> str:
        return tail(self._log(unit), 1_000_000)

    def pid(self, unit: str) -> int | None:
        try:
            pid = int(self._pidfile(unit).read_text())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def running(self) -> list[str]:
        names = [p.name[: -len(".pid")] for p in self.path("/run/units").glob("*.pid")]
        running = [n for n in names if self.pid(n)]
        if self._pg_pid():
            running.append("postgresql.service")
        return sorted(running)

    def _spawn(self, unit: str, argv: list[str], cwd: Path, env: dict[str, str]) -> int:
        log = self._log(unit)
        with log.open("ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} start: {shlex.join(argv)}\n".encode())
            out.flush()
            p = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._pidfile(unit).write_text(str(p.pid))
        return p.pid

    def _terminate(self, pid: int, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """systemd's KillMode=mixed: the signal to the main process, then SIGKILL to what is left of the group."""
        if pid <= 1:
            return  # never 0 or -1 (our own group, everything)
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _wait_ready(self, unit: str, pid: int, ports: list[int], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                raise ScratchError(f"{unit} exited while starting:\n{tail(self._log(unit))}")
            if all(listening("127.0.0.1", p) for p in ports):
                return
            time.sleep(0.05)
        raise ScratchError(f"{unit} does not listen on {ports} after {timeout} s:\n{tail(self._log(unit))}")

    def stop_all(self) -> None:
        """Everything the root runs, at once (SIGKILL; PostgreSQL's immediate shutdown): nothing here is kept."""
        for unit in self.running():
            try:
                if unit == "postgresql.service":
                    self._pg_ctl("stop", "-m", "immediate")
                elif pid := self.pid(unit):
                    self._terminate(pid, signal.SIGKILL, timeout=5)
            except (ScratchError, OSError):
                pass
        # Anything else of ours (a worker whose main process died, a postmaster): by process id,
        # found by its working directory or command line inside the root.
        mine = str(self.root) + "/"
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cwd = os.readlink(proc / "cwd") + "/"
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cwd.startswith(mine) or mine in cmdline.replace("\0", " ") + " ":
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def destroy(self) -> None:
        self.stop_all()
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ units
    def unit_name(self, name: str) -> str:
        return name if "." in name else f"{name}.service"

    def load_unit(self, name: str) -> Unit:
        """A unit of ours from <root>/etc/systemd/system, templates and drop-ins (*.service.d/*.conf) included."""
        name = self.unit_name(name)
        instance = ""
        file = self.path(f"/etc/systemd/system/{name}")
        if "@" in name and not file.exists():
            prefix, rest = name.split("@", 1)
            instance = rest.rsplit(".", 1)[0]
            file = self.path(f"/etc/systemd/system/{prefix}@.service")
        if not file.is_file():
            raise ScratchError(f"Unit {name} not found.")
        unit = Unit(name)
        files = [file, *sorted(file.with_name(file.name + ".d").glob("*.conf"))]
        for f in files:
            for line in f.read_text().splitlines():
                line = line.strip()
                if not line or line.startswith(("#", ";", "[")) or "=" not in line:
                    continue
                key, value = line.split("=", 1)
                value = value.strip().replace("%i", instance).replace("%%", "%")
                unit.values.setdefault(key.strip(), []).append(value)
        return unit

    def start_unit(self, name: str) -> None:
        """One of xenpanel's units, as systemd starts it (user switching aside)."""
        name = self.unit_name(name)
        if self.pid(name):
            return
        unit = self.load_unit(name)
        exec_start = unit.get("ExecStart")
        if not exec_start:
            raise ScratchError(f"{name} has no ExecStart")
        argv = shlex.split(self.rewrite(exec_start.lstrip("-@:+!")))
        env = {"PATH": UNIT_PATH, "LANG": "C.UTF-8"}
        for assignments in unit.values.get("Environment", []):
            env.update(a.split("=", 1) for a in shlex.split(assignments))
        for env_file in unit.values.get("EnvironmentFile", []):
            optional = env_file.startswith("-")
            path = Path(self.rewrite(env_file.lstrip("-")))
            if path.exists():
                env.update(read_env_file(path))
            elif not optional:
                raise ScratchError(f"{name}: EnvironmentFile {env_file} does not exist")
        cwd = Path(self.rewrite(unit.get("WorkingDirectory") or "/"))
        pid = self._spawn(name, argv, cwd, env)
        # Type=notify (gunicorn): systemd waits for READY=1, sent once it listens. Here every unit that
        # listens (--bind, --port) is waited for, so that a test's next request finds it up.
        ports = [int(argv[i + 1].rsplit(":", 1)[-1]) for i, a in enumerate(argv[:-1]) if a in ("--bind", "--port")]
        if ports:
            self._wait_ready(name, pid, ports)

    def stop(self, name: str, timeout: float = 30) -> None:
        name = self.unit_name(name)
        if name == "postgresql.service":
            self._pg_ctl("stop", "-m", "fast")
            return
        pid = self.pid(name)
        if not pid:
            return
        sig = signal.SIGTERM
        if name.startswith("xenpanel"):
            unit = self.load_unit(name)
            sig = getattr(signal, unit.get("KillSignal") or "SIGTERM")
            timeout = min(timeout, float((unit.get("TimeoutStopSec") or "90").rstrip("s")))
        self._terminate(pid, sig, timeout)

    def start(self, name: str) -> None:
        name = self.unit_name(name)
        if name == "nginx.service":
            self.start_nginx()
        elif name == "redis-server.service":
            self.start_redis()
        elif name == "postgresql.service":
            self.start_postgresql()
        else:
            self.start_unit(name)

    def systemctl(self, *args: str) -> None:
        """The part of systemctl the guide uses: daemon-reload, enable [--now], start, stop, restart, reload."""
        args_list = list(args)
        now = "--now" in args_list
        words = [a for a in args_list if not a.startswith("--")]
        if not words:
            raise ScratchError("systemctl: no command")
        command, names = words[0], [self.unit_name(n) for n in words[1:]]
        if command == "daemon-reload":
            for f in self.path("/etc/systemd/system").glob("*.service"):
                self.load_unit(f.name.replace("@.", "@check."))
            return
        if command in ("restart", "stop", "reload"):
            expanded = []
            for n in names:
                if any(c in n for c in "*?["):
                    # Patterns match loaded units only (here: the running ones).
                    expanded += [u for u in self.running() if fnmatch.fnmatchcase(u, n)]
                else:
                    expanded.append(n)
            names = expanded
        for name in names:
            if command == "enable":
                unit = self.load_unit(name) if name.startswith("xenpanel") else None
                if unit:
                    wants = self.path("/etc/systemd/system/multi-user.target.wants")
                    wants.mkdir(exist_ok=True)
                    link = wants / name
                    if not link.is_symlink():
                        target = (
                            name
                            if self.path(f"/etc/systemd/system/{name}").exists()
                            else re.sub(r"@[^.]*\.", "@.", name)
                        )
                        link.symlink_to(f"../{target}")
                if now:
                    self.start(name)
            elif command == "start":
                self.start(name)
            elif command == "stop":
                self.stop(name)
            elif command == "restart":
                self.stop(name)
                self.start(name)
            elif command == "reload":
                if name == "nginx.service":
                    self.reload_nginx()
                elif not self.pid(name):
                    raise ScratchError(f"{name} is not active, cannot reload.")
                else:
                    os.kill(self.pid(name), signal.SIGHUP)
            elif command == "is-active":
                if not (self.pid(name) or (name == "postgresql.service" and self._pg_pid())):
                    raise ScratchError("inactive")
            else:
                raise ScratchError(f"systemctl {command}: not something the guide does")

    # ------------------------------------------------------------------ packages
    def install_packages(self, *packages: str) -> None:
        for package in packages:
            if package not in PACKAGES:
                raise ScratchError(f"scratch-install: {package} is not one of {PACKAGES}")
            getattr(self, "install_" + package.replace("-", "_"))()

    def install_nginx(self) -> None:
        """Debian's /etc/nginx, and nginx started as on install (Debian's default site included)."""
        dest = self.path("/etc/nginx")
        for src in sorted(Path("/etc/nginx").rglob("*")):
            target = dest / src.relative_to("/etc/nginx")
            if src.is_symlink():
                link = os.readlink(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(self.rewrite(link) if link.startswith("/") else link)
            elif src.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
        for d in ("/var/log/nginx", "/var/lib/nginx", "/var/www/html", "/usr/share/nginx"):
            self.path(d).mkdir(parents=True, exist_ok=True)
        self.start_nginx()

    def install_redis_server(self) -> None:
        conf = self.rewrite(Path("/etc/redis/redis.conf").read_text())
        conf = re.sub(r"^port 6379$", f"port {self.ports['redis']}", conf, flags=re.M)
        path = self.path("/etc/redis/redis.conf")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(conf)
        for d in ("/var/lib/redis", "/var/log/redis", "/run/redis"):
            self.path(d).mkdir(parents=True, exist_ok=True)
        self.start_redis()

    def _as_postgres(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def _pg(self) -> tuple[Path, str, Path, Path]:
        bindir = postgres_bindir()
        if bindir is None:
            raise ScratchError("PostgreSQL's server programs are not installed (apt-get install postgresql)")
        version = bindir.parts[-2]
        return (
            bindir,
            version,
            self.path(f"/var/lib/postgresql/{version}/main"),
            self.path(f"/etc/postgresql/{version}/main"),
        )

    def install_postgresql(self) -> None:
        """A cluster laid out as Debian's pg_createcluster makes it: data in /var/lib, configuration in /etc."""
        bindir, version, data, conf = self._pg()
        for d in ("/var/lib/postgresql", "/etc/postgresql", "/run/postgresql", "/var/log/postgresql"):
            self.path(d).mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.path(d), "postgres", "postgres")
        r = subprocess.run(
            self._as_postgres(
                [str(bindir / "initdb"), "-D", str(data), "--no-sync", "-U", "postgres", "-E", "UTF8",
                 "--locale=C.UTF-8", "--auth-local=peer", "--auth-host=scram-sha-256"]
            ),
            cwd="/", capture_output=True, text=True,
        )  # fmt: skip
        if r.returncode != 0:
            raise ScratchError(f"initdb: {r.stdout}{r.stderr}")
        subprocess.run(self._as_postgres(["mkdir", "-p", str(conf / "conf.d")]), check=True)
        for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            subprocess.run(self._as_postgres(["mv", str(data / name), str(conf / name)]), check=True)
        settings = (
            f"\n# as pg_createcluster writes them\ndata_directory = '{data}'\nhba_file = '{conf}/pg_hba.conf'\n"
            f"ident_file = '{conf}/pg_ident.conf'\nport = {self.ports['postgresql']}\n"
            f"unix_socket_directories = '{self.path('/run/postgresql')}'\ninclude_dir = 'conf.d'\n"
        )
        with (conf / "postgresql.conf").open("a") as f:
            f.write(settings)
        self.start_postgresql()

    def _pg_ctl(self, *args: str) -> None:
        bindir, version, data, conf = self._pg()
        log = self.path(f"/var/log/postgresql/postgresql-{version}-main.log")
        with (self.path("/var/log/units") / "postgresql.service.log").open("ab") as out:
            r = subprocess.run(
                self._as_postgres(
                    [str(bindir / "pg_ctl"), "-D", str(data), "-o", f"-c config_file={conf}/postgresql.conf",
                     "-l", str(log), "-w", "-t", "30", *args]
                ),
                cwd="/", stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        if r.returncode != 0:
            raise ScratchError(f"pg_ctl {args[0]} failed:\n{tail(log)}")

    def _pg_pid(self) -> int | None:
        try:
            _, _, data, _ = self._pg()
            pid = int((data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError, ScratchError):
            return None
        return pid if alive(pid) else None

    def start_postgresql(self) -> None:
        if not self._pg_pid():
            self._pg_ctl("start")

    def psql(self, sql: str, *args: str) -> str:
        """psql as the postgres superuser over the cluster's socket."""
        bindir, *_ = self._pg()
        psql = shutil.which("psql") or str(bindir / "psql")
        r = subprocess.run(
            self._as_postgres([psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", *args, "-c", sql]),
            cwd="/", env=self.block_env(), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if r.returncode != 0:
            raise ScratchError(f"psql: {r.stderr}")
        return r.stdout

    def start_redis(self) -> None:
        name = "redis-server.service"
        if self.pid(name):
            return
        conf = self.path("/etc/redis/redis.conf")
        # Debian's unit: redis-server /etc/redis/redis.conf --supervised systemd --daemonize no
        argv = ["redis-server", str(conf), "--supervised", "no", "--daemonize", "no"]
        pid = self._spawn(name, argv, self.root, {"PATH": UNIT_PATH})
        self._wait_ready(name, pid, [self.ports["redis"]])

    # ------------------------------------------------------------------ nginx
    def render_nginx(self) -> tuple[Path, list[int]]:
        """<root>/etc/nginx rendered to <root>/run/nginx: paths into the root, listen on 127.0.0.1 and our ports.

        Returns nginx.conf's path there and the ports it listens on.
        """
        src, out = self.path("/etc/nginx"), self.path("/run/nginx")
        shutil.rmtree(out, ignore_errors=True)
        ports: set[int] = set()

        def listen(m: re.Match) -> str:
            indent, address, rest = m.group(1), m.group(2), m.group(3) or ""
            if address.startswith("["):
                return f"{indent}# (IPv6 left out in the test) listen {address}{rest};"
            port = int(address.rsplit(":", 1)[-1])
            mapped = {80: self.ports["http"], 443: self.ports["https"]}.get(port)
            if mapped is None:
                raise ScratchError(f"nginx: the test has no port for `listen {address}`")
            ports.add(mapped)
            return f"{indent}listen 127.0.0.1:{mapped}{rest};"

        def render(text: str) -> str:
            text = re.sub(r"^(\s*)listen\s+(\S+?)(\s[^;]*)?;", listen, text, flags=re.M)
            text = re.sub(r"(?<![\w.~/$-])/etc/nginx(?=/|;|\s)", str(out), text)
            text = re.sub(r"\bload_module\s+modules/", "load_module /usr/share/nginx/modules/", text)
            return self.rewrite(text)

        for path in sorted(src.rglob("*")):
            target = out / path.relative_to(src)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() and not path.exists():
                target.symlink_to(os.readlink(path))  # nginx fails on it as it would on the server
                continue
            target.write_text(render(path.read_text(errors="surrogateescape")), errors="surrogateescape")
        conf = out / "nginx.conf"
        temp = "".join(
            f"\n    {kind}_temp_path {self.path('/var/lib/nginx/' + d)};"
            for kind, d in (("client_body", "body"), ("proxy", "proxy"), ("fastcgi", "fastcgi"),
                            ("uwsgi", "uwsgi"), ("scgi", "scgi"))
        )  # fmt: skip
        # Debian's build puts these under /var/lib/nginx; here they are paths like the others.
        text, n = re.subn(r"^http\s*\{", lambda m: "http {" + temp, conf.read_text(), count=1, flags=re.M)
        if n != 1:
            raise ScratchError("nginx.conf has no http block")
        conf.write_text(text)
        return conf, sorted(ports)

    def nginx_argv(self, conf: Path) -> list[str]:
        return [NGINX, "-p", str(self.path("/usr/share/nginx")) + "/", "-e",
                str(self.path("/var/log/nginx/error.log")), "-c", str(conf)]  # fmt: skip

    def nginx(self, *args: str) -> subprocess.CompletedProcess:
        conf, _ = self.render_nginx()
        return subprocess.run([*self.nginx_argv(conf), *args], capture_output=True, text=True, timeout=60)

    def start_nginx(self) -> None:
        name = "nginx.service"
        if self.pid(name):
            return
        conf, ports = self.render_nginx()
        check = subprocess.run([*self.nginx_argv(conf), "-t", "-q"], capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            raise ScratchError(f"nginx -t:\n{check.stderr}")
        argv = [*self.nginx_argv(conf), "-g", "daemon off; master_process on;"]
        pid = self._spawn(name, argv, self.root, {"PATH": UNIT_PATH})
        self._wait_ready(name, pid, ports)

    def reload_nginx(self) -> None:
        """Debian's ExecReload (nginx -s reload): the configuration is checked first, then the master re-reads it."""
        pid = self.pid("nginx.service")
        if not pid:
            raise ScratchError("nginx.service is not active, cannot reload.")
        conf, ports = self.render_nginx()
        check = subprocess.run([*self.nginx_argv(conf), "-t", "-q"], capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            raise ScratchError(f"nginx -s reload:\n{check.stderr}")
        old_workers = children(pid)
        os.kill(pid, signal.SIGHUP)
        # The master starts workers on the new configuration, then tells the old ones to finish: until they
        # have, an old worker may still answer a new connection.
        deadline = time.monotonic() + 30
        while any(alive(w) for w in old_workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._wait_ready("nginx.service", pid, ports)


# ---------------------------------------------------------------------- a browser's part of HTTPS


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class Browser:
    """A browser's HTTP/1.1 to https://<name>/ (SNI, the test's CA, cookies), connecting to 127.0.0.1:<port>.

    The loopback port stands in for the well-known one: Host and Origin name no port, as a browser's do for 443.
    """

    def __init__(self, name: str, port: int, cafile: Path | None, scheme: str = "https") -> None:
        self.name, self.port, self.scheme = name, port, scheme
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []
        self.context = ssl.create_default_context(cafile=str(cafile)) if cafile else None

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.name}"

    def connection(self) -> http.client.HTTPConnection:
        if self.scheme == "http":
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        name, context = self.name, self.context

        class Loopback(http.client.HTTPSConnection):
            def connect(self) -> None:  # never a name lookup: 127.0.0.1, with the panel's name for SNI
                sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
                self.sock = context.wrap_socket(sock, server_hostname=name)

        return Loopback(name, self.port, timeout=30, context=context)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, origin: bool = True
    ) -> Response:
        """One request on a new connection; a POST says where it comes from (Origin, Referer) unless told not to."""
        h = {"Host": self.name, "User-Agent": "xenpanel-deploy-test"}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if method == "POST" and origin:
            h.update(Origin=self.origin, Referer=self.origin + path)
        h.update(headers or {})
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        for raw in r.headers.get_all("Set-Cookie") or []:
            self.set_cookies.append(raw)
            for name, morsel in SimpleCookie(raw).items():
                self.cookies[name] = morsel.value
        return Response(r.status, r.headers, data)

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post_form(self, path: str, fields: dict[str, str], page: Response | None = None) -> Response:
        """POST a form with the CSRF token of `page` (or of a GET of `path` first), as a browser submits it."""
        page = page or self.get(path)
        body = urlencode({"csrfmiddlewaretoken": csrf_token(page.text), **fields}).encode()
        return self.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})

    def login(self, username: str, password: str) -> Response:
        return self.post_form("/login/", {"username": username, "password": password})


def csrf_token(html: str) -> str:
    m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    if not m:
        raise ScratchError("no CSRF token in the page")
    return m.group(1)


def multipart(fields: dict[str, str], file_field: str, filename: str, size: int) -> tuple[bytes, str]:
    """A multipart/form-data body of exactly `size` bytes: the fields, then a CSV file padded to fit."""
    boundary = "xenpanel-deploy-test-boundary"
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    foot = f"\r\n--{boundary}--\r\n".encode()
    room = size - len(head) - len(foot)
    line = b"username,first_name,last_name,email\n"
    content = (line * (room // len(line) + 1))[:room]
    body = head + content + foot
    assert len(body) == size
    return body, f"multipart/form-data; boundary={boundary}"


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for `name` (the test's CA is the certificate itself)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


# ---------------------------------------------------------------------- the stand-in programs


def main(argv: list[str]) -> int:
    root, command, *args = argv
    scratch = Scratch.load(Path(root))
    try:
        if command == "systemctl":
            scratch.systemctl(*args)
        elif command == "scratch-install":
            scratch.install_packages(*args)
        elif command == "nginx":
            r = scratch.nginx(*args)
            sys.stdout.write(r.stdout)
            sys.stderr.write(r.stderr)
            return r.returncode
        else:
            raise ScratchError(f"unknown stand-in {command}")
    except ScratchError as e:
        print(f"{command}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
