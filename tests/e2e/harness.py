"""The whole product on the Xen testbed: a dom0 set up by deploy/dom0-setup.md, its worker, the panel side.

Shared by tests/e2e/test_product_on_xen.py and bench/e2e.py. The dom0 is the
session testbed (tests/testbed/); its worker reaches this machine's Redis and
PostgreSQL through QEMU guestfwd rules to 127.0.0.1 (HOST_FROM_DOM0).
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.e2e.guide import Guide, bash_argv, parse, run_local
from tests.testbed.fixtures import HOST_FROM_DOM0
from tests.testbed.testbed import Testbed
from tests.testbed.timing import Phases, until

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "xp-dom0"  # the testbed dom0's Host name and queue
VG = "vg0"  # made by the testbed's init on its second disk
BRIDGE = "xenbr0"
TEMPLATE_DIR = "/srv/xenpanel/templates/tiny"
RAMDISK = "/boot/initrd-domu.img"
WORKER_PID = "/run/xenpanel-rqworker.pid"
WORKER_LOG = "/var/log/xenpanel-rqworker.log"
# The console agent the guide starts beside the worker (deploy/dom0-setup.md, step 6).
AGENT_PID = "/run/xenpanel-console-agent.pid"
AGENT_LOG = "/var/log/xenpanel-console-agent.log"
# The guide's `pvcreate/vgcreate` run on a loop device of their own, removed afterwards.
GUIDE_VG = "guidevg"
GUIDE_PV_FILE = "/var/tmp/xenpanel-guide-pv.img"
# Where the dom0's environment file from `manage.py dom0_credentials` is copied (the guide's ENV_FILE).
DOM0_ENV_FILE = "/root/xenpanel-dom0.env"
BOOTED = "XENPANEL-BOOTED"
# Small guests: the testbed has about 1.5 GiB for domUs, and the busybox guest needs little.
MEMORY_MB = 128
ROOT_MB, SWAP_MB = 64, 32


# ------------------------------------------------------------------ URLs as dom0 and this machine see them
def database_urls(db: Mapping) -> tuple[str, str]:
    """(URL for processes on this machine, URL for the dom0 worker) of a Django PostgreSQL settings dict."""
    auth = quote(db["USER"] or "postgres") + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    port = int(db.get("PORT") or 5432)
    local = f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{port}/{db['NAME']}"
    return local, f"postgres://{auth}@{HOST_FROM_DOM0}:{port}/{db['NAME']}"


# ------------------------------------------------------------------ the dom0
@dataclass
class Dom0:
    """The testbed dom0 after the guide: xenpanel installed, its worker running on QUEUE."""

    testbed: Testbed
    guide: Guide
    values: dict[str, str]
    kernel: str
    reserve_mb: int
    env: dict[str, str]  # the panel side's environment (this machine's view of the database and Redis)
    timings: dict[str, float] = field(default_factory=dict)
    credentials: Any = None  # labs.services.credentials.Dom0Credentials: the dom0's own

    def sh(self, command, check: bool = True, timeout: float = 300) -> str:
        return self.testbed.ssh(command, check=check, timeout=timeout).stdout

    def worker_log(self, lines: int = 60) -> str:
        return self.sh(["tail", "-n", str(lines), WORKER_LOG], check=False)

    def agent_log(self, lines: int = 60) -> str:
        return self.sh(["tail", "-n", str(lines), AGENT_LOG], check=False)

    def worker_pid(self) -> int | None:
        out = self.sh(["cat", WORKER_PID], check=False).strip()
        return int(out) if out.isdigit() else None

    def worker_alive(self) -> bool:
        pid = self.worker_pid()
        return pid is not None and self.testbed.ssh(["/bin/kill", "-0", str(pid)], check=False).returncode == 0

    def stop_worker(self, timeout: float = 120) -> None:
        stop_worker(self.testbed, timeout)

    # --- what is on the dom0 -----------------------------------------------------------
    def domains(self) -> dict[str, str]:
        """name -> state column of `xl list`, without Domain-0."""
        rows = self.sh(["xl", "list"]).splitlines()[1:]
        return {r.split()[0]: r.split()[4] for r in rows if r.split() and r.split()[0] != "Domain-0"}

    def volumes(self, vg: str = VG) -> dict[str, int]:
        """LV name -> size in MiB."""
        out = self.sh(["lvs", "--noheadings", "--units", "m", "--nosuffix", "-o", "lv_name,lv_size", vg])
        return {name: round(float(size)) for name, size in (line.split() for line in out.splitlines() if line.strip())}

    def configs(self) -> list[str]:
        """Domain configs and autostart links, relative to /etc/xen ("web1.cfg", "auto/web1.cfg")."""
        out = self.sh(["find", "/etc/xen", "/etc/xen/auto", "-maxdepth", "1", "-name", "*.cfg"], check=False)
        return sorted({line.removeprefix("/etc/xen/") for line in out.splitlines() if line})

    def guest_file(self, device: str, path: str) -> str:
        """A file inside a guest's root filesystem, read with debugfs (read-only, works while it runs)."""
        return self.sh(["debugfs", "-R", f"cat {path}", device])

    def scrub(self, stem: str, env: Mapping[str, str], queue: str) -> None:
        """Remove every guest named `stem*` (domain, config, volumes) and placeholder volume, even after a failure.

        Waits for the worker to finish the job it is running first, so nothing is created behind the scrub.
        """
        code = (
            "import sys; from redis import Redis; from rq import Queue; from rq.registry import StartedJobRegistry\n"
            "r = Redis.from_url(sys.argv[1]); Queue(sys.argv[2], connection=r).empty()\n"
            "print(len(StartedJobRegistry(sys.argv[2], connection=r).get_job_ids()))\n"
        )

        def idle() -> bool:
            out = subprocess.run([sys.executable, "-c", code, env["REDIS_URL"], queue], capture_output=True, text=True)
            return out.stdout.strip() == "0"

        try:
            until(idle, "the dom0 worker to finish its job", 600, interval=3)
        finally:
            self.sh(
                f"for d in $(xl list | awk 'NR > 1 {{print $1}}' | grep '^{stem}'); do xl destroy $d; done; "
                f"rm -f /etc/xen/{stem}*.cfg /etc/xen/auto/{stem}*.cfg; "
                f"for lv in $(lvs --noheadings -o lv_name {VG} | grep -E '^ *(vm-{stem}|xp-placeholder)'); do "
                f"lvremove -q -y {VG}/$lv; done",
                check=False,
            )

    def vg_free_mb(self, vg: str = VG) -> int:
        out = self.sh(["vgs", "--noheadings", "--units", "m", "--nosuffix", "-o", "vg_free", vg])
        return int(float(out.strip()))


def stop_worker(testbed: Testbed, timeout: float = 120) -> None:
    """Stop the worker and the console agent the guide started (if any): SIGTERM to each one's process
    group, SIGKILL if it lingers."""
    for pid_file in (AGENT_PID, WORKER_PID):
        _stop_group(testbed, pid_file, timeout)


def _stop_group(testbed: Testbed, pid_file: str, timeout: float) -> None:
    pid = testbed.ssh(["cat", pid_file], check=False).stdout.strip()
    if not pid.isdigit():
        return
    # setsid made it a process group leader. The agent: signal the whole group, so its `xl console`s go too.
    # The worker pool: SIGTERM to the pool alone, as systemd's KillMode=mixed does; it asks each worker for a
    # warm shutdown (a second signal, sent to the whole group, would make that a cold one).
    target = pid if pid_file == WORKER_PID else f"-{pid}"
    testbed.ssh(["/bin/kill", "-s", "TERM", "--", target], check=False)
    deadline = time.monotonic() + timeout
    while testbed.ssh(["/bin/kill", "-0", pid], check=False).returncode == 0:
        if time.monotonic() > deadline:
            testbed.ssh(["/bin/kill", "-s", "KILL", "--", f"-{pid}"], check=False)
            break
        time.sleep(2)
    testbed.ssh(["rm", "-f", pid_file], check=False)


def set_up_dom0_for_this_panel(testbed: Testbed) -> Dom0:
    """set_up_dom0() with this panel's own credentials for the dom0, as `manage.py dom0_credentials` makes them.

    The dom0 reaches the panel's database and Redis at HOST_FROM_DOM0 with a
    role and a Redis user of its own (its rows, its queue and jobs only) and
    holds no SECRET_KEY. Needs database access (credentials.provision).
    """
    from django.conf import settings
    from django.db import connections
    from rq import Queue

    from labs.models import Host
    from labs.services import credentials, queueing

    local_db, _dom0_db = database_urls(connections["default"].settings_dict)
    env = panel_env(local_db, settings.REDIS_URL, settings.SECRET_KEY)
    # What `manage.py dom0_credentials $HOST --database-host ... --redis-host ...` prints (the guide's step);
    # a dom0 is known by its queue, so the Host rows the tests create later are covered.
    made = credentials.provision(Host(name=QUEUE, queue_name=QUEUE), HOST_FROM_DOM0, HOST_FROM_DOM0)
    testbed.ssh(["sh", "-c", f"umask 077; cat > {DOM0_ENV_FILE} <<'EOF'\n{made.env_file()}EOF"])
    values = {"HOST": QUEUE, "QUEUE": QUEUE, "BRIDGE": BRIDGE, "ENV_FILE": DOM0_ENV_FILE}
    # Jobs an earlier run left on the queue must not reach the new worker.
    Queue(QUEUE, connection=queueing.redis_connection(QUEUE)).empty()
    dom0 = set_up_dom0(testbed, values, env)
    dom0.credentials = made
    return dom0


def revoke_dom0_credentials() -> None:
    from labs.models import Host
    from labs.services import credentials

    credentials.revoke(Host(name=QUEUE, queue_name=QUEUE))


def panel_rows(dom0: Dom0, pool_name: str, network: str):
    """(Host, LabTemplate, IpPool): what an admin enters for the testbed dom0 once the guide is done."""
    from labs.models import Host, IpPool, LabTemplate

    net = ipaddress.ip_network(network)
    host = Host.objects.create(
        name=QUEUE,
        queue_name=QUEUE,
        volume_group=VG,
        bridge=BRIDGE,
        # What `xl info` showed before any guest: dom0's fixed 1024 MiB plus Xen's share.
        dom0_reserve_mb=dom0.reserve_mb,
    )
    template = LabTemplate.objects.create(
        name="tiny (busybox)",
        rootfs_path=TEMPLATE_DIR,
        kernel=dom0.kernel,
        ramdisk=RAMDISK,
        root_size_mb=ROOT_MB,
        swap_size_mb=SWAP_MB,
        default_memory_mb=MEMORY_MB,
        max_memory_mb=256,
    )
    pool = IpPool.objects.create(
        name=pool_name,
        network=str(net),
        gateway=str(net[1]),
        first_ip=str(net[10]),
        last_ip=str(net[250]),
        dns_domain="lab.example.edu",
    )
    return host, template, pool


def set_up_dom0(testbed: Testbed, values: Mapping[str, str], env: Mapping[str, str]) -> Dom0:
    """Install xenpanel in the testbed's dom0 and run the guide's dom0 blocks, which start the worker."""
    phases = Phases()
    stop_worker(testbed)  # one left by an earlier user of this testbed (the bench after the tests)
    guide = parse()
    kernel = testbed.ssh(["sh", "-c", "ls /boot/vmlinux-domu /boot/vmlinuz-domu 2>/dev/null | head -n 1"]).stdout
    info = testbed.ssh(["xl", "info"]).stdout
    total = int(re.search(r"^total_memory\s*:\s*(\d+)", info, re.M).group(1))
    free = int(re.search(r"^free_memory\s*:\s*(\d+)", info, re.M).group(1))
    with phases("install xenpanel (copy + wheels)"):
        install = testbed.install_xenpanel(ROOT)
    with phases("guide: dom0 blocks"):
        loop = testbed.ssh(
            ["sh", "-c", f"truncate -s 64M {GUIDE_PV_FILE} && losetup --find --show {GUIDE_PV_FILE}"]
        ).stdout.strip()
        try:
            guide.run(
                guide.dom0_steps(),
                {**values, "DISK": loop, "VG": GUIDE_VG},
                lambda script: _in_dom0(testbed, script),
            )
        finally:
            testbed.ssh(
                f"vgremove -f {GUIDE_VG} >/dev/null 2>&1; pvremove -f {loop} >/dev/null 2>&1; "
                f"losetup -d {loop}; rm -f {GUIDE_PV_FILE}",
                check=False,
            )
    dom0 = Dom0(testbed, guide, {**values}, kernel.strip(), total - free, dict(env), {**install, **phases.seconds})
    with phases("worker registers in Redis"):
        wait_for_worker(env, values["QUEUE"], dom0)
    dom0.timings.update(phases.seconds)
    return dom0


def _in_dom0(testbed: Testbed, script: str) -> tuple[int, str]:
    p = testbed.ssh(bash_argv(script), check=False, timeout=900)
    return p.returncode, p.stdout + p.stderr


def wait_host_memory(dom0: Dom0, host, timeout: float = 300) -> None:
    """Until the sync loop's first tick on the dom0 worker has reported the host's memory (placement needs it)."""
    from labs.models import Host

    until(
        lambda: Host.objects.filter(pk=host.pk, total_memory_mb__isnull=False).exists(),
        "the dom0 worker to report the host's memory",
        timeout,
        interval=2,
        on_timeout=dom0.worker_log,
    )


def wait_for_worker(env: Mapping[str, str], queue: str, dom0: Dom0, timeout: float = 600) -> None:
    """Until a worker of the pool the guide started (its pid) has registered on `queue` in this machine's Redis."""
    pid = dom0.worker_pid()
    assert pid is not None, f"the guide started no worker ({WORKER_PID} is empty)"
    code = (
        "import sys; from redis import Redis; from rq import Worker\n"
        "ws = Worker.all(connection=Redis.from_url(sys.argv[1]))\n"
        "print(' '.join(str(w.pid) for w in ws if sys.argv[2] in w.queue_names()))\n"
    )

    def registered() -> bool:
        out = subprocess.run(
            [sys.executable, "-c", code, env["REDIS_URL"], queue], capture_output=True, text=True, timeout=60
        ).stdout
        # The pool's workers are its children (labs.jobs.pool); a worker of an earlier run is not.
        parents = [dom0.sh(["sh", "-c", f"cut -d' ' -f4 /proc/{w}/stat 2>/dev/null || true"]) for w in out.split()]
        return str(pid) in (p.strip() for p in parents)

    until(
        registered,
        f"the RQ worker (pid {pid}) on {queue} inside dom0",
        timeout,
        interval=3,
        on_timeout=dom0.worker_log,
    )


# ------------------------------------------------------------------ the panel side
def panel_env(database_url: str, redis_url: str, secret_key: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, SECRET_KEY=secret_key, LOG_LEVEL="WARNING")
    env.pop("XENPANEL_DOM0", None)  # the panel never runs dom0 commands itself
    return env


def run_panel_steps(guide: Guide, values: Mapping[str, str], env: Mapping[str, str]) -> None:
    guide.run(guide.panel_steps(), values, lambda script: run_local(script, ROOT, env))


def start_sync_loop(env: Mapping[str, str], interval: float = 2.0) -> subprocess.Popen:
    """`manage.py sync_loop` as production runs it: it queues sync jobs on the dom0's queue.

    Without its periodic health checks: the scenarios decide when the panel
    learns the host's disk space (the guide's `check_hosts`), e.g. to fill the
    volume group between two checks, behind the panel's back.
    """
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "sync_loop", "--interval", str(interval)],
        cwd=ROOT,
        env={**env, "XENPANEL_HEALTH_INTERVAL": "0"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ------------------------------------------------------------------ a module's tests, again on PostgreSQL
def postgres_answers(url: str) -> bool:
    import socket

    parts = url.split("@", 1)[-1].split("/", 1)[0]
    host, _, port = parts.partition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 5432)), timeout=2):
            return True
    except OSError:
        return False


def start_local_postgres() -> str:
    """Start the machine's PostgreSQL cluster(s) with Debian's tools; returns what was tried."""
    import shutil

    if not shutil.which("pg_lsclusters"):
        return "no pg_lsclusters (postgresql-common) on this machine"
    tried = []
    for line in subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout.splitlines():
        version, cluster, *_ = line.split()
        r = subprocess.run(["pg_ctlcluster", version, cluster, "start"], capture_output=True, text=True)
        tried.append(f"pg_ctlcluster {version} {cluster} start: exit {r.returncode} {r.stderr.strip()}")
    return "; ".join(tried) or "pg_lsclusters lists no cluster"


def run_module_on_postgresql(module: Path, passed: int) -> str:
    """On SQLite, which a worker inside QEMU cannot share: run `module` again in a pytest on PostgreSQL
    (XENPANEL_TEST_POSTGRES_URL, else the machine's cluster); asserts `passed` tests passed, returns its output."""
    import pytest

    url = os.environ.get("XENPANEL_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/xenpanel_e2e")
    if not postgres_answers(url):
        tried = start_local_postgres()
        if not postgres_answers(url):
            pytest.fail(
                f"tests/e2e needs PostgreSQL (the dom0 worker shares the panel's database) and none answers at"
                f" {url.split('@')[-1]} ({tried}). Start it, or set XENPANEL_TEST_POSTGRES_URL or DATABASE_URL.",
                pytrace=False,
            )
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--create-db", str(module)],
        cwd=ROOT,
        env=dict(os.environ, DATABASE_URL=url),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=7000,
    )
    print(r.stdout[-6000:])
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert re.search(rf"\b{passed} passed\b", r.stdout), r.stdout[-2000:]
    return r.stdout
