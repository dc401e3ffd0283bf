"""Unit tests of the library without a manager or broker: precedence,
validation and callback failures keeping the old config, re-issues, secrets
carried over, the on-disk copy, settings."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config_manager_client import (
    AppliedState,
    ConfigLibrary,
    ConfigSource,
    NoTrustedKeyError,
    SettingsError,
    TrustedKeys,
    UpdatePipeline,
    build_model,
    fit_model,
    parse_mqtt_url,
)
from config_manager_client.library import parse_rest_config
from config_manager_client.settings import build_settings, default_cache_dir, default_cache_path
from helpers import EPOCH_A, EPOCH_B, public_pem, sign, trusted_key

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Tts(BaseModel):
    model_config = ConfigDict(extra="forbid")  # as TARS' models: extra members refused

    volume_percent: int = Field(default=100, ge=0, le=100)
    tts_provider: str = "piper"
    tts_streaming: bool = False
    eleven_api_key: str = ""


def lib(tmp_path: Path, environ: dict[str, str] | None = None) -> ConfigLibrary:
    env = {"CONFIG_SIGNATURE_PUBLIC_KEY": public_pem(trusted_key())}
    env.update(environ or {})
    return ConfigLibrary(
        "tts-worker", cache_path=tmp_path / "cache" / "tts-worker.json", environ=env
    )


def cfg(volume: int, **extra: Any) -> dict[str, Any]:
    return {"volume_percent": volume, "tts_provider": "piper", "tts_streaming": False, **extra}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_no_public_key_is_a_clear_error_at_initialize(tmp_path: Path) -> None:
    library = ConfigLibrary("tts-worker", cache_path=tmp_path / "c.json", environ={})

    async def go() -> None:
        with pytest.raises(NoTrustedKeyError, match="CONFIG_SIGNATURE_PUBLIC_KEY"):
            await library.initialize()

    run(go())


def test_precedence_manager_over_env_over_default_and_pins() -> None:
    raw = {"volume_percent": 60, "tts_provider": "elevenlabs", "unknown_key": 1}
    env = {"VOLUME_PERCENT": "33", "TTS_PROVIDER": "piper", "ELEVEN_API_KEY": "from-env"}
    model = build_model(Tts, raw, env)
    assert model.volume_percent == 60  # the manager wins over an inherited variable
    assert model.tts_provider == "elevenlabs"
    assert model.eleven_api_key == "from-env"  # absent at the manager: inherited value
    assert model.tts_streaming is False  # default
    assert build_model(Tts, {}, {"TTS_STREAMING": "true"}).tts_streaming is True
    # CONFIG_PINNED_ENV: the listed variable keeps its inherited value, reported.
    fit = fit_model(Tts, raw, env, frozenset({"VOLUME_PERCENT", "NOT_SET_ANYWHERE"}))
    assert fit.instance.volume_percent == 33
    assert fit.instance.tts_provider == "elevenlabs"
    assert fit.pinned == {"volume_percent": "VOLUME_PERCENT"}
    assert fit.failed == ()


def test_fields_that_do_not_fit_take_defaults_and_are_named_never_valued() -> None:
    raw = {"volume_percent": 150, "tts_provider": "elevenlabs", "eleven_api_key": None}
    fit = fit_model(Tts, raw, {})
    assert fit.failed == ("volume_percent", "eleven_api_key")
    assert fit.instance.volume_percent == 100
    assert fit.instance.eleven_api_key == ""
    assert fit.instance.tts_provider == "elevenlabs"
    with pytest.raises(ValidationError):
        build_model(Tts, raw, {})
    # A pinned variable whose value does not fit: the field takes its default too.
    fit = fit_model(Tts, {}, {"VOLUME_PERCENT": "loud"}, {"VOLUME_PERCENT"})
    assert (fit.failed, fit.pinned, fit.instance.volume_percent) == (("volume_percent",), {}, 100)


def test_defaults_then_update_then_reissue_without_second_callback(tmp_path: Path) -> None:
    async def go() -> None:
        library = lib(tmp_path, {"TTS_PROVIDER": "from-env", "CONFIG_PINNED_ENV": "TTS_PROVIDER"})
        await library.initialize()
        first = await library.get_config(Tts)
        assert (first.volume_percent, first.tts_provider) == (100, "from-env")
        assert library.source is ConfigSource.DEFAULTS
        assert library.is_read_only
        calls: list[Tts] = []

        async def on_change(c: Tts) -> None:  # async callbacks are awaited
            calls.append(c)

        await library.subscribe_updates(on_change, Tts)
        out = await library.handle_payload(sign(cfg(70), version=6, issued=NOW), NOW)
        assert out.action == "apply"
        assert [c.volume_percent for c in calls] == [70]
        assert calls[0].tts_provider == "from-env"  # a pinned variable wins over the update
        assert library.pinned == {"tts_provider": "TTS_PROVIDER"}
        assert library.last_report is not None
        assert library.last_report["pinned"] == {"tts_provider": "TTS_PROVIDER"}
        assert (await library.get_config(Tts)).volume_percent == 70
        assert library.source is ConfigSource.MQTT
        # The periodic re-issue: new issued_at and signature, same version.
        later = NOW + timedelta(seconds=60)
        out = await library.handle_payload(sign(cfg(70), version=6, issued=later), later)
        assert out.action == "ignore"
        assert len(calls) == 1
        assert library.counters.snapshot()["ignored"] == 1
        await library.close()

    run(go())


def test_invalid_update_keeps_the_old_config(tmp_path: Path) -> None:
    async def go() -> None:
        library = lib(tmp_path)
        await library.initialize()
        calls: list[Tts] = []
        await library.subscribe_updates(calls.append, Tts)
        await library.handle_payload(sign(cfg(50), version=6, issued=NOW), NOW)
        out = await library.handle_payload(sign(cfg(150), version=7, issued=NOW), NOW)
        assert (out.action, out.reason) == ("reject", "invalid_config")
        assert (await library.get_config(Tts)).volume_percent == 50
        assert library.applied == AppliedState(EPOCH_A, 6, library.applied.checksum)  # type: ignore[union-attr]
        assert [c.volume_percent for c in calls] == [50]
        assert library.counters.snapshot()["rejected"] == {"invalid_config": 1}
        await library.close()

    run(go())


def test_failing_callback_keeps_old_config_and_the_reissue_is_retried(tmp_path: Path) -> None:
    async def go() -> None:
        library = lib(tmp_path)
        await library.initialize()
        refuse = True

        def on_change(c: Tts) -> None:
            if refuse:
                raise RuntimeError("device busy")

        await library.subscribe_updates(on_change, Tts)
        out = await library.handle_payload(sign(cfg(40), version=6, issued=NOW), NOW)
        assert (out.action, out.reason) == ("reject", "callback_failed")
        assert (await library.get_config(Tts)).volume_percent == 100
        assert library.applied is None
        refuse = False
        later = NOW + timedelta(seconds=60)
        out = await library.handle_payload(sign(cfg(40), version=6, issued=later), later)
        assert out.action == "apply"
        assert (await library.get_config(Tts)).volume_percent == 40
        await library.close()

    run(go())


def test_forged_replayed_and_stale_messages_are_rejected_and_counted(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    async def go() -> None:
        library = lib(tmp_path)
        await library.initialize()
        await library.handle_payload(sign(cfg(60), version=7, issued=NOW), NOW)
        forged = sign(cfg(0), version=8, issued=NOW, key=Ed25519PrivateKey.generate())
        assert (await library.handle_payload(forged, NOW)).reason == "unknown_key"
        replay = sign(cfg(10), version=6, issued=NOW)
        assert (await library.handle_payload(replay, NOW)).reason == "replay"
        stale = sign(cfg(10), version=1, epoch=EPOCH_B, issued=NOW - timedelta(minutes=10))
        assert (await library.handle_payload(stale, NOW)).reason == "stale_epoch"
        # A restore to an older version in a new epoch, freshly signed: applied.
        fresh = sign(cfg(20), version=1, epoch=EPOCH_B, issued=NOW)
        assert (await library.handle_payload(fresh, NOW)).action == "apply"
        assert (await library.get_config(Tts)).volume_percent == 20
        snap = library.counters.snapshot()
        assert snap["rejected"] == {"unknown_key": 1, "replay": 1, "stale_epoch": 1}
        assert snap["applied"] == 2
        await library.close()

    run(go())


def test_secret_omitted_or_masked_keeps_the_rest_value() -> None:
    trusted = TrustedKeys.from_pem(public_pem(trusted_key()), "test")
    rest = cfg(50, eleven_api_key="sk-from-rest")
    pipeline = UpdatePipeline(
        "tts-worker", trusted, applied=AppliedState(EPOCH_A, 5, None), raw=rest
    )
    omitted = pipeline.check(sign(cfg(60), version=6, issued=NOW), NOW)
    assert omitted.config is not None
    assert omitted.config["eleven_api_key"] == "sk-from-rest"
    pipeline.commit(omitted)
    masked = pipeline.check(sign(cfg(70, eleven_api_key="********"), version=7, issued=NOW), NOW)
    assert masked.config is not None
    assert masked.config["eleven_api_key"] == "sk-from-rest"
    assert masked.config["volume_percent"] == 70


def test_on_disk_copy_is_written_0600_verified_and_used_at_start(tmp_path: Path) -> None:
    async def go() -> None:
        first = lib(tmp_path)
        await first.initialize()
        await first.handle_payload(sign(cfg(42), version=9, issued=NOW), NOW)
        await first.close()
        path = tmp_path / "cache" / "tts-worker.json"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        second = lib(tmp_path)
        await second.initialize()
        assert second.source is ConfigSource.LKG
        assert second.is_read_only
        assert (await second.get_config(Tts)).volume_percent == 42
        assert second.applied is not None
        assert second.applied.version == 9
        await second.close()
        # An edited copy is refused: defaults, not the attacker's value.
        doc = json.loads(path.read_text())
        doc["envelope"]["config"]["volume_percent"] = 1
        path.write_text(json.dumps(doc))
        third = lib(tmp_path)
        await third.initialize()
        assert third.source is ConfigSource.DEFAULTS
        assert (await third.get_config(Tts)).volume_percent == 100
        await third.close()

    run(go())


def test_mqtt_url_forms_and_errors() -> None:
    e = parse_mqtt_url("mqtts://tars:p%40ss%3Aword@broker.local", ca_file="/ca.pem")
    assert (e.host, e.port, e.tls, e.username, e.password) == (
        "broker.local",
        8883,
        True,
        "tars",
        "p@ss:word",
    )
    assert "p@ss" not in repr(e)
    e = parse_mqtt_url("mqtt://user@[::1]:1884/")
    assert (e.host, e.port, e.password) == ("::1", 1884, None)
    for bad in (
        "tcp://x",
        "mqtt://",
        "mqtt://h:0",
        "mqtt://h:99999",
        "mqtt://h/x",
        "mqtt://u:%zz@h",
    ):
        with pytest.raises(SettingsError) as info:
            parse_mqtt_url(bad)
        assert "zz" not in str(info.value)


def test_settings_refuse_bad_values_without_echoing_them(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CONFIG_MAX_AGE_SECS"):
        lib(tmp_path, {"CONFIG_MAX_AGE_SECS": "five"})
    with pytest.raises(SettingsError, match="service_name"):
        ConfigLibrary("TTS Worker", environ={})


def test_oversized_payloads_and_floods_are_refused_before_queueing(tmp_path: Path) -> None:
    async def go() -> None:
        library = lib(tmp_path, {"CONFIG_MAX_PAYLOAD_BYTES": "2048"})
        await library.initialize()
        library._received(b"x" * 4096)
        assert library.counters.snapshot()["rejected"] == {"oversized": 1}
        for _ in range(300):  # no await in between: the worker cannot drain
            library._received(b"{}")
        assert library.counters.snapshot()["rejected"]["overloaded"] == 300 - 256
        await library.close()

    run(go())


def test_cache_location_settings(tmp_path: Path) -> None:
    system = tmp_path / "var-lib-tars-config"
    # The system directory when it can be created and written.
    assert default_cache_path("tts-worker", {}, system) == system / "tts-worker.json"
    # Not writable (a file stands where a parent should be): XDG, then HOME.
    blocked = tmp_path / "file"
    blocked.write_text("")
    unusable = blocked / "tars-config"
    xdg = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    assert default_cache_dir(xdg, unusable) == tmp_path / "xdg" / "tars-config"
    home = {"HOME": str(tmp_path / "home")}
    assert default_cache_dir(home, unusable) == tmp_path / "home/.local/state/tars-config"
    # CONFIG_CACHE_DIR names the directory; CONFIG_CACHE_PATH one file and wins.
    env = {"CONFIG_CACHE_DIR": str(tmp_path / "d")}
    assert build_settings("stt-worker", envmap=env).cache_path == tmp_path / "d/stt-worker.json"
    env["CONFIG_CACHE_PATH"] = str(tmp_path / "one.json")
    assert build_settings("stt-worker", envmap=env).cache_path == tmp_path / "one.json"


def test_pinned_env_setting() -> None:
    s = build_settings("tts-worker", envmap={"CONFIG_PINNED_ENV": " A_1, ,LOG_LEVEL ,"})
    assert s.pinned_env == frozenset({"A_1", "LOG_LEVEL"})
    for bad in ("1ABC", "A-B", "A B", "X" * 129):
        with pytest.raises(SettingsError, match="CONFIG_PINNED_ENV") as info:
            build_settings("tts-worker", envmap={"CONFIG_PINNED_ENV": bad})
        assert bad not in str(info.value)


def test_ignored_tars_variables_are_named_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {
        "CONFIG_LKG_CACHE_PATH": "/data/secret-path-lkg.json",
        "LKG_HMAC_KEY_BASE64": "c2VjcmV0LWhtYWMta2V5",
        "CONFIG_DB_PATH": "/data/config.db",
    }

    async def go() -> None:
        library = lib(tmp_path, env)
        with caplog.at_level(logging.WARNING, logger="config_manager_client"):
            await library.initialize()
            await library.initialize()  # a second call does nothing
        await library.close()

    run(go())
    lines = [r.getMessage() for r in caplog.records if "ignores" in r.getMessage()]
    assert len(lines) == 1
    assert "CONFIG_LKG_CACHE_PATH, LKG_HMAC_KEY_BASE64, CONFIG_DB_PATH" in lines[0]
    assert "LKG_HMAC_KEY_ID" not in lines[0]  # only those present
    for value in env.values():
        assert value not in caplog.text


def test_api_parity_with_tars_config_library(tmp_path: Path) -> None:
    import config_manager_client

    assert config_manager_client.ConfigUpdateCallback is not None

    async def go() -> None:
        library = lib(tmp_path)
        with pytest.raises(RuntimeError):
            await library.get_config(Tts)
        with pytest.raises(RuntimeError):
            await library.subscribe_updates(lambda _c: None, Tts)
        await library.initialize()
        first: list[int] = []
        second: list[int] = []
        await library.subscribe_updates(lambda c: first.append(c.volume_percent), Tts)
        await library.subscribe_updates(lambda c: second.append(c.volume_percent), Tts)
        out = await library.handle_payload(sign(cfg(70), version=6, issued=NOW), NOW)
        assert out.action == "apply"
        assert (first, second) == ([], [70])  # the second subscription replaced the first
        await library.close()

    run(go())


def test_rest_answer_with_masked_or_missing_secret_fits_str_default(tmp_path: Path) -> None:
    config, version, epoch = parse_rest_config(
        json.dumps(
            {"service": "tts-worker", "config": cfg(5), "version": 3, "config_epoch": EPOCH_A}
        ).encode(),
        "tts-worker",
    )
    assert (version, epoch) == (3, EPOCH_A)
    assert build_model(Tts, config, {}).eleven_api_key == ""
    for bad in (b"[]", b'{"service": "tts-worker"}', b"\xff", b"[" * 100_000):
        with pytest.raises(ValueError):  # noqa: PT011 - the one error type of the parser
            parse_rest_config(bad, "tts-worker")
