"""Template builds: the dom0 argv and files (fake runner), the job, `manage.py build_template`, the admin action.

The real debootstrap needs the internet, which the testbed does not have,
so what runs on the dom0 is checked here command by command; the e2e test
boots the testbed's smaller busybox template instead.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import django_rq
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from labs.dom0 import HostConfig
from labs.dom0.errors import CommandFailed, Dom0Error, InvalidName
from labs.dom0.host import XenHost
from labs.dom0.runner import Result
from labs.dom0.template import (
    BASE_PACKAGES,
    TMOUT_LINE,
    TemplateBuilder,
    TemplateSpec,
    bootstrap_argv,
    render_profile,
)
from labs.jobs.template import build_template_job
from labs.models import AuditEvent, LabTemplate, Task
from labs.services.templates import enqueue_template_build, make_spec
from tests.conftest import PASSWORD
from tests.pipeline.helpers import work

PATH = "/srv/xenpanel/templates/debian-12"
PARTIAL = PATH + ".partial"
KERNEL_VERSION = "6.1.0-28-amd64"
DEBIAN_PROFILE = 'if [ "$(id -u)" -eq 0 ]; then\n  PATH="/usr/local/sbin:/usr/sbin:/sbin"\nfi\nexport PATH\n'


class FakeDom0Runner:
    """Records every argv and file write; answers like a dom0 where debootstrap worked."""

    def __init__(self, existing: Sequence[str] = (), fail: Mapping[str, tuple[int, str]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.files: dict[str, bytes] = {f"{PARTIAL}/etc/profile": DEBIAN_PROFILE.encode()}
        self.existing = set(existing)
        self.fail = dict(fail or {})
        self.busy_seconds = 0.0
        self.free_mb: int | None = 77683

    def run(self, argv, *, timeout=300.0, check=True, input=None, env=None) -> Result:
        argv = [str(a) for a in argv]
        assert all(isinstance(a, str) for a in argv) and argv[0], argv
        self.calls.append(argv)
        self.busy_seconds += 0.01
        rc, out, err = 0, "", ""
        if argv[0] == "test" and argv[1] == "-e":
            rc = 0 if argv[2] in self.existing else 1
        elif argv[:2] == ["ls", "-1"]:
            out = f"config-{KERNEL_VERSION}\ninitrd.img-{KERNEL_VERSION}\nvmlinuz-{KERNEL_VERSION}\n"
        elif argv[0] == "du":
            out = f"431\t{argv[-1]}\n"
        elif argv[0] == "df":
            out = f"{self.free_mb}\n" if self.free_mb is None else f" Avail\n {self.free_mb}\n"
        elif argv[0] == "tail":
            out = "E: Couldn't download packages: openssh-server\n"
        if argv[0] in self.fail:
            rc, err = self.fail[argv[0]]
        result = Result(argv, rc, out, err, 0.01)
        if check and rc != 0:
            raise CommandFailed(f"{argv[0]} failed (exit {rc})", argv=argv, rc=rc, stderr=err)
        return result

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.calls.append(["<write>", path])
        self.files[path] = data

    def read_file(self, path: str) -> bytes:
        self.calls.append(["<read>", path])
        return self.files[path]

    def commands(self) -> list[str]:
        return [a[0] for a in self.calls]


def spec(**kw) -> TemplateSpec:
    return TemplateSpec(**{"path": PATH, "suite": "bookworm", "mirror": "http://deb.debian.org/debian", **kw})


def test_bootstrap_argv_has_minbase_and_what_a_guest_needs():
    include = "--include=" + ",".join(BASE_PACKAGES)
    assert bootstrap_argv(spec(), PARTIAL) == [
        "debootstrap",
        "--variant=minbase",
        "--arch=amd64",
        "--components=main",
        include,
        "bookworm",
        PARTIAL,
        "http://deb.debian.org/debian",
    ]
    for needed in ("systemd-sysv", "ifupdown", "openssh-server", "linux-image-amd64"):
        assert needed in include
    mm = bootstrap_argv(spec(tool="mmdebstrap", extra_packages=("vim-tiny", "ifupdown")), PARTIAL)
    assert mm[:4] == ["mmdebstrap", "--variant=minbase", "--architectures=amd64", "--components=main"]
    # Extra packages come after the base ones, each once.
    assert mm[4] == include + ",vim-tiny"
    assert mm[5:] == ["bookworm", PARTIAL, "http://deb.debian.org/debian"]


def test_build_runs_argv_only_and_leaves_the_seed_touches_in_the_tree():
    runner = FakeDom0Runner()
    log: list[str] = []
    result = TemplateBuilder(runner, log=log.append).build(spec())

    commands = runner.commands()
    # Every command is an argv list; nothing goes through a shell.
    assert "sh" not in commands and "bash" not in commands
    assert runner.calls[0] == ["test", "-e", PATH]
    assert runner.calls[1] == ["rm", "-rf", "--one-file-system", "--", PARTIAL]
    assert commands.index("debootstrap") < commands.index("<write>") < commands.index("ls")
    # Built aside, renamed into place last.
    assert runner.calls[-1] == ["mv", "-T", "--", PARTIAL, PATH]
    assert ["mv", "-T", "--", PATH, PATH + ".old"] not in runner.calls

    files = {p: d.decode() for p, d in runner.files.items()}
    profile = files[f"{PARTIAL}/etc/profile"]
    assert profile.startswith(DEBIAN_PROFILE) and profile.rstrip().endswith(TMOUT_LINE)
    assert profile.count("TMOUT=1200") == 1
    assert "NAutoVTs=0" in files[f"{PARTIAL}/etc/systemd/logind.conf.d/xenpanel-console.conf"]
    assert files[f"{PARTIAL}/etc/hostname"] == "modelo\n"
    assert "/dev/xvda1\t/\text4" in files[f"{PARTIAL}/etc/fstab"]
    assert "/dev/xvda2\tnone\tswap" in files[f"{PARTIAL}/etc/fstab"]
    assert files[f"{PARTIAL}/etc/machine-id"] == ""
    assert files[f"{PARTIAL}/etc/apt/sources.list"] == "deb http://deb.debian.org/debian bookworm main\n"
    assert "ssh-keygen -A" in files[f"{PARTIAL}/etc/systemd/system/ssh.service.d/xenpanel-hostkeys.conf"]
    # One getty, on hvc0: serial-getty@hvc0 enabled, tty1's getty masked.
    assert [
        "ln",
        "-sfn",
        "--",
        "/lib/systemd/system/serial-getty@.service",
        f"{PARTIAL}/etc/systemd/system/getty.target.wants/serial-getty@hvc0.service",
    ] in runner.calls
    assert ["ln", "-sfn", "--", "/dev/null", f"{PARTIAL}/etc/systemd/system/getty@tty1.service"] in runner.calls
    assert ["rm", "-f", "--", f"{PARTIAL}/etc/systemd/system/getty.target.wants/getty@tty1.service"] in runner.calls
    # Clones must not share ssh host keys.
    assert ["find", f"{PARTIAL}/etc/ssh", "-maxdepth", "1", "-name", "ssh_host_*", "-delete"] in runner.calls

    assert result.path == PATH
    assert result.kernel == f"{PATH}/boot/vmlinuz-{KERNEL_VERSION}"
    assert result.ramdisk == f"{PATH}/boot/initrd.img-{KERNEL_VERSION}"
    assert result.size_mb == 431
    assert any(line.startswith("$ debootstrap ") for line in log)


def test_render_profile_appends_tmout_once():
    once = render_profile("export PATH\n")
    assert once == (
        "export PATH\n\n# xenpanel (as the 2007 recipe): ls lists in colour; log idle shells out after 20 minutes.\n"
        f"alias ls='ls --color=auto'\n{TMOUT_LINE}\n"
    )
    assert render_profile(once) == once
    assert render_profile("umask 022").endswith(f"{TMOUT_LINE}\n")


@pytest.mark.parametrize(
    "bad",
    [
        {"path": "/"},
        {"path": "/etc"},
        {"path": "/srv/"},
        {"path": "relative/dir"},
        {"path": "/srv/../etc"},
        {"path": "/srv/a b"},
        {"suite": "bookworm; reboot"},
        {"suite": "-bookworm"},
        {"mirror": "ftp://deb.debian.org/debian"},
        {"mirror": "http://user:secret@mirror/debian"},
        {"mirror": "http://mirror/debian $(reboot)"},
        {"mirror": "http://mirror/debian?x=1"},
        {"extra_packages": ("vim tiny",)},
        {"extra_packages": ("--force-yes",)},
        {"tool": "cdebootstrap"},
        {"arch": "amd64 --foo"},
    ],
)
def test_bad_values_are_refused_before_any_command(bad):
    runner = FakeDom0Runner()
    with pytest.raises(InvalidName):
        TemplateBuilder(runner).build(spec(**bad))
    assert runner.calls == []


def test_an_existing_tree_is_kept_unless_replace_is_asked():
    runner = FakeDom0Runner(existing=[PATH])
    with pytest.raises(Dom0Error, match="already exists"):
        TemplateBuilder(runner).build(spec())
    assert runner.calls == [["test", "-e", PATH]]

    runner = FakeDom0Runner(existing=[PATH])
    TemplateBuilder(runner).build(spec(replace=True))
    tail = runner.calls[-4:]
    assert tail == [
        ["rm", "-rf", "--one-file-system", "--", PATH + ".old"],
        ["mv", "-T", "--", PATH, PATH + ".old"],
        ["mv", "-T", "--", PARTIAL, PATH],
        ["rm", "-rf", "--one-file-system", "--", PATH + ".old"],
    ]


def test_a_failed_bootstrap_says_why_and_moves_nothing_into_place():
    runner = FakeDom0Runner(fail={"debootstrap": (1, "W: Failure trying to run: chroot ...")})
    with pytest.raises(Dom0Error) as caught:
        TemplateBuilder(runner).build(spec())
    assert "debootstrap failed (exit 1)" in str(caught.value)
    assert "Couldn't download packages: openssh-server" in caught.value.detail()
    assert not any(a[0] == "mv" for a in runner.calls)


def test_plan_lists_the_commands_for_a_dry_run():
    lines = TemplateBuilder.plan(spec(tool="mmdebstrap"))
    assert lines[0].startswith("mmdebstrap --variant=minbase")
    assert lines[-1] == f"mv -T {PARTIAL} {PATH}"
    assert any("TMOUT=1200" in line for line in lines)


# ------------------------------------------------------------ the job, the command, the admin action
@pytest.fixture
def redis_clean():
    conn = django_rq.get_connection("default")
    conn.flushdb()
    yield conn
    conn.flushdb()


@pytest.fixture
def fake_dom0(monkeypatch, host):
    """The host's worker sees a real XenHost whose commands go to a FakeDom0Runner."""
    runner = FakeDom0Runner()
    monkeypatch.setattr(
        "labs.jobs.connect.connect_host",
        lambda h: XenHost(HostConfig(name=h.name, volume_group=h.volume_group), runner=runner),
    )
    return runner


# The in-process worker closes connections around each job, as production
# does, so the test needs real commits rather than one wrapping transaction.
@pytest.mark.django_db(transaction=True)
def test_job_builds_on_the_hosts_queue_and_registers_the_template(
    redis_clean, fake_dom0, host, ivy, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        task = enqueue_template_build(host, "debian-12", make_spec(path=PATH), actor=ivy)
    queued = django_rq.get_queue(host.queue_name).job_ids
    assert queued == [task.rq_job_id]
    work(host.queue_name)

    task.refresh_from_db()
    assert task.status == Task.Status.SUCCEEDED, task.log
    assert (task.kind, task.steps_done, task.steps_total) == ("build_template", 3, 3)
    assert "$ debootstrap --variant=minbase" in task.log
    assert task.dom0_seconds > 0
    template = LabTemplate.objects.get(name="debian-12")
    assert template.rootfs_path == PATH
    assert template.kernel == f"{PATH}/boot/vmlinuz-{KERNEL_VERSION}"
    assert template.ramdisk == f"{PATH}/boot/initrd.img-{KERNEL_VERSION}"
    assert template.root_size_mb >= 4096
    assert AuditEvent.objects.get(task=task).result == AuditEvent.Result.SUCCEEDED


@pytest.mark.django_db
def test_job_failure_is_recorded_and_registers_nothing(redis_clean, monkeypatch, host):
    runner = FakeDom0Runner(fail={"debootstrap": (1, "E: unreachable mirror")})
    monkeypatch.setattr(
        "labs.jobs.connect.connect_host",
        lambda h: XenHost(HostConfig(name=h.name, volume_group=h.volume_group), runner=runner),
    )
    task = enqueue_template_build(host, "debian-12", make_spec(path=PATH))
    assert build_template_job(task.pk) == "failed"
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert task.error.startswith("bootstrap: debootstrap failed (exit 1)")
    assert not LabTemplate.objects.filter(name="debian-12").exists()
    # A second delivery of the same job does not run it again.
    assert build_template_job(task.pk) == f"task {task.pk} is already failed"


@pytest.mark.django_db
def test_command_uses_the_settings_suite_and_mirror(redis_clean, host, settings, django_capture_on_commit_callbacks):
    settings.XENPANEL_TEMPLATE_SUITE = "trixie"
    settings.XENPANEL_TEMPLATE_MIRROR = "http://mirror.example.edu/debian"
    out = io.StringIO()
    call_command("build_template", "deb13", "--host", host.name, "--dry-run", stdout=out)
    text = out.getvalue()
    assert f"would queue on {host.queue_name}" in text
    assert "debootstrap --variant=minbase" in text
    assert "trixie /srv/xenpanel/templates/deb13.partial http://mirror.example.edu/debian" in text
    assert not Task.objects.exists()
    assert django_rq.get_queue(host.queue_name).count == 0

    with django_capture_on_commit_callbacks(execute=True):
        call_command("build_template", "deb13", "--host", host.name, "--tool", "mmdebstrap", stdout=out)
    task = Task.objects.get()
    assert task.args["suite"] == "trixie" and task.args["mirror"] == "http://mirror.example.edu/debian"
    assert task.args["tool"] == "mmdebstrap" and task.args["path"] == "/srv/xenpanel/templates/deb13"
    assert django_rq.get_queue(host.queue_name).job_ids == [task.rq_job_id]


@pytest.mark.django_db
def test_command_refuses_bad_input_and_queues_nothing(redis_clean, host):
    with pytest.raises(CommandError, match="no such host"):
        call_command("build_template", "x", "--host", "nope")
    with pytest.raises(CommandError, match="invalid mirror"):
        call_command("build_template", "x", "--host", host.name, "--mirror", "http://a b/")
    with pytest.raises(CommandError, match="system directory"):
        call_command("build_template", "x", "--host", host.name, "--path", "/etc")
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_admin_action_rebuilds_the_selected_templates_on_the_chosen_host(
    redis_clean, client, admin_user, host, django_capture_on_commit_callbacks
):
    template = LabTemplate.objects.create(name="deb", rootfs_path="/srv/tpl/deb", kernel="/boot/vmlinuz")
    client.login(username=admin_user.username, password=PASSWORD)
    url = reverse("admin:labs_labtemplate_changelist")
    r = client.post(url, {"action": "build_on_host", "_selected_action": [template.pk], "host": ""}, follow=True)
    assert "Choose the host" in r.content.decode()
    assert not Task.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            url, {"action": "build_on_host", "_selected_action": [template.pk], "host": host.pk}, follow=True
        )
    task = Task.objects.get()
    # The admin capitalises messages ("Deb: ...").
    assert f"deb: build queued on {host.name} (task {task.pk})." in r.content.decode().lower()
    assert (task.host, task.target, task.actor) == (host, "deb", admin_user)
    assert task.args["path"] == "/srv/tpl/deb" and task.args["replace"] is True
    assert django_rq.get_queue(host.queue_name).job_ids == [task.rq_job_id]
