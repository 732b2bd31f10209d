"""The runner: argv only, timeouts, errors carrying argv/rc/stderr, stdin, atomic writes, ssh quoting."""

from __future__ import annotations

import os
import stat
import time

import pytest

from labs.dom0 import runner as runner_module
from labs.dom0.errors import CommandFailed, CommandTimeout
from labs.dom0.runner import LocalRunner, SshRunner


def test_timeout_raises_command_timeout():
    r = LocalRunner()
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        r.run(["sh", "-c", "echo begun >&2; sleep 30"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert info.value.argv == ["sh", "-c", "echo begun >&2; sleep 30"]
    assert info.value.stderr == "begun\n"  # what it said before it was killed
    assert r.busy_seconds >= 0.5


def test_timeout_kills_what_the_command_started(tmp_path):
    marker = tmp_path / "still-running"
    with pytest.raises(CommandTimeout):
        LocalRunner().run(["sh", "-c", f"(sleep 1; touch {marker}) & sleep 30"], timeout=0.3)
    time.sleep(1.5)
    assert not marker.exists()


def test_nonzero_exit_raises_command_failed_with_argv_rc_and_stderr():
    argv = ["sh", "-c", "echo first >&2; echo 'the real reason' >&2; exit 3"]
    with pytest.raises(CommandFailed) as info:
        LocalRunner().run(argv)
    e = info.value
    assert e.argv == argv
    assert e.rc == 3
    assert e.stderr == "first\nthe real reason\n"
    assert "exit 3" in str(e) and "the real reason" in str(e)
    assert "exit code: 3" in e.detail()


def test_check_false_returns_the_result():
    result = LocalRunner().run(["sh", "-c", "echo out; echo err >&2; exit 4"], check=False)
    assert (result.rc, result.stdout, result.stderr) == (4, "out\n", "err\n")


def test_missing_command_is_command_failed_127():
    with pytest.raises(CommandFailed) as info:
        LocalRunner().run(["xenpanel-no-such-command"])
    assert info.value.rc == 127


def test_stdin_is_dev_null():
    assert LocalRunner().run(["readlink", "/proc/self/fd/0"]).stdout.strip() == "/dev/null"


def test_input_is_fed_on_stdin():
    assert LocalRunner().run(["cat"], input=b"hello\n").stdout == "hello\n"


def test_arguments_reach_the_command_verbatim_without_a_shell():
    tricky = ["$(echo pwned)", "a; rm -rf /tmp/x", "it's", 'say "hi"', "*", "-n"]
    out = LocalRunner().run(["printf", "%s\\n", *tricky]).stdout
    assert out.splitlines() == tricky


@pytest.mark.parametrize("argv", [[], [""], ["echo", "a\x00b"]])
def test_bad_argv_is_refused(argv):
    with pytest.raises(ValueError):
        LocalRunner().run(argv)


def test_environment_is_fixed_and_extendable():
    r = LocalRunner(env={"XENPANEL_A": "1"})
    out = r.run(["env"], env={"XENPANEL_B": "2"}).stdout.splitlines()
    assert "LC_ALL=C" in out and "LVM_SUPPRESS_FD_WARNINGS=1" in out
    assert "XENPANEL_A=1" in out and "XENPANEL_B=2" in out


def test_history_and_busy_time_are_recorded():
    r = LocalRunner()
    r.run(["sleep", "0.2"])
    assert [h.argv for h in r.history] == [["sleep", "0.2"]]
    assert r.busy_seconds >= 0.2


# --- write_file -----------------------------------------------------------------------------------
def test_write_file_writes_content_and_mode(tmp_path):
    path = tmp_path / "web01.cfg"
    LocalRunner().write_file(str(path), b"name = 'web01'\n", 0o640)
    assert path.read_bytes() == b"name = 'web01'\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_write_file_replaces_atomically(tmp_path):
    path = tmp_path / "web01.cfg"
    path.write_bytes(b"old contents\n")
    reader = open(path, "rb")  # someone reading the old file while it is replaced
    try:
        LocalRunner().write_file(str(path), b"new contents\n")
        assert reader.read() == b"old contents\n"  # never a mix of old and new
    finally:
        reader.close()
    assert path.read_bytes() == b"new contents\n"
    assert os.listdir(tmp_path) == ["web01.cfg"]  # no temp file left


def test_write_file_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "web01.cfg"
    path.write_bytes(b"old contents\n")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner_module.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        LocalRunner().write_file(str(path), b"new contents\n")
    assert path.read_bytes() == b"old contents\n"
    assert os.listdir(tmp_path) == ["web01.cfg"]


# --- SshRunner, against a stand-in `ssh` that runs the remote command locally ----------------------
@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    ssh = bindir / "ssh"
    # Like the real ssh: the last argument is a string for the remote shell.
    ssh.write_text(
        "#!/bin/sh\n"
        'if [ -n "$FAKE_SSH_DOWN" ]; then echo "ssh: connect to host dom0 port 22: Connection refused" >&2; '
        "exit 255; fi\n"
        'for last; do :; done\nexec sh -c "$last"\n'
    )
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return SshRunner("root@dom0")


def test_ssh_runner_quotes_every_argument(fake_ssh):
    tricky = ["$(echo pwned)", "a; echo injected", "it's", 'say "hi"', "*", "two  spaces"]
    out = fake_ssh.run(["printf", "%s\\n", *tricky]).stdout
    assert out.splitlines() == tricky


def test_ssh_runner_passes_env_and_errors(fake_ssh):
    assert fake_ssh.run(["sh", "-c", 'echo "$LC_ALL"']).stdout == "C\n"
    with pytest.raises(CommandFailed) as info:
        fake_ssh.run(["sh", "-c", "echo nope >&2; exit 2"])
    assert (info.value.rc, info.value.stderr) == (2, "nope\n")


def test_ssh_runner_unreachable_host(fake_ssh, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_DOWN", "1")
    with pytest.raises(CommandFailed, match="could not reach") as info:
        fake_ssh.run(["true"], check=False)
    assert info.value.rc == 255


def test_ssh_runner_write_and_read_file(fake_ssh, tmp_path):
    path = tmp_path / "web 01.cfg"  # a space, to prove the quoting of paths
    fake_ssh.write_file(str(path), b"memory = 128\n", 0o600)
    assert path.read_bytes() == b"memory = 128\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert fake_ssh.read_file(str(path)) == b"memory = 128\n"
    assert sorted(os.listdir(tmp_path)) == ["bin", "web 01.cfg"]


def test_ssh_runner_failed_write_leaves_no_temp_file(fake_ssh, tmp_path):
    target = tmp_path / "web01.cfg"
    target.mkdir()  # a directory where the file should go: mv must not move the temp file into it
    with pytest.raises(CommandFailed):
        fake_ssh.write_file(str(target), b"memory = 128\n")
    assert list(target.iterdir()) == []
    assert sorted(os.listdir(tmp_path)) == ["bin", "web01.cfg"]


@pytest.fixture(params=["local", "ssh"])
def any_runner(request):
    """Both runners share run()'s bookkeeping and errors; each test here holds for both."""
    return LocalRunner() if request.param == "local" else request.getfixturevalue("fake_ssh")


def test_failure_message_and_history_are_the_same_for_both_runners(any_runner):
    with pytest.raises(CommandFailed) as info:
        any_runner.run(["/bin/sh", "-c", "echo first >&2; echo '  last words  ' >&2; exit 5"])
    assert str(info.value) == "sh failed (exit 5): last words"
    assert any_runner.run(["sh", "-c", "exit 6"], check=False).rc == 6
    assert [h.rc for h in any_runner.history] == [5, 6]
    assert any_runner.history[0].argv[0] == "/bin/sh"  # what the caller asked for, not the ssh wrapper
    assert any_runner.busy_seconds > 0


def test_timeout_is_the_same_for_both_runners(any_runner):
    with pytest.raises(CommandTimeout) as info:
        any_runner.run(["sleep", "30"], timeout=0.3)
    assert str(info.value) == "sleep did not finish within 0.3 s"
    assert info.value.argv == ["sleep", "30"]
    assert any_runner.busy_seconds >= 0.3
    assert any_runner.history == []  # a timeout leaves no result
