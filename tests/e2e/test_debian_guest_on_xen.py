"""A real Debian guest on the Xen testbed: the template our builder made, provisioned by the panel, booted by Xen.

The busybox guest of test_product_on_xen.py imitates Debian with its own init
script; this one is Debian. tests/testbed/debian_template.py builds a bookworm
tree on this machine with the template job's own builder (debootstrap,
sysvinit-core, ifupdown, openssh-server, the recipe's touches), caches it by
its inputs and copies it into dom0's template store. Then, through the
panel's services and the dom0's worker (set up by deploy/dom0-setup.md, as in
the product test, whose fixtures this module shares):

1. alice's SSH key is on her account; a one-student batch provisions her guest
   (clone, our hostname, hosts, interfaces, fstab, authorized_keys, root password).
2. Xen boots it with Debian's own init (sysvinit); its console shows a Debian
   login, and root logs in on `xl console` with the guest's password.
3. dom0 ssh's into the guest over the guests' bridge with alice's key, from a
   network namespace plugged into the bridge (dom0 itself keeps no address
   there); another key is refused. Inside: the hostname we wrote, the address
   of our `interfaces` brought up by ifup (ifupdown's state file says so), the
   swap partition of our fstab in /proc/swaps, TMOUT=1200, the `ls` colour alias,
   one getty, on hvc0.
   A wrong line in either file breaks one of these: ifup leaves eth0 down (no
   ssh at all) or the swap stays off.
4. From inside the guest, the panel's Redis and PostgreSQL (where dom0 reaches
   them) and dom0's sshd on the management side cannot be reached, while dom0
   itself reaches all three (#13: the guests' bridge carries no dom0 address).
5. A reset to template: the same checks pass again, the file written before is
   gone and the guest has new ssh host keys.

One guest, one reset: a Debian boot under TCG takes tens of seconds (the
timings are printed with -s and in pytest's summary). Marker `debian_guest`:
`make test ARGS='-m debian_guest'` runs these alone. The same guest on systemd
is `debian_systemd`, run only when asked (`-m debian_systemd`): under TCG its
boot takes minutes.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest

from labs.models import Guest, LabTemplate, Task
from labs.roster import RosterEntry
from labs.services import create_lab_batch
from labs.services.actions import guest_action
from labs.services.ssh_keys import add_key
from tests.e2e import test_product_on_xen as product
from tests.e2e.harness import (
    BRIDGE,
    MEMORY_MB,
    QUEUE,
    Dom0,
    panel_rows,
    run_module_on_postgresql,
    start_sync_loop,
    stop_process,
    wait_host_memory,
)
from tests.testbed import debian_template
from tests.testbed.fixtures import HOST_FROM_DOM0, postgres_port, redis_port, testbed, testbed_timings  # noqa: F401
from tests.testbed.testbed import Testbed
from tests.testbed.timing import Phases, until

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]
# The product test's dom0 (set up by deploy/dom0-setup.md, worker on the dom0's own credentials), per module.
dom0 = product.dom0

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
SLUG = "deb"
NETWORK = "10.79.0"  # the lab's pool, 10.79.0.0/24: gateway .1, guests from .10
PROBE_IP = f"{NETWORK}.5"  # the probe's address on the guests' bridge (outside the pool's range)
NETNS = "xpprobe"
KEY_IN_DOM0 = "/root/xp-alice-key"
ROOT_MB, SWAP_MB = 384, 64
DOM0_SSHD = "10.0.2.15"  # dom0's management address (QEMU's user network)
PROVISION_TIMEOUT = 1500
BOOT_TIMEOUT = 900
INIT_PACKAGE = {"sysvinit": "sysvinit-core", "systemd": "systemd-sysv"}

# Log in as root on `xl console` in a pty, inside dom0 (the password on stdin), and print the session.
XL_CONSOLE_LOGIN = r"""
import os, pty, select, signal, sys, time
name, timeout = sys.argv[1], float(sys.argv[2])
password = sys.stdin.readline().strip()
pid, fd = pty.fork()
if pid == 0:
    os.execvp("xl", ["xl", "console", name])
seen = b""
def until(marker, then, every=10.0):
    global seen
    deadline, sent = time.monotonic() + timeout, 0.0
    while marker not in seen:
        if time.monotonic() > deadline:
            return False
        if time.monotonic() - sent > every:
            os.write(fd, then); sent = time.monotonic()
        if select.select([fd], [], [], 1)[0]:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                return False
    return True
ok = (until(b"login:", b"\r") and until(b"Password:", b"root\r", 30)
      and until(b"# ", password.encode() + b"\r", 30)
      and until(b"XP-1200-12", b"echo XP-$TMOUT-$(cut -d. -f1 /etc/debian_version)\r", 30))
os.write(fd, b"exit\r"); time.sleep(1)
os.kill(pid, signal.SIGKILL)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(0 if ok else 3)
"""

# From inside the guest (or dom0, for the control): can each host:port be opened within a few seconds?
PROBE = (
    'for t in "$@"; do if timeout 8 bash -c "exec 3<>/dev/tcp/${t%:*}/${t##*:}" 2>/dev/null;'
    ' then echo "$t open"; else echo "$t closed"; fi; done'
)


# ------------------------------------------------------------------ fixtures
def debian(testbed: Testbed, testbed_timings, init: str) -> debian_template.Built:  # noqa: F811
    """The template for `init`, built here (or found in the cache) and copied into dom0's template store."""
    built = debian_template.build(init, log=lambda line: None)
    push_s = debian_template.push(testbed, built.tree)
    figures = {"build_s": built.seconds, "push_s": push_s, "size_mb": built.result.size_mb}
    testbed_timings.add(f"debian template ({init})", figures)
    print(f"\ndebian template {init} {built.key}: " + ", ".join(f"{k}={v:.0f}" for k, v in figures.items()))
    return built


@pytest.fixture
def probe(dom0: Dom0):
    """A network namespace in dom0 with a veth on the guests' bridge at PROBE_IP, and alice's private key."""
    dom0.sh(
        f"ip netns add {NETNS} && ip link add xpp0 type veth peer name xpp1 && ip link set xpp0 netns {NETNS}"
        f" && ip link set xpp1 master {BRIDGE} up && ip -n {NETNS} link set lo up"
        f" && ip -n {NETNS} addr add {PROBE_IP}/24 dev xpp0 && ip -n {NETNS} link set xpp0 up"
    )
    yield
    dom0.sh(f"ip link del xpp1; ip netns del {NETNS}; rm -f {KEY_IN_DOM0} {KEY_IN_DOM0}-other", check=False)


def put_key(testbed: Testbed, private: Path, dest: str) -> None:  # noqa: F811
    testbed.ssh(["sh", "-c", f"umask 077; cat > {dest}"], input=private.read_bytes())


def guest_ssh(dom0: Dom0, ip: str, command: str, key: str = KEY_IN_DOM0, check: bool = True):
    """`command` run in the guest by root, over ssh from the probe namespace; the CompletedProcess."""
    argv = ["ip", "netns", "exec", NETNS, "ssh", "-i", key, "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
    argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    return dom0.testbed.ssh([*argv, f"root@{ip}", command], check=check, timeout=120)


def xl_console_login(testbed: Testbed, name: str, password: str, timeout: float = 120) -> str:  # noqa: F811
    p = testbed.ssh(
        ["python3", "-c", XL_CONSOLE_LOGIN, name, str(timeout)],
        input=f"{password}\n".encode(),
        check=False,
        timeout=5 * timeout,
    )
    assert p.returncode == 0, f"no root login on xl console {name}:\n{p.stdout[-3000:]}\n{p.stderr[-1000:]}"
    return p.stdout


def login_prompts(testbed: Testbed, name: str, hostname: str) -> int:  # noqa: F811
    # Counted as wait_console counts: lines that hold the prompt.
    return sum(f"{hostname} login:" in line for line in testbed.console_log(name).splitlines())


def wait_login(testbed: Testbed, guest: Guest, count: int) -> float:  # noqa: F811
    """Seconds until the guest's getty has shown its `count`-th login prompt on the console."""
    t = time.monotonic()
    testbed.wait_console(guest.domain_name, f"{guest.hostname} login:", count=count, timeout=BOOT_TIMEOUT)
    return time.monotonic() - t


def wait_running(dom0: Dom0, what: str) -> Guest:
    def running() -> Guest | None:
        failed = Guest.objects.filter(lab__slug=SLUG, status=Guest.Status.FAILED).first()
        assert failed is None, f"{failed.domain_name} failed: {failed.last_error}\n{dom0.worker_log()}"
        return Guest.objects.filter(lab__slug=SLUG, status=Guest.Status.READY, observed_state__in=("r", "b")).first()

    return until(
        running,
        what,
        PROVISION_TIMEOUT,
        interval=3,
        on_timeout=lambda: f"{product.guests_now()}\n{dom0.worker_log()}",
    )


def check_inside(dom0: Dom0, guest: Guest, init: str) -> dict[str, str]:
    """What the guest says about itself over ssh (alice's key), checked against what the panel wrote."""
    ssh_up = until(
        lambda: guest_ssh(dom0, guest.ip, "true", check=False).returncode == 0,
        f"sshd on {guest.ip} to take alice's key",
        300,
        interval=5,
        on_timeout=lambda: guest_ssh(dom0, guest.ip, "true", check=False).stderr,
    )
    assert ssh_up
    facts = {}
    for key, command in {
        "hostname": "cat /proc/sys/kernel/hostname",
        "eth0": "ip -4 -o addr show dev eth0",
        "ifstate": "cat /run/network/ifstate.eth0",
        "route": "ip -4 route show default",
        "swaps": "cat /proc/swaps",
        "init": "readlink /proc/1/exe; dpkg -S /sbin/init; head -n 1 /proc/1/sched",
        "tmout": "bash -lc 'echo $TMOUT'",
        "ls": "bash -lic 'alias ls' 2>/dev/null",
        "gettys": "ps -eo args | grep [g]etty",
        "os": "cat /etc/debian_version; uname -r",
        "uptime": "cut -d' ' -f1 /proc/uptime",
        "hostkey": "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub",
    }.items():
        facts[key] = guest_ssh(dom0, guest.ip, command).stdout.strip()
    assert facts["hostname"] == guest.hostname, facts
    assert f"inet {guest.ip}/24 " in facts["eth0"], facts
    # ifupdown records each interface it brought up: the address came from our file through Debian's ifup.
    assert facts["ifstate"] == "eth0", facts
    assert facts["route"].startswith(f"default via {NETWORK}.1 dev eth0"), facts
    swaps = facts["swaps"].splitlines()[1:]
    assert [line.split()[0] for line in swaps] == ["/dev/xvda2"], facts
    assert int(swaps[0].split()[2]) > (SWAP_MB - 1) * 1024, facts
    exe, package, _sched = facts["init"].splitlines()
    # bookworm's /sbin is a link to usr/sbin.
    assert exe in ("/sbin/init", "/usr/sbin/init") or exe.endswith("/systemd"), facts
    assert package.startswith(f"{INIT_PACKAGE[init]}: "), facts
    assert facts["tmout"] == "1200", facts
    assert "--color=auto" in facts["ls"], facts
    gettys = facts["gettys"].splitlines()
    assert len(gettys) == 1 and gettys[0].split()[0].endswith("getty") and "hvc0" in gettys[0].split(), facts
    assert facts["os"].startswith("12."), facts
    return facts


# ------------------------------------------------------------------ the tests
@pytest.mark.needs_postgres
@pytest.mark.parametrize(
    "init",
    [
        pytest.param("sysvinit", marks=[pytest.mark.debian_guest, pytest.mark.timeout(3600)]),
        # Only with `-m debian_systemd`: deploy's default init takes minutes to boot under TCG.
        pytest.param("systemd", marks=[pytest.mark.debian_systemd, pytest.mark.timeout(5400)]),
    ],
)
def test_a_debian_guest_the_panel_built_boots_under_xen_and_resets(
    init,
    dom0,  # noqa: F811
    probe,
    testbed,  # noqa: F811
    testbed_timings,  # noqa: F811
    transactional_db,
    live_server,
    ivy,
    alice,
    new_ssh_key,
):
    scenario(init, dom0, testbed, testbed_timings, ivy, alice, new_ssh_key)


def scenario(init: str, dom0: Dom0, testbed: Testbed, testbed_timings, ivy, alice, new_ssh_key) -> None:  # noqa: F811
    phases = Phases()
    built = debian(testbed, testbed_timings, init)
    host, _tiny, pool = panel_rows(dom0, "deb-net", f"{NETWORK}.0/24")
    template = LabTemplate.objects.create(
        name=f"debian-12 ({init})",
        rootfs_path=f"{debian_template.STORE}/{debian_template.NAME}",
        kernel=built.result.kernel,
        ramdisk=built.result.ramdisk,
        root_size_mb=ROOT_MB,
        swap_size_mb=SWAP_MB,
        default_memory_mb=MEMORY_MB,
        max_memory_mb=256,
    )
    assert (template.kernel, template.ramdisk) == (debian_template.DOM0_KERNEL, debian_template.DOM0_RAMDISK)
    public, private = new_ssh_key("alice@debian")
    add_key(alice, public)
    other, other_private = new_ssh_key("mallory@debian")
    put_key(testbed, private, KEY_IN_DOM0)
    put_key(testbed, other_private, f"{KEY_IN_DOM0}-other")

    sync = start_sync_loop(dom0.env)
    try:
        wait_host_memory(dom0, host)
        # --- 1. provisioning, by the dom0 worker
        with phases("provisioning (batch to guest ready)"):
            create_lab_batch(
                ivy,
                template,
                pool,
                [RosterEntry(1, "alice", "Alice Student", "alice@example.edu")],
                MEMORY_MB,
                name="Debian on Xen",
                slug=SLUG,
            )
            guest = wait_running(dom0, "alice's Debian guest to run")
        device = f"/dev/vg0/{guest.root_lv}"
        assert f"address {guest.ip}" in dom0.guest_file(device, "/etc/network/interfaces")
        assert "/dev/xvda2\tnone\tswap" in dom0.guest_file(device, "/etc/fstab")

        # --- 2. Debian's init boots it; a Debian login on its console, and root logs in on `xl console`
        with phases("guest boot (xl create done to login prompt)"):
            wait_login(testbed, guest, 1)
        console = testbed.console_log(guest.domain_name)
        assert "Debian GNU/Linux 12" in console, console[-3000:]
        assert ("INIT: version" in console) == (init == "sysvinit"), console[-3000:]
        assert "XENPANEL-BOOTED" not in console  # not the busybox template's marker
        with phases("root login on xl console"):
            session = xl_console_login(testbed, guest.domain_name, guest.initial_password)
        assert f"{guest.hostname} login:" in session and "XP-1200-12" in session, session[-2000:]

        # --- 3. ssh with alice's key over the guests' bridge; what the guest says about itself
        assert not dom0.sh(["ip", "-4", "-o", "addr", "show", "dev", BRIDGE]).strip()
        with phases("ssh answers (login prompt to first ssh)"):
            before = check_inside(dom0, guest, init)
        refused = guest_ssh(dom0, guest.ip, "true", key=f"{KEY_IN_DOM0}-other", check=False)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused

        # --- 4. #13: from inside the guest, nothing on the management side answers; from dom0 all of it does
        targets = [f"{HOST_FROM_DOM0}:{redis_port()}", f"{HOST_FROM_DOM0}:{postgres_port()}", f"{DOM0_SSHD}:22"]
        script = f"bash -c {shlex.quote(PROBE)} probe " + " ".join(targets)
        from_guest = guest_ssh(dom0, guest.ip, script).stdout.split("\n")
        assert [line for line in from_guest if line] == [f"{t} closed" for t in targets], from_guest
        from_dom0 = dom0.sh(["bash", "-c", PROBE, "probe", *targets]).split("\n")
        assert [line for line in from_dom0 if line] == [f"{t} open" for t in targets], from_dom0

        # --- 5. reset to template: the same guest again, with nothing of before
        guest_ssh(dom0, guest.ip, "touch /root/written-before-reset")
        prompts = login_prompts(testbed, guest.domain_name, guest.hostname)
        with phases("reset to template (request to login prompt)"):
            task = guest_action(alice, guest, "reset")
            until(
                lambda: Task.objects.filter(
                    pk=task.pk, status__in=(Task.Status.SUCCEEDED, Task.Status.FAILED)
                ).exists(),
                "the reset to finish",
                PROVISION_TIMEOUT,
                interval=3,
                on_timeout=dom0.worker_log,
            )
            task.refresh_from_db()
            assert task.status == Task.Status.SUCCEEDED, task.log
            wait_login(testbed, guest, prompts + 1)
        with phases("ssh answers after the reset"):
            after = check_inside(dom0, guest, init)
        assert guest_ssh(dom0, guest.ip, "ls /root/written-before-reset", check=False).returncode != 0
        assert after["hostkey"] != before["hostkey"], (before, after)  # a clone makes its own host keys
        assert {k: after[k] for k in ("hostname", "eth0", "ifstate", "init")} == {
            k: before[k] for k in ("hostname", "eth0", "ifstate", "init")
        }
        seconds = {
            "guest uptime when ssh answered": float(before["uptime"]),
            "guest uptime when ssh answered after reset": float(after["uptime"]),
        }

    finally:
        stop_process(sync)
        dom0.scrub(SLUG, dom0.env, QUEUE)
    phases.seconds.update(seconds)
    print("\n" + phases.line(f"debian guest ({init}) on real Xen"))
    testbed_timings.add(f"debian guest ({init}): provision, boot, ssh, reset", phases.seconds)


# ------------------------------------------------------------------ on SQLite: the same test, on PostgreSQL
@pytest.mark.debian_guest
@pytest.mark.postgres_relay
@pytest.mark.timeout(7200)
def test_debian_guest_runs_on_postgresql():
    """This run uses SQLite, which a worker inside QEMU cannot share: run this module again on PostgreSQL."""
    run_module_on_postgresql(HERE, passed=1)
