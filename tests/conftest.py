"""Shared fixtures: the cast of users every test file uses.

- alice:   a student who owns a guest in ivy's lab
- bob:     another student (in the same lab, with his own guest)
- charlie: an instructor who does not teach ivy's lab
- ivy:     the instructor who owns the lab
- admin:   staff and superuser
"""

from __future__ import annotations

import subprocess

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.utils import translation

from labs.access import INSTRUCTORS_GROUP
from labs.models import Guest, Host, IpPool, Lab, LabTemplate

PASSWORD = "correct horse battery staple"


def pytest_configure(config) -> None:
    # WhiteNoise warns on every request when collectstatic has not run; tests
    # never serve static files, and `make run` runs collectstatic.
    config.addinivalue_line("filterwarnings", "ignore:No directory at:UserWarning")


def pytest_collection_modifyitems(config, items) -> None:
    # The Xen testbed boots once, at its first test, and emulates a whole
    # machine until the run ends: run those tests last (a stable sort keeps
    # their order) so QEMU does not slow the rest of the suite down and a
    # unit-test failure shows up minutes earlier. The testbed's own checks go
    # first among them (when those fail, the others fail for the same
    # reason), the whole product in tests/e2e last.
    def order(item) -> tuple[bool, int]:
        on_testbed = item.get_closest_marker("testbed") is not None
        return on_testbed, {"testbed": 0, "dom0": 1}.get(item.path.parent.name, 2) if on_testbed else 0

    items.sort(key=order)


@pytest.fixture(autouse=True)
def _default_language():
    # LocaleMiddleware activates a request's language in the thread and leaves
    # it there: after a pt-BR request, a later test's gettext (a job's log, a
    # health report) would speak Portuguese, depending on the test order.
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # The production hasher (PBKDF2, 1M rounds) costs ~0.3 s per user and
    # almost every test creates several; what is tested is who may do what.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _user(username: str, **extra) -> User:
    return User.objects.create_user(username, f"{username}@example.edu", PASSWORD, **extra)


@pytest.fixture
def instructors_group(db) -> Group:
    return Group.objects.get_or_create(name=INSTRUCTORS_GROUP)[0]


@pytest.fixture
def alice(db) -> User:
    return _user("alice", first_name="Alice")


@pytest.fixture
def bob(db) -> User:
    return _user("bob", first_name="Bob")


@pytest.fixture
def ivy(instructors_group) -> User:
    u = _user("ivy", first_name="Ivy")
    u.groups.add(instructors_group)
    return u


@pytest.fixture
def charlie(instructors_group) -> User:
    u = _user("charlie", first_name="Charlie")
    u.groups.add(instructors_group)
    return u


@pytest.fixture
def admin_user(db) -> User:
    return _user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def host(db) -> Host:
    return Host.objects.create(
        name="dom0-a", queue_name="dom0-a", volume_group="vg0", total_memory_mb=16384, free_memory_mb=15000
    )


@pytest.fixture
def template(db) -> LabTemplate:
    return LabTemplate.objects.create(
        name="debian-12",
        rootfs_path="/modelo",
        kernel="/boot/vmlinuz",
        ramdisk="/boot/initrd.img",
        root_size_mb=1024,
        swap_size_mb=128,
        default_memory_mb=256,
        max_memory_mb=1024,
    )


@pytest.fixture
def pool(db) -> IpPool:
    return IpPool.objects.create(
        name="net",
        network="10.10.0.0/24",
        gateway="10.10.0.1",
        first_ip="10.10.0.1",
        last_ip="10.10.0.254",
        dns_domain="lab.example.edu",
    )


@pytest.fixture
def lab(ivy, template, pool) -> Lab:
    lab = Lab.objects.create(name="Networks 101", slug="net101", template=template, pool=pool, memory_mb=256)
    lab.instructors.add(ivy)
    return lab


def make_guest(lab: Lab, student: User, host: Host, n: int) -> Guest:
    name = f"{lab.slug}-{student.username}"
    return Guest.objects.create(
        lab=lab,
        student=student,
        host=host,
        pool=lab.pool,
        domain_name=name,
        hostname=name,
        ip=f"10.10.0.{10 + n}",
        mac=f"00:16:3e:00:00:{n:02x}",
        root_lv=f"vm-{name}.raiz",
        swap_lv=f"vm-{name}.swap",
        memory_mb=256,
    )


@pytest.fixture
def alice_guest(lab, alice, host) -> Guest:
    return make_guest(lab, alice, host, 1)


@pytest.fixture
def bob_guest(lab, bob, host) -> Guest:
    return make_guest(lab, bob, host, 2)


@pytest.fixture
def new_ssh_key(tmp_path):
    """new_ssh_key(comment, kind="ed25519", *ssh_keygen_args) -> (public key line, private key path), by ssh-keygen."""
    made = iter(range(1000))

    def make(comment: str, kind: str = "ed25519", *args: str):
        path = tmp_path / f"key{next(made)}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, *args, "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
        )
        return path.with_name(path.name + ".pub").read_text().strip(), path

    return make
