"""Real parts for the integration tests and the benchmark: the config-manager
binary of this repository and a mosquitto broker, each on a free loopback
port in a temporary directory (as crates/config-manager/tests/common does)."""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[3]
WRITE_TOKEN = "writer-token-0123456789"
TTS_TOKEN = "tts-scoped-token-0123456789"
REBUILD_TOKEN = "rebuild-token-0123456789"
MOSQUITTO = os.environ.get("MOSQUITTO_BIN") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


class MissingTool(RuntimeError):
    """A component the integration tests need is not installed."""


def binary_path() -> Path:
    """``CONFIG_MANAGER_BIN``, else this worktree's debug build."""
    path = Path(os.environ.get("CONFIG_MANAGER_BIN") or REPO / "target/debug/config-manager")
    if not path.is_file():
        raise MissingTool(
            f"config-manager binary not found at {path}: run `cargo build -p config-manager` "
            "or set CONFIG_MANAGER_BIN (scripts/test.sh python does both)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int,
    what: str,
    log: Path,
    proc: subprocess.Popen[bytes] | None = None,
    timeout: float = 30.0,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} never accepted on port {port}:\n{log.read_text()}"
                ) from None
            time.sleep(0.02)


def make_certificates(directory: Path) -> Path:
    """A throwaway CA and a server certificate for IP 127.0.0.1 (P-256);
    returns the CA file. Written as ca.pem, server.pem, server.key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tars-config-client test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return directory / "ca.pem"


class Broker:
    """mosquitto without persistence: a restart forgets retained messages.
    Optionally with a TLS listener (``tls_port``, CA in ``ca_file``) and a
    password file (``user``/``password``; anonymous clients refused)."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        tls: bool = False,
        user: tuple[str, str] | None = None,
    ) -> None:
        if not Path(MOSQUITTO).is_file() or (user and not Path(MOSQUITTO_PASSWD).is_file()):
            raise MissingTool(
                f"mosquitto not found ({MOSQUITTO}): install it with "
                "`apt-get install -y mosquitto mosquitto-clients` (scripts/test.sh does this)"
            )
        self.dir = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls_port = free_port() if tls else None
        self.ca_file = make_certificates(directory) if tls else None
        self.user = user

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        conf = self.dir / "mosquitto.conf"
        text = f"persistence false\nlog_dest stderr\nlistener {self.port} 127.0.0.1\n"
        if self.user is not None:
            passwd = self.dir / "passwd"
            passwd.write_text("")
            subprocess.run(
                [MOSQUITTO_PASSWD, "-b", str(passwd), *self.user],
                check=True,
                capture_output=True,
            )
            # mosquitto started as root drops to its own user, which cannot
            # read a private temporary directory: keep the current user.
            text = (
                f"user {getpass.getuser()}\nallow_anonymous false\npassword_file {passwd}\n" + text
            )
        else:
            text = "allow_anonymous true\n" + text
        if self.tls_port is not None:
            d = self.dir
            text += (
                f"listener {self.tls_port} 127.0.0.1\ncafile {d}/ca.pem\n"
                f"certfile {d}/server.pem\nkeyfile {d}/server.key\n"
            )
        conf.write_text(text)
        log = self.dir / "mosquitto.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=out
            )
        wait_port(self.port, "mosquitto", log, self.proc)
        if self.tls_port is not None:
            wait_port(self.tls_port, "mosquitto (TLS)", log, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def read_env_value(path: Path, name: str) -> str:
    """One value of the manager's generated .env (``KEY="..."``, \\n escaped)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(name + "="):
            raw = line[len(name) + 1 :]
            if raw.startswith('"') and raw.endswith('"'):
                raw = raw[1:-1]
            return raw.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
    raise KeyError(name)


class Manager:
    """The config-manager binary with the test tokens."""

    def __init__(self, directory: Path, mqtt_url: str | None, **extra_env: str) -> None:
        self.dir = directory
        self.port = free_port()
        self.mqtt_url = mqtt_url
        self.extra_env = extra_env
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.base + "/api/config", timeout=30)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Manager:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "CONFIG_ENV_FILE": str(self.dir / ".env"),
            "CONFIG_DB_PATH": str(self.dir / "data/config.db"),
            "CONFIG_LKG_CACHE_PATH": str(self.dir / "data/lkg.json"),
            "CONFIG_MANAGER_PORT": str(self.port),
            "CONFIG_API_TOKENS": f"writer={WRITE_TOKEN}:config.write,"
            f"tts={TTS_TOKEN}:config.read:tts-worker",
            "REBUILD_TOKEN": REBUILD_TOKEN,
            "RUST_LOG": "info",
            **self.extra_env,
        }
        if self.mqtt_url:
            env["MQTT_URL"] = self.mqtt_url
        log = self.dir / "server.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(binary_path()), "serve"], cwd=self.dir, env=env, stdout=out, stderr=out
            )
        wait_port(self.port, "config-manager", log, self.proc)
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def public_key(self) -> str:
        return read_env_value(self.dir / ".env", "CONFIG_SIGNATURE_PUBLIC_KEY")

    def version(self, service: str = "tts-worker") -> int:
        r = self.http.get(f"/services/{service}", headers={"X-API-Token": WRITE_TOKEN})
        r.raise_for_status()
        return int(r.json()["version"])

    def patch(self, config: dict[str, Any], service: str = "tts-worker") -> int:
        r = self.http.patch(
            f"/services/{service}",
            headers={"X-API-Token": WRITE_TOKEN},
            json={"config": config, "version": self.version(service), "reason": "test"},
        )
        assert r.status_code == 200, r.text
        return int(r.json()["version"])

    def rebuild(self) -> str:
        r = self.http.post(
            "/rebuild", headers={"X-API-Token": WRITE_TOKEN}, json={"token": REBUILD_TOKEN}
        )
        assert r.status_code == 202, r.text
        return str(r.json()["tombstone"]["new_epoch"])

    def log(self) -> str:
        return (self.dir / "server.log").read_text(errors="replace")


async def wait_until(cond: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Polls ``cond`` (generous timeout, not a duration assertion)."""
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
