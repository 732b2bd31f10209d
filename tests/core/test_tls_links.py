"""Encrypted and verified links to Redis and PostgreSQL: `rediss://` with a CA, `sslmode=verify-full`.

A real redis-server with a TLS port and a throwaway PostgreSQL cluster with
ssl=on (initdb + pg_ctl), both with a certificate from a CA this test makes.
The panel (or a dom0, with its own credentials) connects through its
settings as configured from the environment, and a wrong CA or a wrong host
name is refused: the link is verified, not only encrypted.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pgcluster import cluster

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca_and_server_cert(d: Path, name: str = "ca") -> tuple[Path, Path, Path]:
    """A CA and a server certificate for DNS name localhost (only: 127.0.0.1 must not verify)."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl(
        *f"req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN={name} -keyout {name}.key -out {name}.pem".split(),
        cwd=d,
    )
    _openssl(*"req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr".split(), cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    sign = f"x509 -req -in server.csr -CA {name}.pem -CAkey {name}.key -CAcreateserial -days 2 -extfile san.ext"
    _openssl(*sign.split(), "-out", "server.pem", cwd=d)
    return d / f"{name}.pem", d / "server.pem", d / "server.key"


def _settings_check(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run `code` after django.setup() with these settings from the environment."""
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    clean.update(DJANGO_SETTINGS_MODULE="xenpanel.settings", SECRET_KEY="k", **env)
    clean.setdefault("DATABASE_URL", "sqlite:///:memory:")
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def tls_redis(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    ca, cert, key = _ca_and_server_cert(tmp_path / "pki")
    port = _free_port()
    args = f"--port 0 --tls-port {port} --bind 127.0.0.1 --appendonly no --dir {tmp_path} --tls-cert-file {cert}"
    args += f" --tls-key-file {key} --tls-ca-cert-file {ca} --tls-auth-clients no"
    proc = subprocess.Popen(
        ["redis-server", *args.split(), "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        assert time.monotonic() < deadline and proc.poll() is None, "redis-server with TLS did not start"
        time.sleep(0.05)
    yield port, ca
    proc.terminate()
    proc.wait(10)


PING = "from labs.services import queueing; print(queueing.redis_connection('dom0-a').ping())"


def test_rediss_with_the_ca_verifies_and_a_wrong_ca_is_refused(tls_redis, tmp_path):
    port, ca = tls_redis
    url = f"rediss://localhost:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    ok = _settings_check(PING, REDIS_URL=url)
    assert ok.returncode == 0 and ok.stdout.strip() == "True", ok.stderr
    other_ca, _, _ = _ca_and_server_cert(tmp_path / "other", "other-ca")
    bad = _settings_check(PING, REDIS_URL=url.replace(str(ca), str(other_ca)))
    assert bad.returncode != 0 and "certificate verify failed" in bad.stderr
    # Plain redis:// to a TLS-only port gets nowhere.
    plain = _settings_check(PING, REDIS_URL=f"redis://localhost:{port}/0")
    assert plain.returncode != 0


@pytest.fixture
def tls_postgres():
    made: dict[str, Path] = {}

    def certificates(base: Path) -> None:
        made["ca"], cert, key = _ca_and_server_cert(base / "pki")
        for f in (cert, key):
            shutil.chown(f, "postgres")
        key.chmod(0o600)
        made["cert"], made["key"] = cert, key

    pki = Path(f"/tmp/xenpanel-tls-pg-{os.getpid()}") / "pki"
    conf = f"ssl = on\nssl_cert_file = '{pki}/server.pem'\nssl_key_file = '{pki}/server.key'\n"
    # Only TLS connections over TCP.
    with cluster("tls", conf, "local all all trust\nhostssl all all 127.0.0.1/32 trust\n", certificates) as c:
        yield c.port, made["ca"]


SSL_IN_USE = (
    "from django.db import connection\n"
    "with connection.cursor() as c:\n"
    "    c.execute('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')\n"
    "    print(c.fetchone()[0])"
)


def test_postgres_verify_full_with_the_ca_and_refusals(tls_postgres, tmp_path):
    port, ca = tls_postgres
    url = f"postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
    ok = _settings_check(SSL_IN_USE, DATABASE_URL=url)
    assert ok.returncode == 0 and ok.stdout.strip() == "True", ok.stderr
    # The certificate names localhost, not 127.0.0.1: verify-full checks the name too.
    wrong_name = _settings_check(SSL_IN_USE, DATABASE_URL=url.replace("@localhost:", "@127.0.0.1:"))
    assert wrong_name.returncode != 0 and "does not match host name" in wrong_name.stderr
    other_ca, _, _ = _ca_and_server_cert(tmp_path / "other", "other-ca")
    wrong_ca = _settings_check(SSL_IN_USE, DATABASE_URL=url.replace(str(ca), str(other_ca)))
    assert wrong_ca.returncode != 0 and "certificate verify failed" in wrong_ca.stderr
