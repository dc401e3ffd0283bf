"""TARS' six service models (tests/tars_models.py, equivalent field for field
to TARS' own) against the real binary's built-in schemas and a mosquitto on
its default settings: each loads over REST, takes a live update and loads from
its on-disk copy with the manager down. Also: a secret unset on the manager
fits ``eleven_api_key: str = ""``; a value that fails the model is reported
(``rejected`` / ``invalid_config`` with the field's name, never its value) and
logged by name; a pinned field keeps its inherited value and is reported."""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as paho
import pytest
from pydantic import BaseModel, Field

from config_manager_client import ConfigLibrary, ConfigSource
from harness import TTS_TOKEN, WRITE_TOKEN, Broker, Manager, MissingTool, binary_path, wait_until
from tars_models import MODELS, TTSWorkerConfig

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "contracts/mqtt-applied-state.schema.json").read_text()
)
#: Per service, one field changed live to a value other than its default.
CHANGES: dict[str, tuple[str, Any]] = {
    "llm-worker": ("llm_timeout_sec", 45.5),
    "memory-worker": ("memory_top_k", 7),
    "router": ("router_stream_max_chars", 321),
    "stt-worker": ("vad_threshold", 0.75),
    "tts-worker": ("tts_aggregate_debounce_ms", 250),
    "wake-activation": ("wake_detection_threshold", 0.65),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Manager]]:
    tmp = tmp_path_factory.mktemp("tars")
    try:
        binary_path()
        broker = Broker(tmp).start()  # mosquitto defaults: no set_tcp_nodelay
    except MissingTool as e:
        pytest.fail(str(e))  # never silently skipped
    manager = Manager(tmp / "manager", broker.url)
    manager.dir.mkdir()
    manager.start()
    yield broker, manager
    manager.kill()
    broker.stop()


class Reports:
    """Every applied-state report of one service, as the broker delivers it."""

    def __init__(self, port: int, service: str) -> None:
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        version = getattr(paho, "CallbackAPIVersion", None)
        self.client = paho.Client(version.VERSION2) if version else paho.Client()
        self.client.on_message = lambda _c, _u, m: self.messages.put(json.loads(m.payload))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(f"system/config/{service}/applied/+", qos=1)
        assert subscribed.wait(30), "SUBACK"

    async def until(self, instance: str, pred: Any) -> dict[str, Any]:
        """The first report of ``instance`` for which ``pred`` holds."""
        while True:
            report = await asyncio.to_thread(self.messages.get, True, 30)
            jsonschema.validate(report, SCHEMA, format_checker=jsonschema.FormatChecker())
            if report["instance_id"] == instance and pred(report):
                return report

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def rest_config(manager: Manager, service: str, token: str = WRITE_TOKEN) -> dict[str, Any]:
    r = manager.http.get(f"/services/{service}", headers={"X-API-Token": token})
    r.raise_for_status()
    return dict(r.json()["config"])


def instance_view(manager: Manager, service: str, instance: str) -> dict[str, Any] | None:
    """The instance's entry in ``GET /services/<service>/instances``."""
    r = manager.http.get(f"/services/{service}/instances", headers={"X-API-Token": WRITE_TOKEN})
    r.raise_for_status()
    for entry in r.json()["instances"]:
        if entry["instance_id"] == instance:
            return dict(entry)
    return None


async def view_until(manager: Manager, instance: str, pred: Any) -> dict[str, Any]:
    """The instances view entry once ``pred`` holds (the manager's
    subscriber takes the report asynchronously)."""
    found: list[dict[str, Any]] = []

    def check() -> bool:
        entry = instance_view(manager, "tts-worker", instance)
        if entry is not None and pred(entry):
            found.append(entry)
            return True
        return False

    await wait_until(check, f"instances view of {instance}")
    return found[0]


def cached_version(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["envelope"]["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


@pytest.mark.parametrize("service", list(MODELS))
def test_tars_model_loads_over_rest_updates_live_and_loads_from_its_copy(
    stack: tuple[Broker, Manager], tmp_path: Path, service: str
) -> None:
    broker, manager = stack
    model = MODELS[service]
    field, value = CHANGES[service]
    token = TTS_TOKEN if service == "tts-worker" else WRITE_TOKEN
    cache_path = tmp_path / f"{service}.json"
    instance = f"py-{service}"

    async def go() -> None:
        reports = Reports(broker.port, service)
        lib = ConfigLibrary(
            service,
            cache_path=cache_path,
            mqtt_url=broker.url,
            signature_public_key=manager.public_key(),
            manager_url=manager.base,
            api_token=token,
            instance_id=instance,
            environ={},
        )
        await lib.initialize()
        assert lib.source is ConfigSource.REST
        first = await lib.get_config(model)
        held = rest_config(manager, service, token)
        for name in model.model_fields:
            expected = held.get(name, model.model_fields[name].default)
            assert getattr(first, name) == expected, name
        seen: list[BaseModel] = []
        await lib.subscribe_updates(seen.append, model)
        await reports.until(instance, lambda r: r["status"] == "applied")
        version = manager.patch({field: value}, service)
        await wait_until(lambda: any(getattr(c, field) == value for c in seen), "callback")
        report = await reports.until(instance, lambda r: r["version"] == version)
        assert report["status"] == "applied", report
        assert "fields" not in report
        await wait_until(lambda: cached_version(cache_path) == version, "on-disk copy")
        assert lib.counters.snapshot()["rejected_total"] == 0
        await lib.close()
        reports.stop()

        # The manager unreachable: the verified on-disk copy.
        offline = ConfigLibrary(
            service,
            cache_path=cache_path,
            signature_public_key=manager.public_key(),
            manager_url="http://127.0.0.1:9",
            instance_id=instance,
            environ={},
        )
        await offline.initialize()
        assert offline.source is ConfigSource.LKG
        from_disk = await offline.get_config(model)
        assert getattr(from_disk, field) == value
        assert offline.last_report is not None
        assert offline.last_report["status"] == "applied"
        await offline.close()

    asyncio.run(go())


def test_unset_secret_is_absent_and_the_model_default_applies(
    stack: tuple[Broker, Manager], tmp_path: Path
) -> None:
    _broker, manager = stack
    for token in (TTS_TOKEN, WRITE_TOKEN):  # clear text for the scoped token, masked otherwise
        assert "eleven_api_key" not in rest_config(manager, "tts-worker", token)
    assert "openai_api_key" not in rest_config(manager, "llm-worker")

    async def go() -> None:
        lib = ConfigLibrary(
            "tts-worker",
            cache_path=tmp_path / "c.json",
            signature_public_key=manager.public_key(),
            manager_url=manager.base,
            api_token=TTS_TOKEN,
            environ={},
        )
        await lib.initialize()
        cfg = await lib.get_config(TTSWorkerConfig)
        assert cfg.eleven_api_key == ""
        assert lib.last_report is not None
        assert lib.last_report["status"] == "applied"
        await lib.close()

    asyncio.run(go())


class StrictTts(BaseModel):
    """A service model stricter than the manager's schema (max 200)."""

    volume_percent: int = Field(default=100, ge=0, le=100)
    tts_provider: str = "piper"


def live_tts_library(
    broker: Broker, manager: Manager, tmp_path: Path, instance: str, environ: dict[str, str]
) -> ConfigLibrary:
    """tts-worker's library against the live manager and broker, as `instance`."""
    return ConfigLibrary(
        "tts-worker",
        cache_path=tmp_path / "c.json",
        mqtt_url=broker.url,
        signature_public_key=manager.public_key(),
        manager_url=manager.base,
        api_token=TTS_TOKEN,
        instance_id=instance,
        environ=environ,
    )


def test_value_that_does_not_fit_is_reported_and_logged_by_name(
    stack: tuple[Broker, Manager], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker, manager = stack
    bad = manager.patch({"volume_percent": 187})
    instance = "py-strict"

    async def go() -> None:
        reports = Reports(broker.port, "tts-worker")
        lib = live_tts_library(broker, manager, tmp_path, instance, {})
        await lib.initialize()
        with caplog.at_level(logging.ERROR, logger="config_manager_client"):
            cfg = await lib.get_config(StrictTts)
        assert cfg.volume_percent == 100  # the failing field on its default
        # Start-up: it does not run that version.
        report = await reports.until(instance, lambda r: r["status"] == "rejected")
        assert (report["reason"], report["rejected_version"]) == ("invalid_config", bad)
        assert (report["version"], report["fields"]) == (None, ["volume_percent"])
        entry = await view_until(manager, instance, lambda e: e["status"] == "rejected")
        assert (entry["state"], entry["reason"]) == ("rejected", "invalid_config")
        assert entry["fields"] == ["volume_percent"]
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "volume_percent" in logged
        assert "187" not in logged  # names, never values
        seen: list[StrictTts] = []
        await lib.subscribe_updates(seen.append, StrictTts)
        good = manager.patch({"volume_percent": 80})
        report = await reports.until(instance, lambda r: r["status"] == "applied")
        assert report["version"] == good
        assert [c.volume_percent for c in seen] == [80]
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="config_manager_client"):
            refused = manager.patch({"volume_percent": 150})
            report = await reports.until(instance, lambda r: r["status"] == "rejected")
        # Live: it keeps the older version, and says so.
        assert (report["version"], report["rejected_version"]) == (good, refused)
        assert (report["reason"], report["fields"]) == ("invalid_config", ["volume_percent"])
        assert "volume_percent" in caplog.text
        assert "150" not in caplog.text.replace(str(refused), "")
        assert (await lib.get_config(StrictTts)).volume_percent == 80
        await lib.close()
        reports.stop()

    asyncio.run(go())


def test_pinned_field_keeps_its_inherited_value_and_is_reported(
    stack: tuple[Broker, Manager], tmp_path: Path
) -> None:
    broker, manager = stack
    instance = "py-pinned"
    environ = {
        # TARS' stock .env, passed to every container.
        "TTS_AGGREGATE_DEBOUNCE_MS": "150",
        "PIPER_VOICE": "en_GB-from-env",
        "CONFIG_PINNED_ENV": "TTS_AGGREGATE_DEBOUNCE_MS",
    }

    async def go() -> None:
        reports = Reports(broker.port, "tts-worker")
        lib = live_tts_library(broker, manager, tmp_path, instance, environ)
        await lib.initialize()
        seen: list[TTSWorkerConfig] = []
        await lib.subscribe_updates(seen.append, TTSWorkerConfig)
        await reports.until(instance, lambda r: r["status"] == "applied")
        version = manager.patch({"tts_aggregate_debounce_ms": 400, "piper_voice": "en_US-amy"})
        report = await reports.until(instance, lambda r: r["version"] == version)
        assert report["status"] == "applied"
        assert report["pinned"] == {"tts_aggregate_debounce_ms": "TTS_AGGREGATE_DEBOUNCE_MS"}
        assert seen[-1].tts_aggregate_debounce_ms == 150  # pinned: the inherited value
        assert seen[-1].piper_voice == "en_US-amy"  # not pinned: the manager wins
        # The operator sees why the change did not take effect.
        entry = await view_until(manager, instance, lambda e: e["version"] == version)
        assert entry["pinned"] == {"tts_aggregate_debounce_ms": "TTS_AGGREGATE_DEBOUNCE_MS"}
        assert entry["client"]["name"] == "tars-config-client"
        await lib.close()
        reports.stop()

    asyncio.run(go())
