#!/usr/bin/env python3
"""Benchmark: the browser console's keystroke round trip and its opening, on loopback.

    .venv/bin/python bench/console.py                  # scratch SQLite database, Redis database 14 (flushed)
    .venv/bin/python bench/console.py --redis-db 3     # another Redis database (it is flushed)
    .venv/bin/python bench/console.py --duration 20    # a shorter 100-console phase

What runs, all on 127.0.0.1: uvicorn serving xenpanel.asgi (the ASGI
process, one process as deployed), gunicorn for the ticket POSTs, and two
console agents. The "echo" host's agent (this file, `--agent`: the real
`labs.jobs.console.Agent`, with the console program swapped) opens, for each
guest, the echo program of the console tests (tests/dom0/fake_console.py:
raw mode, every byte echoed) in a pty where `xl console` would run; the
"sim" host's agent is `manage.py console_agent` on the simulated dom0 with
the demo's step delay (XENPANEL_SIM_DELAY=0.5). The clients are websocket
clients in this process, with real sessions and tickets, sending what
xterm.js sends.

Figures (goals in brackets):

0. Baseline, in the same run: the same echo program driven directly
   through a pty from this process (write a byte, wait for it to come back).
1. One console: a keystroke's round trip, browser socket → ASGI → Redis →
   agent → pty → echo → back, one key every 25 ms [p95 <= 20 ms and
   <= baseline p95 + 15 ms].
2. 100 consoles open at once, each typing 5 keys a second for --duration
   (60 s) [p95 <= 50 ms; 0 lost or reordered bytes; the agent and the
   ASGI process together under half a core, from /proc CPU times].
3. Opening a console on the simulated dom0, from the click (the ticket
   POST) to the first byte on the socket, each on a guest of its own so
   every open starts a session [p95 <= 300 ms].

Prints the figures last, with the load average; exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
ECHO = ROOT / "tests" / "dom0" / "fake_console.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 50) * 1000:.1f} / p95 {pct(values, 95) * 1000:.1f} / p99 {pct(values, 99) * 1000:.1f} ms"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """The CPU time of a process's children (the echo programs), summed from /proc."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def redis_cpu() -> float:
    """redis-server's CPU seconds so far (INFO cpu; shared with whoever else uses that server)."""
    import django_rq

    info = django_rq.get_connection("default").info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# ------------------------------------------------------------ the echo host's agent (a child process)


def agent_main(host_name: str, echo_dir: str) -> None:
    """`--agent`: labs.jobs.console.Agent for the host, with the echo program where `xl console` would be."""
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    from labs.dom0 import names
    from labs.dom0.pty import PtyProcess
    from labs.jobs.console import Agent
    from labs.models import Host

    host = Host.objects.get(name=host_name)

    def spawn(domain: str) -> PtyProcess:
        return PtyProcess([sys.executable, str(ECHO), names.domain_name(domain), echo_dir])

    async def main() -> None:
        agent = Agent(host, spawn=spawn)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop.set)
        await agent.run()

    try:  # as labs.jobs.console.run_agent does
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


def profiled_uvicorn(out: str, port: int) -> None:
    """`--profiled-uvicorn`: uvicorn as the bench runs it, under cProfile; SIGUSR1 writes the profile."""
    import cProfile

    import uvicorn

    profile = cProfile.Profile()

    def dump(*_args: object) -> None:
        profile.disable()
        profile.dump_stats(out)

    signal.signal(signal.SIGUSR1, dump)
    sys.path.insert(0, str(ROOT))
    profile.enable()
    uvicorn.run("xenpanel.asgi:application", host="127.0.0.1", port=port, lifespan="off", access_log=False)


# ------------------------------------------------------------ set-up


def setup_env(args, scratch: Path) -> dict[str, str]:
    from urllib.parse import urlsplit, urlunsplit

    base = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    redis_url = urlunsplit((base.scheme, base.netloc, f"/{args.redis_db}", "", ""))
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite:///{scratch / 'console.sqlite3'}",
        REDIS_URL=redis_url,
        SECRET_KEY="bench-only",
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1",
        XENPANEL_DOM0="simulated",
        XENPANEL_SIM_DIR=str(scratch / "sim"),
        XENPANEL_SIM_DELAY="0",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="xenpanel.settings",
    )
    os.environ.update(env)
    return env


def seed(n_echo: int, n_sim: int) -> dict:
    """Students with a guest on each host, their sessions, and the guests' domains on the simulated dom0s."""
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    import django_rq
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.middleware.csrf import _get_new_csrf_string

    from labs.dom0.base import DomainSpec, GuestFiles
    from labs.jobs.connect import connect_host
    from labs.models import Guest, Host, IpPool, Lab, LabTemplate

    call_command("migrate", verbosity=0)
    django_rq.get_connection("default").flushdb()
    ivy = User.objects.create_user("ivy", "ivy@example.edu", "x")
    template = LabTemplate.objects.create(name="debian-12", kernel="/boot/vmlinuz", root_size_mb=64, swap_size_mb=0)
    pool = IpPool.objects.create(
        name="bench", network="10.30.0.0/22", gateway="10.30.0.1", first_ip="10.30.0.2", last_ip="10.30.3.254"
    )
    lab = Lab.objects.create(name="Console bench", slug="cb", template=template, pool=pool, memory_mb=32)
    lab.instructors.add(ivy)
    hosts = {
        "echo": Host.objects.create(name="bench-echo", queue_name="bench-echo", volume_group="vg0"),
        "sim": Host.objects.create(name="bench-sim", queue_name="bench-sim", volume_group="vg0"),
    }
    users, n = {}, 0
    out: dict = {"echo": [], "sim": []}
    for kind, count in (("echo", n_echo), ("sim", n_sim)):
        sim = connect_host(hosts[kind])
        for i in range(count):
            name = f"s{i:03d}"
            user = users.get(name) or User.objects.create_user(name, f"{name}@example.edu", "x")
            users[name] = user
            domain = f"cb-{kind}-{name}"
            n += 1
            ip = f"10.30.{n // 250}.{n % 250 + 2}"
            guest = Guest.objects.create(
                lab=lab,
                student=user,
                host=hosts[kind],
                pool=pool,
                domain_name=domain,
                hostname=domain,
                ip=ip,
                mac=f"00:16:3e:01:{n // 256:02x}:{n % 256:02x}",
                root_lv=f"vm-{domain}.raiz",
                memory_mb=32,
                status=Guest.Status.READY,
                observed_state="b",
            )
            root = sim.create_volume(guest.root_lv, 64)
            sim.clone_template("/modelo", root.path, "ext4", "mkfs")
            if kind == "sim":
                files = GuestFiles(domain, f"{domain}.lab", ip, "255.255.252.0", "10.30.0.1", "10.30.3.255")
                sim.customize_rootfs(root.path, files)
            sim.write_config(DomainSpec(name=domain, kernel="/boot/vmlinuz", memory_mb=32, root_target=root.path))
            sim.create(domain)
            out[kind].append(guest.pk)
    sessions = {}
    for user in users.values():
        s = SessionStore()
        s[SESSION_KEY] = str(user.pk)
        s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        s[HASH_SESSION_KEY] = user.get_session_auth_hash()
        s.create()
        sessions[user.pk] = s.session_key
    out["sessions"] = {pk: sessions[Guest.objects.get(pk=pk).student_id] for pk in out["echo"] + out["sim"]}
    out["csrf"] = _get_new_csrf_string()
    return out


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_up(asgi_port: int, web_port: int, queues: list[str], procs: list[subprocess.Popen]) -> None:
    import django_rq

    from labs.services import console

    conn = django_rq.get_connection("default")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a server or agent exited during start-up; see the logs in the scratch directory")
        try:
            for port, path in ((asgi_port, "/ws/healthz"), (web_port, "/healthz/")):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", path)
                assert c.getresponse().status == 200
                c.close()
            if all(conn.exists(console.agent_key(q)) for q in queues):
                return
        except (OSError, AssertionError):
            pass
        time.sleep(0.2)
    raise SystemExit("uvicorn, gunicorn or an agent did not come up in 60 s")


# ------------------------------------------------------------ clients


def ticket_by_post(web_port: int, guest_pk: int, session: str, csrf: str) -> str:
    """The page's ticket POST, as console.js sends it (session and CSRF cookies, the token in the header)."""
    c = http.client.HTTPConnection("127.0.0.1", web_port, timeout=30)
    try:
        c.request(
            "POST",
            f"/vms/{guest_pk}/console/ticket/",
            headers={"Cookie": f"sessionid={session}; csrftoken={csrf}", "X-CSRFToken": csrf},
        )
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"ticket: HTTP {r.status} {body[:200]!r}")
        return json.loads(body)["ticket"]
    finally:
        c.close()


async def connect(asgi_port: int, guest_pk: int, session: str, ticket: str):
    import websockets

    return await websockets.connect(
        f"ws://127.0.0.1:{asgi_port}/ws/console/{guest_pk}/?ticket={ticket}",
        additional_headers={"Cookie": f"sessionid={session}", "Origin": "http://127.0.0.1"},
        max_size=None,
    )


class Typist:
    """One browser tab typing into one console: each key's send time, and each echoed byte's arrival."""

    def __init__(self, ws, marker: bytes) -> None:
        self.ws = ws
        self.marker = marker  # the end of the console's banner: what follows is echo
        self.sent: list[tuple[int, float]] = []
        self.got = bytearray()
        self.got_at: list[float] = []
        self.ready = asyncio.Event()
        self.reader = asyncio.create_task(self._read())
        self._banner = bytearray()

    async def _read(self) -> None:
        # The scrollback comes first, then "hello"; a new session's banner may come after it. Echo is
        # whatever follows both the hello and the banner's last line.
        hello = False
        async for message in self.ws:
            now = time.perf_counter()
            if isinstance(message, str):
                hello = hello or json.loads(message).get("t") == "hello"
                message = b""
            if not self.ready.is_set():
                if not hello:  # the scrollback: an earlier session's banner and echoes, none of it ours
                    self._banner += message
                    continue
                self._banner += message
                if self.marker in self._banner:
                    rest = b"" if not message else self._banner.rsplit(self.marker, 1)[1]
                    self.got += rest
                    self.got_at += [now] * len(rest)
                    self.ready.set()
                continue
            self.got += message
            self.got_at += [now] * len(message)

    async def key(self, k: int) -> None:
        byte = 33 + k % 94  # printable, so nothing in the path treats it as a control key
        self.sent.append((byte, time.perf_counter()))
        await self.ws.send(bytes([byte]))

    def round_trips(self) -> tuple[list[float], int, int]:
        """(round trip per key, keys lost, keys out of order) from what was sent and what came back."""
        expected = bytes(b for b, _t in self.sent)
        got = bytes(self.got)
        lost = max(len(expected) - len(got), 0)
        wrong = sum(1 for a, b in zip(expected, got, strict=False) if a != b)
        trips = [self.got_at[i] - t for i, (_b, t) in enumerate(self.sent) if i < len(got) and got[i] == expected[i]]
        return trips, lost, wrong

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


async def open_typist(asgi_port: int, pk: int, session: str, ticket: str, domain: str) -> Typist:
    ws = await connect(asgi_port, pk, session, ticket)
    typist = Typist(ws, f"fake console of {domain}\r\n".encode())
    await asyncio.wait_for(typist.ready.wait(), 30)
    return typist


async def wait_echo(typist: Typist, count: int, timeout: float = 5.0) -> None:
    deadline = time.perf_counter() + timeout
    while len(typist.got) < count and time.perf_counter() < deadline:
        await asyncio.sleep(0.0005)


async def baseline(keys: int, gap: float, scratch: Path) -> list[float]:
    """The echo program straight through a pty from here: no websocket, no Redis, no agent."""
    from labs.dom0.pty import PtyProcess

    proc = PtyProcess([sys.executable, str(ECHO), "baseline", str(scratch)])
    loop = asyncio.get_running_loop()
    got = bytearray()
    arrived = asyncio.Event()

    def readable() -> None:
        data = proc.read()
        if data:
            got.extend(data)
            arrived.set()

    loop.add_reader(proc.fileno(), readable)
    while b"fake console of baseline\r\n" not in got:
        arrived.clear()
        await asyncio.wait_for(arrived.wait(), 10)
    start = len(got)
    trips = []
    for k in range(keys):
        arrived.clear()
        t = time.perf_counter()
        proc.write(bytes([33 + k % 94]))
        while len(got) < start + k + 1:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 5)
        trips.append(time.perf_counter() - t)
        await asyncio.sleep(gap)
    loop.remove_reader(proc.fileno())
    proc.close()
    proc.reap(force=True)
    return trips


async def one_console(asgi_port: int, pk: int, session: str, ticket: str, domain: str, keys: int, gap: float):
    typist = await open_typist(asgi_port, pk, session, ticket, domain)
    for k in range(keys):
        await typist.key(k)
        await wait_echo(typist, k + 1)
        await asyncio.sleep(gap)
    trips, lost, wrong = typist.round_trips()
    await typist.close()
    return trips, lost, wrong


async def many_consoles(asgi_port: int, clients: list[tuple[int, str, str, str]], rate: float, duration: float, pids):
    """Every console types `rate` keys a second for `duration` seconds, each on its own random phase."""
    import random

    typists = await asyncio.gather(*(open_typist(asgi_port, *c) for c in clients))
    await asyncio.sleep(1.0)
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    echo0 = tree_cpu_seconds(pids["agent"])
    me0, redis0 = cpu_seconds(os.getpid()), redis_cpu()
    t0 = time.perf_counter()

    async def type_keys(typist: Typist) -> None:
        start = t0 + random.uniform(0, 1 / rate)
        k = 0
        while (at := start + k / rate) < t0 + duration:
            await asyncio.sleep(max(at - time.perf_counter(), 0))
            await typist.key(k)
            k += 1

    await asyncio.gather(*(type_keys(t) for t in typists))
    wall = time.perf_counter() - t0
    cpu = {name: (cpu_seconds(pid) - cpu0[name]) / wall for name, pid in pids.items()}
    cpu["echo programs"] = (tree_cpu_seconds(pids["agent"]) - echo0) / wall
    cpu["clients (this process)"] = (cpu_seconds(os.getpid()) - me0) / wall
    cpu["redis-server (all its users)"] = (redis_cpu() - redis0) / wall
    await asyncio.sleep(2.0)  # the last keys' echoes
    trips, lost, wrong, keys = [], 0, 0, 0
    for typist in typists:
        t, lo, wr = typist.round_trips()
        trips += t
        lost += lo
        wrong += wr
        keys += len(typist.sent)
    await asyncio.gather(*(t.close() for t in typists))
    return trips, lost, wrong, keys, cpu


async def opens(asgi_port: int, web_port: int, guests: list[tuple[int, str]], csrf: str) -> list[float]:
    """From the click (the ticket POST) to the first byte of the console on the socket."""
    times = []
    for pk, session in guests:
        t = time.perf_counter()
        ticket = await asyncio.to_thread(ticket_by_post, web_port, pk, session, csrf)
        ws = await connect(asgi_port, pk, session, ticket)
        async for message in ws:
            if isinstance(message, bytes) and message:
                break
        times.append(time.perf_counter() - t)
        await ws.close()
        await asyncio.sleep(0.2)
    return times


# ------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-db", type=int, default=14, help="Redis database to use (flushed); default 14")
    parser.add_argument("--consoles", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="keys per second per console")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the many-console phase")
    parser.add_argument("--keys", type=int, default=400, help="keystrokes for the one-console and baseline phases")
    parser.add_argument("--opens", type=int, default=30, help="console openings on the simulated dom0")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    parser.add_argument("--profile", action="store_true", help="run uvicorn and the echo agent under cProfile")
    parser.add_argument("--agent", nargs=2, metavar=("HOST", "ECHO_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--profiled-uvicorn", nargs=2, metavar=("OUT", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agent:
        agent_main(*args.agent)
        return 0
    if args.profiled_uvicorn:
        profiled_uvicorn(args.profiled_uvicorn[0], int(args.profiled_uvicorn[1]))
        return 0
    if not (1 <= args.consoles <= 300 and 1 <= args.duration <= 600 and 1 <= args.opens <= 100):
        parser.error("at most 300 consoles, 600 s and 100 openings")

    scratch = Path(tempfile.mkdtemp(prefix="xenpanel-bench-console-"))
    env = setup_env(args, scratch)
    procs: list[subprocess.Popen] = []
    load = {"start": os.getloadavg()}
    try:
        t = time.monotonic()
        seeded = seed(args.consoles, args.opens)
        print(f"setup: {args.consoles} + {args.opens} guests and their domains in {time.monotonic() - t:.1f} s")
        asgi_port, web_port = free_port(), free_port()
        echo_dir = scratch / "echo"
        echo_dir.mkdir()
        prof = (lambda name: [PY, "-m", "cProfile", "-o", str(scratch / f"{name}.prof")]) if args.profile else None
        uvicorn = [str(ROOT / ".venv" / "bin" / "uvicorn"), "xenpanel.asgi:application", "--host", "127.0.0.1"]
        uvicorn += ["--port", str(asgi_port), "--lifespan", "off", "--no-access-log", "--log-level", "warning"]
        if args.profile:  # uvicorn re-raises SIGTERM, so cProfile would never write: SIGUSR1 makes it
            uvicorn = [PY, __file__, "--profiled-uvicorn", str(scratch / "uvicorn.prof"), str(asgi_port)]
        asgi = start(uvicorn, env, scratch / "uvicorn.log")
        web = start(
            [str(ROOT / ".venv" / "bin" / "gunicorn"), "xenpanel.wsgi", "--bind", f"127.0.0.1:{web_port}"]
            + ["--workers", "2", "--no-control-socket"],
            env,
            scratch / "gunicorn.log",
        )
        agent = start(
            (prof("agent") if prof else [PY]) + [__file__, "--agent", "bench-echo", str(echo_dir)],
            env,
            scratch / "agent-echo.log",
        )
        sim_agent = start(
            [PY, str(ROOT / "manage.py"), "console_agent", "--host", "bench-sim"],
            dict(env, XENPANEL_SIM_DELAY="0.5"),
            scratch / "agent-sim.log",
        )
        procs += [asgi, web, agent, sim_agent]
        wait_up(asgi_port, web_port, ["bench-echo", "bench-sim"], procs)

        from labs.models import Guest
        from labs.services import console

        echo_guests = list(Guest.objects.filter(pk__in=seeded["echo"]).order_by("pk"))
        sessions = seeded["sessions"]

        def client(g: Guest) -> tuple[int, str, str, str]:
            student = g.student
            return g.pk, sessions[g.pk], console.issue_ticket(student, g, sessions[g.pk]), g.domain_name

        load["baseline"] = os.getloadavg()
        base = asyncio.run(baseline(args.keys, 0.025, echo_dir))
        load["one"] = os.getloadavg()
        one, one_lost, one_wrong = asyncio.run(one_console(asgi_port, *client(echo_guests[0]), args.keys, 0.025))
        # The first console is closed now; its session lingers and is reused in the next phase.
        load["many before"] = os.getloadavg()
        pids = {"agent": agent.pid, "ASGI (uvicorn)": asgi.pid}
        many, lost, wrong, keys, cpu = asyncio.run(
            many_consoles(asgi_port, [client(g) for g in echo_guests], args.rate, args.duration, pids)
        )
        load["many after"] = os.getloadavg()
        sim_guests = [(pk, sessions[pk]) for pk in seeded["sim"]]
        open_times = asyncio.run(opens(asgi_port, web_port, sim_guests, seeded["csrf"]))
        load["end"] = os.getloadavg()
    finally:
        if args.profile and procs:
            os.kill(procs[0].pid, signal.SIGUSR1)
            time.sleep(2)
        for p in reversed(procs):
            stop(p)
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"scratch directory kept: {scratch}")

    agent_asgi = cpu["agent"] + cpu["ASGI (uvicorn)"]
    goals = {
        "1 console p95 <= 20 ms": pct(one, 95) <= 0.020,
        "1 console p95 <= baseline p95 + 15 ms": pct(one, 95) <= pct(base, 95) + 0.015,
        f"{args.consoles} consoles p95 <= 50 ms": pct(many, 95) <= 0.050,
        "0 lost or reordered bytes": lost == wrong == one_lost == one_wrong == 0,
        "agent + ASGI < half a core": agent_asgi < 0.5,
        "open to first byte p95 <= 300 ms": pct(open_times, 95) <= 0.300,
    }

    def la(key: str) -> str:
        return " ".join(f"{x:.2f}" for x in load[key])

    print(f"\nconsole benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs")
    print(f"load average (1/5/15 min): start {la('start')}; one console {la('one')}; ", end="")
    print(f"{args.consoles} consoles {la('many before')} -> {la('many after')}; end {la('end')}")
    print(f"0. baseline, echo program through a pty, {len(base)} keys: {ms(base)}")
    print(f"1. one console, {len(one)} keys, socket -> ASGI -> Redis -> agent -> pty -> back: {ms(one)}")
    print(f"   over the baseline: p50 +{(pct(one, 50) - pct(base, 50)) * 1000:.1f} ms, ", end="")
    print(f"p95 +{(pct(one, 95) - pct(base, 95)) * 1000:.1f} ms; lost {one_lost}, out of order {one_wrong}")
    print(
        f"2. {args.consoles} consoles x {args.rate:g} keys/s for {args.duration:g} s: {keys} keys, {ms(many)}, "
        f"max {max(many) * 1000:.1f} ms; lost {lost}, out of order {wrong}"
    )
    print(
        "   CPU (cores): "
        + ", ".join(f"{name} {share:.3f}" for name, share in cpu.items())
        + f"; agent + ASGI {agent_asgi:.3f}"
    )
    print(f"3. open to first byte on the simulated dom0, {len(open_times)} new sessions: {ms(open_times)}, ", end="")
    print(f"max {max(open_times) * 1000:.0f} ms, median {median(open_times) * 1000:.0f} ms")
    for goal, met in goals.items():
        print(f"   goal {goal}: {'met' if met else 'MISSED'}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
