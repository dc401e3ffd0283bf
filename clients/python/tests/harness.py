"""Real parts for the integration tests and the benchmark: the config-manager
binary of this repository and a mosquitto broker, each on a free loopback
port in a temporary directory (as crates/config-manager/tests/common does)."""

from __future__ import annotations

import asyncio
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


def wait_port(port: int, what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} never accepted on port {port}:\n{log.read_text()}"
                ) from None
            time.sleep(0.02)


class Broker:
    """mosquitto without persistence: a restart forgets retained messages."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        if not Path(MOSQUITTO).is_file():
            raise MissingTool(
                f"mosquitto not found ({MOSQUITTO}): install it with "
                "`apt-get install -y mosquitto mosquitto-clients` (scripts/test.sh does this)"
            )
        self.dir = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            f"allow_anonymous true\npersistence false\nlog_dest stderr\n"
            f"listener {self.port} 127.0.0.1\n"
        )
        log = self.dir / "mosquitto.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=out
            )
        wait_port(self.port, "mosquitto", log)
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
        wait_port(self.port, "config-manager", log)
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
