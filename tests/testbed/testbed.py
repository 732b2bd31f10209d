"""Drive xenpanel's Xen testbed: a real Xen 4.17 + Debian 12 dom0 inside QEMU (TCG).

    with Testbed() as tb:                 # boots (build.sh must have run: see build())
        tb.ssh(["xl", "list"])            # argv list, or one remote shell string
        host = labs.dom0.connect(cfg, mode="xen", runner=tb.runner())
        tb.wait_console("web1", "XENPANEL-BOOTED")

Network isolation: the only NIC is QEMU user networking with `restrict=on`.
The host reaches dom0's sshd through a hostfwd bound to 127.0.0.1, and dom0
reaches chosen host loopback ports through guestfwd rules (`forwards=`);
nothing else goes in or out. The dom0 disk runs with snapshot=on, so every
boot starts from the built image, and the LVM disk is created empty per boot.

CLI:  python tests/testbed/testbed.py build|up   (`up` boots and waits for Ctrl-C)
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
DEFAULT_DIR = "/var/tmp/xenpanel-testbed"
READY = "XENPANEL-DOM0-READY"
# Any of these on the console means the boot cannot succeed: fail at once.
FATAL = ("XENPANEL-DOM0-FAILED", "XENPANEL-INITRD-FAILED", "Kernel panic", "Hardware Dom0 crashed", "Panic on CPU")
# Boot stages as they appear on the serial console, for the timing report.
STAGES = (
    ("xen_banner_s", "Xen version 4."),
    ("dom0_kernel_s", "XENPANEL-INITRD role=dom0"),
    ("dom0_ready_s", READY),
)
# dom0's kernel reaches its initrd in about 8 s (30 s at load 7). Twice in a day here (load 1-2), it
# printed "about to get started..." and nothing more (the first time until the 600 s boot timeout):
# QEMU TCG hung in the PV kernel's earliest boot, before any disk write. The machine is then reset,
# as an operator resets a hung host, at most STALL_RESETS times; each reset is counted in the timings
# (boot_resets).
KERNEL_STALL_SECONDS = 120
STALL_RESETS = 2
GUEST_CONSOLE_DIR = "/var/log/xen/console"
WHEELS_IN_DOM0 = "/var/cache/xenpanel/wheels"
KEEP_RUNS = 5


class TestbedError(RuntimeError):
    """The testbed could not be built, booted or driven; the message says why."""


class BootStalled(TestbedError):
    """QEMU runs but dom0's kernel never reached its initrd (KERNEL_STALL_SECONDS)."""


def testbed_dir() -> Path:
    return Path(os.environ.get("XENPANEL_TESTBED_DIR") or DEFAULT_DIR)


def build(
    out_dir: str | os.PathLike | None = None,
    timeout: float = 1800,
    requirements: str | os.PathLike | None = PROJECT / "requirements-dom0.txt",
) -> float:
    """Run build.sh (cached: seconds when nothing changed); returns the seconds it took.

    With `requirements`, the image carries /opt/xenpanel/.venv built from
    those pinned wheels, which install_xenpanel() then reuses.
    """
    out = Path(out_dir or testbed_dir())
    env = dict(os.environ, XENPANEL_TESTBED_PYTHON=sys.executable)
    if requirements:
        env["XENPANEL_TESTBED_REQUIREMENTS"] = str(Path(requirements).resolve())
    started = time.monotonic()
    p = subprocess.run(
        ["bash", str(HERE / "build.sh"), str(out)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-30:])
        raise TestbedError(f"tests/testbed/build.sh {out} failed (exit {p.returncode}):\n{tail}")
    return time.monotonic() - started


@dataclass(frozen=True)
class Forward:
    """dom0 connects to guest_addr:guest_port and reaches 127.0.0.1:host_port on the host."""

    guest_addr: str
    guest_port: int
    host_port: int


# Run by dom0's python3: argv = log path, marker, count, timeout. Prints the
# count-th line holding the marker (exit 0), or exits 3 on timeout.
_WAIT_FOR_MARKER = """
import sys, time
path, marker, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
deadline = time.monotonic() + timeout
while True:
    try:
        with open(path, errors="replace") as f:
            lines = [line for line in f.read().splitlines() if marker in line]
    except FileNotFoundError:
        lines = []
    if len(lines) >= count:
        print(lines[count - 1].strip())
        sys.exit(0)
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.5)
"""


def _console_path(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise ValueError(f"bad domain name {name!r}")
    return f"{GUEST_CONSOLE_DIR}/guest-{name}.log"


def _owner_alive(run_dir: Path) -> bool:
    try:
        os.kill(int((run_dir / "owner.pid").read_text()), 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # QEMU gets SIGTERM if pytest dies, so no emulator outlives a killed CI job.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Testbed:
    """One QEMU running Xen + dom0. Not thread-safe; one per test session is the norm."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        out_dir: str | os.PathLike | None = None,
        *,
        memory_mb: int = 2560,
        dom0_memory_mb: int = 1024,
        lvm_size_mb: int = 4096,
        cpus: int = 2,
        forwards: Sequence[Forward] = (),
        boot_timeout: float = 600,
    ) -> None:
        self.out = Path(out_dir or testbed_dir()).resolve()
        self.memory_mb = memory_mb
        self.dom0_memory_mb = dom0_memory_mb
        self.lvm_size_mb = lvm_size_mb
        self.cpus = cpus
        self.forwards = tuple(forwards)
        self.boot_timeout = boot_timeout
        self.ssh_key = self.out / "ssh" / "id_ed25519"
        self.ssh_port = 0
        self.run_dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.timings: dict[str, float] = {}
        self.ready_line = ""
        self.powered_off_log = ""

    # ------------------------------------------------------------ paths
    @property
    def serial_log(self) -> Path:
        assert self.run_dir is not None, "not booted"
        return self.run_dir / "serial.log"

    def serial_text(self) -> str:
        try:
            return self.serial_log.read_text(errors="replace")
        except (FileNotFoundError, AssertionError):
            return ""

    # ------------------------------------------------------------ boot
    def _qemu_argv(self) -> list[str]:
        for f in ("xen", "vmlinux", "initrd.img", "dom0.img"):
            if not (self.out / f).exists():
                raise TestbedError(f"{self.out / f} is missing: run tests/testbed/build.sh first")
        if "," in str(self.out) or "," in str(self.run_dir):
            raise TestbedError("testbed paths must not contain ',' (QEMU option syntax)")
        netdev = f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{self.ssh_port}-10.0.2.15:22"
        for fw in self.forwards:
            # One relay process per connection; its target is always 127.0.0.1.
            relay = f"{sys.executable} {HERE / 'relay.py'} {int(fw.host_port)}"
            if "," in relay or " " in str(HERE) or " " in sys.executable:
                raise TestbedError(f"cannot express guestfwd command {relay!r}")
            netdev += f",guestfwd=tcp:{fw.guest_addr}:{int(fw.guest_port)}-cmd:{relay}"
        xen_cmdline = (
            f"console=com1 com1=115200,8n1 dom0_mem={self.dom0_memory_mb}M,max:{self.dom0_memory_mb}M "
            f"dom0_max_vcpus={self.cpus} loglvl=warning guest_loglvl=warning"
        )
        dom0_cmdline = "root=/dev/vda rw xenpanel.dom0 console=hvc0 loglevel=4 net.ifnames=0"
        return [
            "qemu-system-x86_64",
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
            "-accel",
            "tcg,thread=multi",
            # qemu64 + svm/npt: "-cpu max" crashes the PV dom0 (SMAP), and Debian's
            # Xen has no shadow paging, so PVH guests need HAP (npt).
            "-cpu",
            "qemu64,+svm,+npt",
            "-smp",
            str(self.cpus),
            "-m",
            str(self.memory_mb),
            "-serial",
            f"file:{self.serial_log}",
            "-kernel",
            str(self.out / "xen"),
            "-append",
            xen_cmdline,
            # multiboot modules: dom0 kernel (with its command line), then its initrd
            "-initrd",
            f"{self.out / 'vmlinux'} {dom0_cmdline},{self.out / 'initrd.img'}",
            # dom0's root: this run's copy-on-write layer over the image, so a reboot keeps what the
            # tests installed and wrote (xenpanel, its units, /var/lib/xen/save) and the image stays clean.
            "-drive",
            f"file={self.run_dir / 'dom0.qcow2'},if=virtio,format=qcow2,cache=unsafe",
            "-drive",
            f"file={self.run_dir / 'lvm.img'},if=virtio,format=raw,cache=unsafe",
            "-netdev",
            netdev,
            "-device",
            "virtio-net-pci,netdev=mgmt",
        ]

    def _new_run_dir(self) -> Path:
        """A directory per boot (serial log, LVM disk, ssh socket); keeps the last few for post-mortems."""
        runs = self.out / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        # Other testbeds may be running from the same build: never touch a live one.
        finished = sorted((d for d in runs.iterdir() if not _owner_alive(d)), key=lambda d: d.stat().st_mtime)
        for stale in finished[: max(0, len(finished) - KEEP_RUNS + 1)]:
            shutil.rmtree(stale, ignore_errors=True)
        run_dir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))
        (run_dir / "owner.pid").write_text(str(os.getpid()))
        return run_dir

    def boot(self) -> dict[str, float]:
        """Start QEMU and wait until dom0 is READY and answers ssh; returns boot timings."""
        if self.proc is not None:
            raise TestbedError("already booted")
        self.run_dir = self._new_run_dir()
        with open(self.run_dir / "lvm.img", "wb") as f:
            f.truncate(self.lvm_size_mb * 1024 * 1024)
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                str(self.out / "dom0.img"),
                str(self.run_dir / "dom0.qcow2"),
            ],
            check=True,
            capture_output=True,
        )
        return self._start()

    def power_off(self, timeout: float = 300) -> float:
        """Power dom0 off as an operator would, keeping its disks for power_on(): its init stops the enabled
        services (the worker, then xendomains, which saves the running guests); returns the seconds it took."""
        if self.proc is None:
            raise TestbedError("not booted")
        started = time.monotonic()
        self.ssh(["poweroff"], check=False, timeout=30)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise TestbedError(
                f"dom0 did not power off within {timeout:g} s:\n{self._tail(self.serial_text())}"
            ) from e
        finally:
            self._stop_ssh_master()
        self.proc = None
        # The next boot starts a new serial log: keep this one's (the shutdown's lines) beside it.
        self.powered_off_log = self.serial_text()
        (self.run_dir / f"serial-{time.strftime('%H%M%S')}-off.log").write_text(self.powered_off_log)
        return time.monotonic() - started

    def power_on(self) -> dict[str, float]:
        """Boot the dom0 power_off() stopped, on the same disks; returns the boot timings."""
        if self.proc is not None or self.run_dir is None:
            raise TestbedError("power_on() follows power_off()")
        return self._start()

    def _start(self) -> dict[str, float]:
        resets, port_taken = 0, False
        for _attempt in range(3 + STALL_RESETS):
            # A power_on() keeps the port, so runners made before the power_off() reach the dom0 again.
            if port_taken or not self.ssh_port:
                self.ssh_port = _free_port()
            self.timings = {}
            started = time.monotonic()
            self.serial_log.write_bytes(b"")
            qemu_log = open(self.run_dir / "qemu.log", "wb")  # noqa: SIM115 - closed with the process
            self.proc = subprocess.Popen(
                self._qemu_argv(),
                stdin=subprocess.DEVNULL,
                stdout=qemu_log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
            qemu_log.close()
            try:
                self._wait_ready(started)
                break
            except BootStalled as e:
                self.kill()
                (self.run_dir / f"serial-{time.strftime('%H%M%S')}-stalled.log").write_text(self.serial_text())
                if resets == STALL_RESETS:
                    raise
                resets += 1
                print(f"\ntestbed: {e.args[0].splitlines()[0]}; resetting the machine ({resets})", file=sys.stderr)
            except TestbedError:
                qemu_out = (self.run_dir / "qemu.log").read_text(errors="replace")
                self.kill()
                if "Could not set up host forwarding rule" in qemu_out:
                    port_taken = True  # the free port was taken meanwhile: try another
                    continue
                raise
        else:
            raise TestbedError("QEMU could not bind a free ssh port on 127.0.0.1")
        self._start_ssh_master()
        self.ssh(["true"])
        self.timings["ssh_ready_s"] = time.monotonic() - started
        if resets:
            self.timings["boot_resets"] = resets
        return self.timings

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.boot_timeout
        pending = list(STAGES)
        while True:
            text = self.serial_text()
            while pending and pending[0][1] in text:
                self.timings[pending.pop(0)[0]] = time.monotonic() - started
            for bad in FATAL:
                if bad in text:
                    raise TestbedError(f"dom0 boot failed ({bad!r}):\n{self._tail(text)}")
            if not pending:
                self.ready_line = next(line for line in text.splitlines() if READY in line).strip()
                return
            if self.proc.poll() is not None:
                qemu_out = (self.run_dir / "qemu.log").read_text(errors="replace")
                raise TestbedError(
                    f"QEMU exited with {self.proc.returncode} before {READY}:\n{qemu_out[-2000:]}\n{self._tail(text)}"
                )
            if "dom0_kernel_s" not in self.timings and time.monotonic() - started > KERNEL_STALL_SECONDS:
                raise BootStalled(f"dom0's kernel did not start within {KERNEL_STALL_SECONDS} s:\n{self._tail(text)}")
            if time.monotonic() > deadline:
                raise TestbedError(f"no {READY} within {self.boot_timeout:g} s:\n{self._tail(text)}")
            time.sleep(0.2)

    def _tail(self, text: str, lines: int = 40) -> str:
        return f"--- last lines of {self.serial_log} ---\n" + "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------ ssh
    def _ssh_base(self) -> list[str]:
        return [
            "ssh",
            *self._ssh_options(),
            "-o",
            "ControlMaster=no",
            "root@127.0.0.1",
        ]

    def _ssh_options(self) -> list[str]:
        # One multiplexed connection (ControlPath) saves a key exchange per
        # command, which costs about a second of emulated CPU in dom0.
        return [
            "-p",
            str(self.ssh_port),
            "-i",
            str(self.ssh_key),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
            "-o",
            f"ControlPath={self.run_dir / 'ssh.ctl'}",
        ]

    def _start_ssh_master(self) -> None:
        # Started on its own with stdio on /dev/null: a master spawned by a
        # captured command would hold that command's pipes open forever.
        subprocess.run(
            ["ssh", *self._ssh_options(), "-o", "ControlMaster=yes", "-o", "ControlPersist=yes", "-f", "-N"]
            + ["root@127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )

    def _stop_ssh_master(self) -> None:
        if self.run_dir and (self.run_dir / "ssh.ctl").exists():
            subprocess.run(
                ["ssh", *self._ssh_options(), "-O", "exit", "root@127.0.0.1"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )

    def ssh(
        self,
        command: Sequence[str] | str,
        *,
        input: bytes | None = None,
        timeout: float = 300,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run an argv list (quoted for the remote shell) or a shell string in dom0."""
        remote = command if isinstance(command, str) else shlex.join(command)
        p = subprocess.run(
            [*self._ssh_base(), remote],
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            timeout=timeout,
        )
        result = subprocess.CompletedProcess(
            p.args, p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        )
        if check and p.returncode != 0:
            raise TestbedError(
                f"dom0 command failed (exit {p.returncode}): {remote}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        return result

    def runner(self):
        """An labs.dom0.runner.SshRunner that runs commands in this dom0."""
        from labs.dom0.runner import SshRunner

        return SshRunner("root@127.0.0.1", port=self.ssh_port, key=str(self.ssh_key), options=self._ssh_options())

    # ------------------------------------------------------------ guest consoles
    def console_log(self, name: str) -> str:
        """The xenconsoled log of guest `name` ('' when the guest never started)."""
        return self.ssh(["cat", _console_path(name)], check=False).stdout

    def wait_console(self, name: str, marker: str, count: int = 1, timeout: float = 300) -> str:
        """Wait until `marker` has appeared `count` times in the guest's console log; returns that line.

        The waiting happens inside dom0, in one python3 process that rereads
        the log: polling over ssh would cost dom0 an sshd session and a few
        fork+execs per poll (about 0.2 s of emulated CPU each), which starves
        the hotplug scripts that xl create and xl reboot are waiting for.
        """
        p = self.ssh(
            ["python3", "-c", _WAIT_FOR_MARKER, _console_path(name), marker, str(count), str(timeout)],
            check=False,
            timeout=timeout + 120,
        )
        if p.returncode == 0:
            return p.stdout.strip().splitlines()[-1]
        if p.returncode != 3:
            raise TestbedError(f"waiting for {marker!r} on {name}'s console failed (exit {p.returncode}):\n{p.stderr}")
        lines = [line for line in self.console_log(name).splitlines() if marker in line]
        tail = "\n".join(self.console_log(name).splitlines()[-30:])
        raise TestbedError(
            f"{marker!r} seen {len(lines)} time(s) on {name}'s console, wanted {count}, after {timeout:g} s:\n{tail}"
        )

    # ------------------------------------------------------------ xenpanel inside dom0
    def install_xenpanel(self, project_dir: str | os.PathLike, dest: str = "/opt/xenpanel") -> dict[str, float]:
        """Copy the project (git ls-files) to `dest` in dom0 and build `dest`/.venv offline.

        dom0 has no internet: the requirements' wheels are downloaded on this
        host (cached under the testbed dir by a hash of requirements.txt),
        pushed over ssh and installed with `pip --no-index`. An image built
        by build() already holds that venv (made the same way in build.sh's
        chroot), and then only the code is copied. Returns timings
        (`venv_reused` when dom0 already has a venv of the same wheels).
        """
        project = Path(project_dir).resolve()
        timings: dict[str, float] = {}
        t = time.monotonic()
        dom0_python = self.ssh(["python3", "-c", "import platform; print(platform.python_version())"]).stdout.strip()
        wheels = wheelhouse(self.out, project / "requirements-dom0.txt", dom0_python)
        timings["wheels_download_s"] = time.monotonic() - t

        # A venv built from exactly these wheels is kept: the image's own, or
        # an earlier call's in the same boot (a redeploy only copies the code).
        venv, stamp = f"{dest}/.venv", f"{dest}/.venv/.xenpanel-wheels"
        wanted = "\n".join(sorted(w.name for w in wheels.glob("*.whl")))
        reuse = self.ssh(["cat", stamp], check=False).stdout.strip() == wanted

        t = time.monotonic()
        files = _project_files(project)
        self.ssh(["mkdir", "-p", dest])
        self.ssh(
            ["find", dest, "-mindepth", "1", "-maxdepth", "1", "!", "-name", ".venv", "-exec", "rm", "-rf", "{}", "+"]
        )
        self.ssh(["tar", "-x", "-C", dest], input=_tar_files(project, files))
        timings["project_push_s"] = time.monotonic() - t
        if reuse:
            timings["venv_reused"] = 1.0
            return timings

        t = time.monotonic()
        self.ssh(["mkdir", "-p", WHEELS_IN_DOM0])
        self.ssh(["tar", "-x", "-C", WHEELS_IN_DOM0], input=_tar_files(wheels, sorted(wheels.glob("*.whl"))))
        timings["wheels_push_s"] = time.monotonic() - t

        # Emulated CPU is the scarce thing in dom0, so: no pip inside the venv
        # (ensurepip alone is a full pip install), pip run straight from
        # Debian's wheel instead, and no byte-compiling of every module
        # (Python compiles what the worker really imports, once).
        t = time.monotonic()
        self.ssh(["rm", "-rf", venv])
        self.ssh(["python3", "-m", "venv", "--without-pip", venv])
        pip_wheel = self.ssh(["sh", "-c", "ls /usr/share/python-wheels/pip-*.whl | tail -n 1"]).stdout.strip()
        if not pip_wheel:
            raise TestbedError("dom0 has no pip wheel in /usr/share/python-wheels (python3-pip-whl)")
        self.ssh(
            [f"{venv}/bin/python", f"{pip_wheel}/pip", "install", "--quiet", "--disable-pip-version-check"]
            + ["--no-compile", "--no-index", "--find-links", WHEELS_IN_DOM0, "-r", f"{dest}/requirements-dom0.txt"],
            timeout=1800,
        )
        self.ssh(["sh", "-c", 'printf "%s\\n" "$1" > "$2"', "stamp", wanted, stamp])
        timings["venv_install_s"] = time.monotonic() - t
        return timings

    # ------------------------------------------------------------ teardown
    def shutdown(self, timeout: float = 90) -> float:
        """Power dom0 off cleanly (guests destroyed, VG deactivated); kill QEMU if it hangs."""
        if self.proc is None:
            return 0.0
        started = time.monotonic()
        try:
            if self.proc.poll() is None:
                self.ssh(["poweroff"], check=False, timeout=30)
                self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            self._stop_ssh_master()
            self.kill()
            if self.run_dir:
                (self.run_dir / "lvm.img").unlink(missing_ok=True)
                (self.run_dir / "dom0.qcow2").unlink(missing_ok=True)
        self.timings["shutdown_s"] = time.monotonic() - started
        return self.timings["shutdown_s"]

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None

    def __enter__(self) -> Testbed:
        self.boot()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def _tar_files(root: Path, files: Sequence[Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in files:
            tar.add(f, arcname=str(f.relative_to(root)), recursive=False)
    return buf.getvalue()


def wheelhouse(out: Path, requirements: Path, dom0_python: str) -> Path:
    """The pinned wheels for dom0's python, downloaded on this host (cached under `out`/wheels)."""
    # dom0 runs Debian 12's python3.11 on x86_64 (glibc 2.36), like this
    # host, so the host's pip picks wheels dom0 can use; --only-binary keeps
    # dom0 from ever needing a compiler.
    key = hashlib.sha256(requirements.read_bytes() + dom0_python.encode()).hexdigest()[:16]
    house = Path(out) / "wheels" / key
    if not (house / ".complete").exists():
        house.mkdir(parents=True, exist_ok=True)
        _pip_download(house, ["-r", str(requirements)])
        # pip evaluates markers for the host's Python only (even with
        # --python-version): dom0's 3.11.2 also needs what is conditional
        # on an older version (redis: async-timeout below 3.11.3).
        extra = _deps_for_python(house, dom0_python)
        if extra:
            _pip_download(house, extra)
        (house / ".complete").touch()
    return house


def _pip_download(house: Path, args: list[str]) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        + ["--only-binary=:all:", "-d", str(house), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if p.returncode != 0:
        raise TestbedError(f"pip download for dom0 failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")


def _deps_for_python(house: Path, python: str) -> list[str]:
    """Requirements of the wheels in `house` whose markers hold on `python` but are not downloaded yet."""
    import zipfile

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    have = {canonicalize_name(w.name.split("-", 1)[0]) for w in house.glob("*.whl")}
    env = {"python_full_version": python, "python_version": ".".join(python.split(".")[:2])}
    wanted: list[str] = []
    for wheel in sorted(house.glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            lines = z.read(meta).decode(errors="replace").splitlines()
        for line in lines:
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is None or canonicalize_name(req.name) in have:
                continue
            if req.marker.evaluate({**env, "extra": ""}):
                req.marker = None
                wanted.append(str(req))
                have.add(canonicalize_name(req.name))
    return wanted


def _project_files(project: Path) -> list[Path]:
    """Tracked files plus new ones git does not ignore (a dev's work tree, or a CI clone)."""
    out = subprocess.run(
        ["git", "-C", str(project), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    files = [project / name for name in out.decode().split("\0") if name]
    return [f for f in files if f.is_file() and not f.is_symlink()]


def main(argv: Sequence[str]) -> int:
    mode = argv[0] if argv else "up"
    if mode == "wheels":  # build.sh: wheels REQUIREMENTS DOM0_PYTHON OUTDIR -> prints the wheelhouse
        print(wheelhouse(Path(argv[3]), Path(argv[1]), argv[2]))
        return 0
    print(f"build: {build():.1f} s", flush=True)
    if mode == "build":
        return 0
    tb = Testbed()
    try:
        timings = tb.boot()
        print(tb.ready_line)
        print("boot: " + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))
        key = tb.ssh_key
        print(f"ssh -i {key} -p {tb.ssh_port} -o StrictHostKeyChecking=no root@127.0.0.1   (Ctrl-C powers off)")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while tb.proc and tb.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        print(f"shutdown: {tb.shutdown():.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
