"""Applied-state reports (contracts/README.md, "Applied state"): the default
instance id, the settings, the report builder against the JSON Schema, and
the library against a real mosquitto: applied at start-up and after an
update, rejected for each kind of refusal, offline on a clean stop and
through the last will of a killed process, and nothing with reporting off."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as paho
import pytest
from pydantic import BaseModel, Field

from config_manager_client import AppliedState, ConfigLibrary, SettingsError, envelope
from config_manager_client import cache as disk
from config_manager_client.report import (
    CLIENT_NAME,
    Reporter,
    default_instance_id,
    host_name,
)
from config_manager_client.settings import build_settings
from harness import Broker, MissingTool, wait_until
from helpers import EPOCH_A, public_pem, sign, trusted_key

REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "contracts/mqtt-applied-state.schema.json").read_text())
REPORTS = "system/config/tts-worker/applied/+"
PEM = public_pem(trusted_key())


def valid(report: dict[str, Any]) -> dict[str, Any]:
    jsonschema.validate(report, SCHEMA, format_checker=jsonschema.FormatChecker())
    return report


# ------------------------------------------------------------------ units


def test_default_instance_id_rule() -> None:
    assert default_instance_id("Robot-7.local", "tts-worker") == "robot-7-local-tts-worker"
    assert default_instance_id("", "tts-worker") == "tts-worker"
    assert default_instance_id("--", "tts-worker") == "tts-worker"
    # Non-ASCII characters become one '-' each; 'İ' is not lower-cased into two.
    assert default_instance_id("Ä\u0130b", "stt") == "b-stt"
    long = default_instance_id("h" * 200, "tts-worker")
    assert len(long) == 64
    assert long.endswith("-tts-worker")


def test_instance_id_and_reporting_settings() -> None:
    base = {"CONFIG_SIGNATURE_PUBLIC_KEY": PEM}
    s = build_settings("tts-worker", envmap=base)
    assert s.report_applied
    assert s.instance_id == default_instance_id(host_name(), "tts-worker")
    s = build_settings(
        "tts-worker",
        envmap={**base, "CONFIG_INSTANCE_ID": "robot-7.tts_1", "CONFIG_REPORT_APPLIED": "0"},
    )
    assert (s.instance_id, s.report_applied) == ("robot-7.tts_1", False)
    # The keyword argument wins over the environment.
    s = build_settings("tts-worker", instance_id="kw-1", envmap={"CONFIG_INSTANCE_ID": "env-1"})
    assert s.instance_id == "kw-1"
    for bad in ["a/b", "-x", "+", "a#", "ä", "x" * 65, "a b"]:
        with pytest.raises(SettingsError, match=r"^CONFIG_INSTANCE_ID is invalid: "):
            build_settings("tts-worker", envmap={"CONFIG_INSTANCE_ID": bad})
        with pytest.raises(SettingsError, match=r"^instance_id is invalid: "):
            ConfigLibrary("tts-worker", instance_id=bad, environ={})
    with pytest.raises(SettingsError, match=r"^CONFIG_REPORT_APPLIED is invalid: expected 1 or 0$"):
        build_settings("tts-worker", envmap={"CONFIG_REPORT_APPLIED": "maybe"})


def test_reporter_follows_the_contract_table() -> None:
    r = Reporter("tts-worker", "robot-7-tts-worker")
    assert r.current is None  # defaults: nothing to say yet
    offline = valid(r.offline())
    assert (offline["status"], offline["version"], offline["applied_at"]) == ("offline", None, None)
    rejected = valid(r.rejected("bad_signature", 3) or {})
    assert (rejected["version"], rejected["reason"], rejected["rejected_version"]) == (
        None,
        "bad_signature",
        3,
    )
    t = datetime(2026, 1, 15, 9, 30, 0, 120000, tzinfo=UTC)
    applied = valid(r.applied(AppliedState(EPOCH_A, 7, None), t))
    assert applied == {
        "service": "tts-worker",
        "instance_id": "robot-7-tts-worker",
        "config_epoch": EPOCH_A,
        "version": 7,
        "status": "applied",
        "reason": None,
        "rejected_version": None,
        "applied_at": "2026-01-15T09:30:00.120Z",
        "client": applied["client"],
    }
    assert applied["client"]["name"] == CLIENT_NAME
    again = valid(r.rejected("invalid_config", 8) or {})
    assert (again["version"], again["applied_at"]) == (7, "2026-01-15T09:30:00.120Z")
    assert r.rejected("invalid_config", 8) is None  # same refusal again: nothing new
    assert valid(r.rejected("stale", 0) or {})["rejected_version"] is None
    assert valid(r.offline())["version"] == 7
    # A label outside the contract's grammar never makes an invalid report.
    assert valid(r.rejected("Bad Label!", None) or {})["reason"] == "rejected"


# ------------------------------------------------------------ live broker


class Tts(BaseModel):
    volume_percent: int = Field(default=100, ge=0, le=100)
    tts_provider: str = "piper"


class Watcher:
    """A subscriber on every applied-state topic of tts-worker."""

    def __init__(self, port: int) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        version = getattr(paho, "CallbackAPIVersion", None)
        self.client = paho.Client(version.VERSION2) if version else paho.Client()
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        result, _mid = self.client.subscribe(REPORTS, qos=1)
        assert result == paho.MQTT_ERR_SUCCESS
        assert subscribed.wait(30), "SUBACK"

    async def next(self) -> dict[str, Any]:
        """The next report, valid against the JSON Schema and its topic."""
        topic, payload = await asyncio.to_thread(self.messages.get, True, 30)
        report = valid(json.loads(payload))
        assert topic == f"system/config/{report['service']}/applied/{report['instance_id']}"
        return report

    def publish(self, payload: bytes) -> None:
        """A retained config message, from this connection (as anyone on the
        broker could)."""
        info = self.client.publish("system/config/tts-worker", payload, qos=1, retain=True)
        info.wait_for_publish(timeout=10)
        assert info.is_published()

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    try:
        b = Broker(tmp_path).start()
    except MissingTool as e:
        pytest.fail(str(e))  # never silently skipped
    yield b
    b.stop()


def forged(version: int) -> bytes:
    """Signed by the trusted key over another config: checksum right,
    signature wrong (``bad_signature``)."""
    now = datetime.now(UTC)
    real = json.loads(sign({"volume_percent": 11}, version=version, issued=now))
    other = json.loads(sign({"volume_percent": 12}, version=version, issued=now))
    real["signature"] = other["signature"]
    return json.dumps(real).encode()


def expect(
    report: dict[str, Any],
    instance: str,
    status: str,
    version: int | None,
    reason: str | None = None,
    rejected_version: int | None = None,
) -> None:
    assert report["instance_id"] == instance, report
    assert report["status"] == status, report
    assert report["version"] == version, report
    assert report["config_epoch"] == (EPOCH_A if version else None), report
    assert report["reason"] == reason, report
    assert report["rejected_version"] == rejected_version, report
    assert report["client"]["name"] == "tars-config-client"


def test_reports_start_up_updates_each_rejection_and_clean_stop(
    broker: Broker, tmp_path: Path
) -> None:
    watcher = Watcher(broker.port)
    cache_path = tmp_path / "cache.json"
    # Start-up from the service's verified on-disk copy (version 3).
    disk.write(
        cache_path,
        envelope.parse(sign({"volume_percent": 30}, version=3, issued=datetime.now(UTC))),
    )

    async def go() -> None:
        lib = ConfigLibrary(
            "tts-worker",
            cache_path=cache_path,
            mqtt_url=broker.url,
            signature_public_key=PEM,
            instance_id="py-1",
            environ={},
        )
        await lib.initialize()

        def refuse_13(c: Tts) -> None:
            if c.volume_percent == 13:
                raise RuntimeError("unlucky volume")

        await lib.subscribe_updates(refuse_13, Tts)
        started = await watcher.next()
        expect(started, "py-1", "applied", 3)
        assert lib.last_report == started

        watcher.publish(sign({"volume_percent": 40}, version=4, issued=datetime.now(UTC)))
        v4 = await watcher.next()
        expect(v4, "py-1", "applied", 4)
        cases: list[tuple[bytes, str, int | None]] = [
            (forged(5), "bad_signature", 5),
            (sign({"volume_percent": 30}, version=3, issued=datetime.now(UTC)), "replay", 3),
            # The service's pydantic model refuses 300 (le=100).
            (
                sign({"volume_percent": 300}, version=6, issued=datetime.now(UTC)),
                "invalid_config",
                6,
            ),
            (
                sign({"volume_percent": 13}, version=7, issued=datetime.now(UTC)),
                "callback_failed",
                7,
            ),
            (b"{not json", "not_json", None),
        ]
        for payload, label, rejected_version in cases:
            watcher.publish(payload)
            report = await watcher.next()
            expect(report, "py-1", "rejected", 4, label, rejected_version)
            assert report["applied_at"] == v4["applied_at"]
        assert (await lib.get_config(Tts)).volume_percent == 40

        watcher.publish(sign({"volume_percent": 80}, version=8, issued=datetime.now(UTC)))
        v8 = await watcher.next()
        expect(v8, "py-1", "applied", 8)
        counters = lib.counters.snapshot()
        assert (counters["reports_published"], counters["report_failures"]) == (8, 0)
        await lib.close()
        offline = await watcher.next()
        expect(offline, "py-1", "offline", 8)
        assert offline["applied_at"] == v8["applied_at"]

    try:
        asyncio.run(go())
    finally:
        watcher.stop()


def test_reporting_off_publishes_nothing(broker: Broker, tmp_path: Path) -> None:
    watcher = Watcher(broker.port)
    watcher.publish(sign({"volume_percent": 40}, version=4, issued=datetime.now(UTC)))

    async def go() -> None:
        common: dict[str, Any] = {
            "cache_path": tmp_path / "none.json",
            "mqtt_url": broker.url,
            "signature_public_key": PEM,
        }
        silent = ConfigLibrary(
            "tts-worker", instance_id="silent", environ={"CONFIG_REPORT_APPLIED": "0"}, **common
        )
        await silent.initialize()
        await silent.subscribe_updates(lambda _c: None, Tts)
        await wait_until(lambda: silent.counters.snapshot()["applied"] == 1, "retained v4 applied")
        assert silent.last_report is not None
        assert silent.last_report["version"] == 4  # built, not published
        await silent.close()
        assert silent.counters.snapshot()["reports_published"] == 0
        # A reporting instance started after it: its report is the first
        # (and only) one the watcher sees, none from "silent".
        loud = ConfigLibrary("tts-worker", instance_id="loud", environ={}, **common)
        await loud.initialize()
        expect(await watcher.next(), "loud", "applied", 4)
        await loud.close()
        expect(await watcher.next(), "loud", "offline", 4)
        assert watcher.messages.empty()

    try:
        asyncio.run(go())
    finally:
        watcher.stop()


def spawn_child(port: int, tmp_path: Path, instance: str) -> subprocess.Popen[bytes]:
    """``tests/child_client.py`` starting from an on-disk copy of version 3."""
    cache_path = tmp_path / f"{instance}.json"
    disk.write(
        cache_path,
        envelope.parse(sign({"volume_percent": 30}, version=3, issued=datetime.now(UTC))),
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "MQTT_URL": f"mqtt://127.0.0.1:{port}",
        "CONFIG_SIGNATURE_PUBLIC_KEY": PEM,
        "CONFIG_CACHE_PATH": str(cache_path),
        "CONFIG_INSTANCE_ID": instance,
    }
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("child_client.py"))], env=env
    )


def test_killed_process_goes_offline_through_its_will(broker: Broker, tmp_path: Path) -> None:
    watcher = Watcher(broker.port)
    child = spawn_child(broker.port, tmp_path, "doomed-py")

    async def go() -> None:
        started = await watcher.next()
        expect(started, "doomed-py", "applied", 3)
        watcher.publish(sign({"volume_percent": 40}, version=4, issued=datetime.now(UTC)))
        expect(await watcher.next(), "doomed-py", "applied", 4)
        # SIGKILL: the broker publishes the will, set when the process
        # connected, so it names what ran then (version 3).
        child.kill()
        child.wait()
        will = await watcher.next()
        expect(will, "doomed-py", "offline", 3)
        assert will["applied_at"] == started["applied_at"]

    try:
        asyncio.run(go())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        watcher.stop()


def test_after_a_broker_restart_the_report_is_back_and_the_will_is_current(
    broker: Broker, tmp_path: Path
) -> None:
    watcher = Watcher(broker.port)
    child = spawn_child(broker.port, tmp_path, "survivor-py")
    second: Broker | None = None
    watchers = [watcher]

    async def go() -> None:
        nonlocal second
        expect(await watcher.next(), "survivor-py", "applied", 3)
        watcher.publish(sign({"volume_percent": 40}, version=4, issued=datetime.now(UTC)))
        v4 = await watcher.next()
        expect(v4, "survivor-py", "applied", 4)
        # A restart without persistence forgets every retained report; the
        # client reconnects and says again what it runs.
        broker.stop()
        (tmp_path / "second").mkdir()
        second = Broker(tmp_path / "second", port=broker.port).start()
        again = Watcher(broker.port)
        watchers.append(again)
        assert await again.next() == v4
        # Its new CONNECT carried a will naming version 4.
        child.kill()
        child.wait()
        will = await again.next()
        expect(will, "survivor-py", "offline", 4)
        assert will["applied_at"] == v4["applied_at"]

    try:
        asyncio.run(go())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for w in watchers:
            w.stop()
        if second is not None:
            second.stop()
