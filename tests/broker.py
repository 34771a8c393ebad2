"""A real mosquitto on a free loopback port, for tests (plain, password, TLS)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from required_tools import missing

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, workdir: Path, *, port: int | None = None, users: dict[str, str] | None = None,
                 tls: bool = False, persistent: bool = False) -> None:
        if not Path(MOSQUITTO).exists():
            missing("mosquitto")
        self.dir = workdir
        self.port = port or free_port()
        self.users = users
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.ca_file: Path | None = None
        conf = [f"listener {self.port} 127.0.0.1"]
        if os.geteuid() == 0:
            conf += ["user root"]  # else it drops to 'mosquitto', which cannot read tmp files
        if persistent:
            conf += ["persistence true", f"persistence_location {workdir}/", "autosave_interval 1"]
        else:
            conf += ["persistence false"]
        if users:
            pwfile = workdir / "passwd"
            pwfile.write_text("")
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pwfile), user, password], check=True,
                               capture_output=True)
            conf += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            conf += ["allow_anonymous true"]
        if tls:
            self.ca_file, cert, key = make_test_pki(workdir)
            conf += [f"cafile {self.ca_file}", f"certfile {cert}", f"keyfile {key}"]
        (workdir / "mosquitto.conf").write_text("\n".join(conf) + "\n")

    def start(self) -> Broker:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()}")
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def make_test_pki(workdir: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1/localhost."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sep test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = workdir / "ca.pem", workdir / "server.pem", workdir / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return paths
