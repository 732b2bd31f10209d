"""A real OpenLDAP slapd for the campus login tests, started in a temporary directory on a free loopback port.

Debian's slapd binary with a slapd.conf of its own (no system config, no
cn=config), the entries of campus.ldif loaded by slapadd, and optionally a
TLS certificate for 127.0.0.1 from a CA made here with openssl (StartTLS).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
LDIF = Path(__file__).with_name("campus.ldif")
SUFFIX = "dc=example,dc=edu"
BIND_DN = f"cn=panel,ou=people,{SUFFIX}"
BIND_PASSWORD = "panel-bind-pass"
INSTRUCTORS = f"cn=instructors,ou=groups,{SUFFIX}"
ADMINS = f"cn=panel-admins,ou=groups,{SUFFIX}"

CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
{tls}
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "cn=root,{suffix}"
rootpw root-pass
directory {dir}/db
access to attrs=userPassword by anonymous auth by self read by * none
access to * by * read
"""


def available() -> bool:
    return os.access(SLAPD, os.X_OK) and os.access(SLAPADD, os.X_OK) and shutil.which("openssl") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_ca_and_cert(where: Path, name: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for `name`, its key), made with openssl."""
    ca_key, ca, key, csr, cert = (where / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=xenpanel test CA")
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    ext = where / "san.cnf"
    ext.write_text(f"subjectAltName=IP:{name}\n" if name[0].isdigit() else f"subjectAltName=DNS:{name}\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))  # fmt: skip
    return ca, cert, key


@dataclass
class Slapd:
    directory: Path
    port: int
    process: subprocess.Popen | None = None
    ca_file: Path | None = None

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.directory / "slapd.log").open("ab")
        self.process = subprocess.Popen(
            [SLAPD, "-f", str(self.directory / "slapd.conf"), "-h", self.uri + "/", "-d", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited: {(self.directory / 'slapd.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("slapd did not listen within 20 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def make_slapd(directory: Path, tls: bool = False) -> Slapd:
    """A slapd set up in `directory` with campus.ldif loaded (not yet started)."""
    (directory / "db").mkdir(parents=True)
    server = Slapd(directory, free_port())
    tls_lines = ""
    if tls:
        server.ca_file, cert, key = make_ca_and_cert(directory)
        tls_lines = f"TLSCACertificateFile {server.ca_file}\nTLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n"
    conf = directory / "slapd.conf"
    conf.write_text(CONF.format(dir=directory, suffix=SUFFIX, tls=tls_lines))
    subprocess.run([SLAPADD, "-f", str(conf), "-l", str(LDIF)], check=True, capture_output=True)
    return server
