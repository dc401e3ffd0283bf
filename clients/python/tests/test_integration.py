"""The client against the real config-manager binary and a real mosquitto:
REST load, a PATCH reaching the callback, a broker restart, a killed manager
(start from the on-disk copy), a forged message published straight to the
broker, and a new epoch after a rebuild."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from config_manager_client import ConfigLibrary, ConfigSource, TrustedKeys
from harness import TTS_TOKEN, Broker, Manager, MissingTool, binary_path, wait_until
from helpers import sign


class TTSWorkerConfig(BaseModel):
    volume_percent: int = 100
    tts_provider: str = "piper"
    piper_voice: str = "default"
    eleven_api_key: str = ""  # as TARS declares it: an unset secret must fit


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Broker, Manager]]:
    try:
        binary_path()
        broker = Broker(tmp_path).start()
    except MissingTool as e:
        pytest.fail(str(e))  # never silently skipped
    manager = Manager(tmp_path / "manager", broker.url)
    manager.dir.mkdir()
    manager.start()
    yield broker, manager
    manager.kill()
    broker.stop()


def client(manager: Manager, tmp_path: Path, broker: Broker, **kw: Any) -> ConfigLibrary:
    return ConfigLibrary(
        "tts-worker",
        cache_path=tmp_path / "client-cache" / "tts-worker.json",
        mqtt_url=broker.url,
        signature_public_key=manager.public_key(),
        manager_url=manager.base,
        api_token=TTS_TOKEN,
        environ={},
        **kw,
    )


def publish(port: int, payload: bytes) -> None:
    """Publishes straight to the broker, as an attacker on the network would."""
    version = getattr(paho, "CallbackAPIVersion", None)
    c = paho.Client(version.VERSION2) if version else paho.Client()
    c.connect("127.0.0.1", port)
    c.loop_start()
    info = c.publish("system/config/tts-worker", payload, qos=1)
    info.wait_for_publish(timeout=10)
    c.loop_stop()
    c.disconnect()


def test_rest_load_then_patch_reaches_the_callback_keeping_the_secret(
    parts: tuple[Broker, Manager], tmp_path: Path
) -> None:
    broker, manager = parts
    manager.patch({"eleven_api_key": "sk-live-123456"})

    async def go() -> None:
        async with client(manager, tmp_path, broker) as lib:
            cfg = await lib.get_config(TTSWorkerConfig)
            assert lib.source is ConfigSource.REST
            assert not lib.is_read_only
            assert cfg.eleven_api_key == "sk-live-123456"  # scoped token brings the secret
            seen: list[TTSWorkerConfig] = []
            await lib.subscribe_updates(seen.append, TTSWorkerConfig)
            await wait_until(lambda: lib.mqtt_connected, "MQTT connection")
            version = manager.patch({"volume_percent": 61})
            await wait_until(lambda: any(c.volume_percent == 61 for c in seen), "callback")
            assert seen[-1].eleven_api_key == "sk-live-123456"  # omitted in MQTT, kept
            assert lib.applied is not None
            assert lib.applied.version == version, (lib.applied, seen, lib.counters.snapshot())
            assert (await lib.get_config(TTSWorkerConfig)).volume_percent == 61
            assert lib.counters.snapshot()["rejected_total"] == 0
            path = tmp_path / "client-cache" / "tts-worker.json"

            def cached_version() -> int:
                try:
                    return int(json.loads(path.read_text())["envelope"]["version"])
                except (OSError, ValueError):
                    return 0

            await wait_until(lambda: cached_version() == version, "on-disk copy")
            assert "sk-live-123456" not in path.read_text()  # never a plaintext secret on disk

    asyncio.run(go())


def test_broker_down_at_start_and_restarted_later(
    parts: tuple[Broker, Manager], tmp_path: Path
) -> None:
    broker, manager = parts

    async def go() -> None:
        broker.stop()
        lib = client(manager, tmp_path, broker)
        started = time.monotonic()
        await lib.initialize()
        cfg = await lib.get_config(TTSWorkerConfig)  # does not wait for the broker
        assert cfg.volume_percent == 100
        assert time.monotonic() - started < 30  # generous: just "did not hang"
        seen: list[TTSWorkerConfig] = []
        await lib.subscribe_updates(seen.append, TTSWorkerConfig)
        broker.start()
        await wait_until(lambda: lib.mqtt_connected, "first connection", 60)
        manager.patch({"volume_percent": 42})
        await wait_until(lambda: any(c.volume_percent == 42 for c in seen), "update 42")
        # Restart: the broker forgets retained messages and drops the client.
        broker.stop()
        await wait_until(lambda: not lib.mqtt_connected, "disconnect")
        broker.start()
        await wait_until(lambda: lib.mqtt_connected, "reconnect", 60)
        manager.patch({"volume_percent": 43})
        await wait_until(lambda: any(c.volume_percent == 43 for c in seen), "update 43", 60)
        await lib.close()

    asyncio.run(go())


def test_killed_manager_start_from_the_on_disk_copy(
    parts: tuple[Broker, Manager], tmp_path: Path
) -> None:
    broker, manager = parts

    async def go() -> None:
        async with client(manager, tmp_path, broker) as lib:
            seen: list[TTSWorkerConfig] = []
            await lib.subscribe_updates(seen.append, TTSWorkerConfig)
            version = manager.patch({"volume_percent": 37, "piper_voice": "en_GB-alba"})
            await wait_until(lambda: any(c.volume_percent == 37 for c in seen), "update")
        manager.kill()
        async with client(manager, tmp_path, broker) as lib:
            cfg = await lib.get_config(TTSWorkerConfig)
            assert lib.source is ConfigSource.LKG
            assert lib.is_read_only
            assert (cfg.volume_percent, cfg.piper_voice) == (37, "en_GB-alba")
            assert lib.applied is not None
            assert lib.applied.version == version
            # The dead manager's retained message is the same version: ignored.
            await wait_until(lambda: lib.counters.snapshot()["ignored"] >= 1, "retained re-issue")
            assert lib.counters.snapshot()["rejected_total"] == 0

    asyncio.run(go())


def test_forged_message_on_the_broker_is_rejected_and_counted(
    parts: tuple[Broker, Manager], tmp_path: Path
) -> None:
    broker, manager = parts

    async def go() -> None:
        async with client(manager, tmp_path, broker) as lib:
            seen: list[TTSWorkerConfig] = []
            await lib.subscribe_updates(seen.append, TTSWorkerConfig)
            await wait_until(lambda: lib.mqtt_connected, "MQTT connection")
            assert lib.applied is not None
            epoch, version = lib.applied.epoch, lib.applied.version
            now = datetime.now(UTC)
            forged = sign(
                {"volume_percent": 0},
                version=version + 1,
                epoch=epoch,
                issued=now,
                key=Ed25519PrivateKey.generate(),
            )
            publish(broker.port, forged)
            # A real-looking one: the attacker copies the trusted key id.
            doc = json.loads(forged)
            doc["key_id"] = TrustedKeys.from_pem(manager.public_key(), "manager").ids[0]
            publish(broker.port, json.dumps(doc).encode())
            publish(broker.port, base64.b64encode(b"not json at all"))
            await wait_until(
                lambda: lib.counters.snapshot()["rejected_total"] >= 3, "three rejections"
            )
            rejected = lib.counters.snapshot()["rejected"]
            assert rejected == {"unknown_key": 1, "bad_signature": 1, "not_json": 1}
            assert seen == []
            assert (await lib.get_config(TTSWorkerConfig)).volume_percent == 100
            assert lib.applied.version == version

    asyncio.run(go())


def test_new_epoch_after_rebuild_is_accepted_with_an_older_version(
    parts: tuple[Broker, Manager], tmp_path: Path
) -> None:
    broker, manager = parts

    async def go() -> None:
        async with client(manager, tmp_path, broker) as lib:
            seen: list[TTSWorkerConfig] = []
            await lib.subscribe_updates(seen.append, TTSWorkerConfig)
            manager.patch({"volume_percent": 20})
            v3 = manager.patch({"volume_percent": 30})
            await wait_until(lambda: lib.applied is not None and lib.applied.version == v3, "v3")
            old_epoch = lib.applied.epoch if lib.applied else ""
            new_epoch = manager.rebuild()
            assert new_epoch != old_epoch
            await wait_until(
                lambda: lib.applied is not None and lib.applied.epoch == new_epoch, "new epoch"
            )
            assert lib.applied is not None
            assert lib.applied.version < v3  # versions restarted in the new epoch
            # Version order now follows the new epoch.
            manager.patch({"volume_percent": 25})
            await wait_until(lambda: any(c.volume_percent == 25 for c in seen), "update")
            assert lib.counters.snapshot()["rejected_total"] == 0

    asyncio.run(go())


def test_example_worker_follows_a_patch(parts: tuple[Broker, Manager], tmp_path: Path) -> None:
    """examples/tts_worker.py, run as a reader would: its module-level
    settings change when the manager's config does."""
    import os
    import queue
    import signal
    import subprocess
    import sys
    import threading

    broker, manager = parts
    example = Path(__file__).resolve().parents[1] / "examples" / "tts_worker.py"
    env = {
        **os.environ,
        "CONFIG_MANAGER_URL": manager.base,
        "CONFIG_API_TOKEN": TTS_TOKEN,
        "MQTT_URL": broker.url,
        "CONFIG_SIGNATURE_PUBLIC_KEY": manager.public_key(),
        "CONFIG_CACHE_PATH": str(tmp_path / "example-cache.json"),
    }
    proc = subprocess.Popen(
        [sys.executable, str(example)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    seen: list[str] = []

    def wait_line(part: str) -> None:
        deadline = time.monotonic() + 30
        while not any(part in line for line in seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (proc.poll() is not None and lines.empty()):
                raise AssertionError(f"no line with {part!r}:\n{''.join(seen)}")
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=min(remaining, 1)))

    try:
        wait_line("started from rest")
        wait_line("connected to the MQTT broker")
        manager.patch({"volume_percent": 55, "tts_provider": "elevenlabs"})
        wait_line("updated: provider=elevenlabs voice=/voices/TARS.onnx volume=55")
        proc.send_signal(signal.SIGTERM)
        wait_line("counters:")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_mqtts_with_user_and_password(tmp_path: Path) -> None:
    """mqtts:// with a private CA (MQTT_CA_FILE) and %-escaped credentials;
    a wrong password never connects but never blocks get_config either."""
    try:
        binary_path()
        broker = Broker(tmp_path, tls=True, user=("tars", "p@ss:word")).start()
    except MissingTool as e:
        pytest.fail(str(e))
    manager = Manager(tmp_path / "manager", f"mqtt://tars:p%40ss%3Aword@127.0.0.1:{broker.port}")
    manager.dir.mkdir()
    manager.start()

    def tls_client(password: str, cache: str) -> ConfigLibrary:
        return ConfigLibrary(
            "tts-worker",
            cache_path=tmp_path / cache,
            mqtt_url=f"mqtts://tars:{password}@127.0.0.1:{broker.tls_port}",
            signature_public_key=manager.public_key(),
            manager_url=manager.base,
            api_token=TTS_TOKEN,
            environ={"MQTT_CA_FILE": str(broker.ca_file)},
        )

    async def go() -> None:
        async with (
            tls_client("p%40ss%3Aword", "a.json") as good,
            tls_client("wrong", "b.json") as bad,
        ):
            seen: list[TTSWorkerConfig] = []
            await good.subscribe_updates(seen.append, TTSWorkerConfig)
            assert (await bad.get_config(TTSWorkerConfig)).volume_percent == 100
            await wait_until(lambda: good.mqtt_connected, "TLS connection")
            manager.patch({"volume_percent": 77})
            await wait_until(lambda: any(c.volume_percent == 77 for c in seen), "update over TLS")
            assert not bad.mqtt_connected
            assert bad.counters.snapshot()["applied"] == 0

    try:
        asyncio.run(go())
    finally:
        manager.kill()
        broker.stop()
