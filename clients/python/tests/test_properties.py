"""Property tests (hypothesis) over every parser of untrusted input in the
client: whatever the bytes, each returns its value or its typed rejection
(``Rejected``, ``None``, ``ValueError``, ``SettingsError``), never anything
else. Bounded (200 examples each, no deadline) so they run with the suite.

Untrusted here: MQTT payloads (envelope parse, verify, the whole pipeline),
the on-disk copy, the manager's REST answer, the environment (settings, key
text, ``CONFIG_PINNED_ENV``), the values the manager holds as fitted to a
service's model, and what goes into an applied-state report (labels, field
names, versions)."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from config_manager_client import (
    ConfigClientError,
    TrustedKeys,
    UpdatePipeline,
    build_report,
    cache,
    envelope,
    fit_model,
    parse_instance_id,
    parse_mqtt_url,
)
from config_manager_client.envelope import Rejected, parse_rfc3339
from config_manager_client.library import parse_rest_config
from config_manager_client.report import MAX_NAMES, Reporter, encode
from config_manager_client.settings import build_settings, parse_pinned
from helpers import EPOCH_A, public_pem, sign, trusted_key

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TRUSTED = TrustedKeys.from_pem(public_pem(trusted_key()), "test")
VALID = sign({"volume_percent": 50}, version=6, issued=NOW)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
timestamps = st.from_regex(
    re.compile(
        r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,12})?([Zz]|[+-]\d{2}:\d{2})?",
        re.ASCII,
    ),
    fullmatch=True,
)


def mutated_envelope(draw_member: str, value: Any) -> bytes:
    doc = json.loads(VALID)
    doc[draw_member] = value
    return json.dumps(doc).encode()


@BOUNDED
@given(st.binary(max_size=2048))
def test_envelope_parse_any_bytes(data: bytes) -> None:
    with contextlib.suppress(Rejected):
        envelope.parse(data)


@BOUNDED
@given(st.sampled_from(envelope.MEMBERS), json_values | timestamps)
def test_envelope_parse_and_verify_any_member_value(member: str, value: Any) -> None:
    try:
        parsed = envelope.parse(mutated_envelope(member, value))
        envelope.verify(parsed, TRUSTED)
    except Rejected:
        pass


@BOUNDED
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from([b"[", b'{"a":']))
def test_deep_nesting_is_not_json(depth: int, opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    with pytest.raises(Rejected) as r:
        envelope.parse(opener * depth + b"1" + closer * depth, max_len=10**7)
    assert r.value.label in ("not_json", "not_object", "unsigned")


@BOUNDED
@given(timestamps | st.text(max_size=40))
def test_rfc3339_returns_a_time_or_none(raw: str) -> None:
    parsed = parse_rfc3339(raw)
    assert parsed is None or parsed.tzinfo is not None


def test_rfc3339_past_year_9999_in_utc_is_none() -> None:
    assert parse_rfc3339("9999-12-31T23:59:59-23:59") is None
    assert parse_rfc3339("0001-01-01T00:00:00+00:01") is None
    assert parse_rfc3339("9999-12-31T23:59:59Z") is not None


@BOUNDED
@given(
    st.binary(max_size=1024)
    | st.sampled_from(envelope.MEMBERS).flatmap(
        lambda m: (json_values | timestamps).map(lambda v: mutated_envelope(m, v))
    ),
    st.integers(min_value=-(10**6), max_value=10**6),
)
def test_pipeline_check_always_gives_an_outcome(payload: bytes, skew_secs: int) -> None:
    pipeline = UpdatePipeline("tts-worker", TRUSTED)
    outcome = pipeline.check(payload, NOW + timedelta(seconds=skew_secs))
    assert outcome.action in ("apply", "ignore", "reject")
    if outcome.action == "reject":
        assert re.fullmatch(r"[a-z][a-z0-9_]{0,63}", outcome.reason)


@BOUNDED
@given(st.binary(max_size=1024) | json_values.map(lambda v: json.dumps(v).encode()))
def test_cache_file_any_content(data: bytes) -> None:
    with contextlib.suppress(Rejected):
        cache.parse(data, "cache.json", "tts-worker", TRUSTED)


@BOUNDED
@given(st.sampled_from(envelope.MEMBERS), json_values | timestamps)
def test_cache_file_with_an_edited_envelope(member: str, value: Any) -> None:
    doc = {"format": 1, "envelope": json.loads(mutated_envelope(member, value))}
    with contextlib.suppress(Rejected):
        cache.parse(json.dumps(doc).encode(), "cache.json", "tts-worker", TRUSTED)


def test_cache_file_nested_too_deeply_and_issued_past_9999() -> None:
    deep = b'{"format":1,"envelope":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for data in (deep, b"[" * 1_000_000):
        with pytest.raises(Rejected) as r:
            cache.parse(data, "c", "tts-worker", TRUSTED)
        assert r.value.label == "cache_unreadable"
    edited = json.loads(mutated_envelope("issued_at", "9999-12-31T23:59:59-23:59"))
    with pytest.raises(Rejected) as r:
        cache.parse(
            json.dumps({"format": 1, "envelope": edited}).encode(), "c", "tts-worker", TRUSTED
        )
    assert r.value.label == "invalid_field"


@BOUNDED
@given(
    st.binary(max_size=512)
    | st.fixed_dictionaries(
        {},
        optional={
            "service": st.sampled_from(["tts-worker", "x"]) | json_values,
            "config": json_values,
            "version": json_values,
            "config_epoch": st.just(EPOCH_A) | json_values,
        },
    ).map(lambda d: json.dumps(d).encode())
)
def test_rest_answer_any_bytes(content: bytes) -> None:
    try:
        config, version, epoch = parse_rest_config(content, "tts-worker")
    except ValueError:
        return
    assert isinstance(config, dict)
    assert version >= 1
    assert isinstance(epoch, str)


SETTING_NAMES = [
    "CONFIG_MANAGER_URL",
    "CONFIG_API_TOKEN",
    "MQTT_URL",
    "MQTT_CA_FILE",
    "CONFIG_MAX_AGE_SECS",
    "CONFIG_MAX_SKEW_SECS",
    "CONFIG_ACCEPT_STALE_INITIAL",
    "CONFIG_MAX_PAYLOAD_BYTES",
    "CONFIG_INSTANCE_ID",
    "CONFIG_REPORT_APPLIED",
    "CONFIG_PINNED_ENV",
    "CONFIG_CACHE_DIR",
    "CONFIG_LKG_CACHE_PATH",
    "LKG_HMAC_KEY_BASE64",
]


@BOUNDED
@given(st.dictionaries(st.sampled_from(SETTING_NAMES), st.text(max_size=60), max_size=8))
def test_settings_any_environment(envmap: dict[str, str]) -> None:
    # An explicit file: the default directory is probed on the file system.
    envmap["CONFIG_CACHE_PATH"] = "/nonexistent/cache.json"
    try:
        settings_ = build_settings("tts-worker", envmap=envmap)
    except ConfigClientError:
        return
    assert settings_.service == "tts-worker"


@BOUNDED
@given(st.text(max_size=80))
def test_setting_parsers_any_text(raw: str) -> None:
    for parse in (parse_pinned, parse_instance_id, parse_mqtt_url):
        with contextlib.suppress(ConfigClientError):
            parse(raw)


@BOUNDED
@given(
    st.text(max_size=200).map(
        lambda t: f"-----BEGIN PUBLIC KEY-----\n{t}\n-----END PUBLIC KEY-----"
    )
    | st.binary(max_size=120).map(
        lambda b: (
            "-----BEGIN PUBLIC KEY-----\n"
            + base64.b64encode(b).decode()
            + "\n-----END PUBLIC KEY-----"
        )
    )
    | st.text(max_size=100)
)
def test_key_text_any(text: str) -> None:
    with contextlib.suppress(ConfigClientError):
        TrustedKeys.from_pem(text, "key")


class TtsLike(BaseModel):
    model_config = ConfigDict(extra="forbid")

    eleven_api_key: str = ""
    volume_percent: int = Field(default=100, ge=0, le=200)
    tts_aggregate_timeout_sec: float = Field(default=2.0, ge=0.1, le=10.0)
    ws_url: str | None = Field(default=None, pattern=r"^wss?://[^\s]+$")
    tts_streaming: bool = False


@BOUNDED
@given(
    st.dictionaries(
        st.sampled_from([*TtsLike.model_fields, "unknown", "extra_field"]) | st.text(max_size=8),
        json_values,
        max_size=8,
    ),
    st.dictionaries(
        st.sampled_from([n.upper() for n in TtsLike.model_fields]), st.text(max_size=20), max_size=3
    ),
    st.sets(st.sampled_from([n.upper() for n in TtsLike.model_fields]), max_size=3),
)
def test_fit_any_manager_values(
    raw: dict[str, Any], environ: dict[str, str], pinned: set[str]
) -> None:
    fit = fit_model(TtsLike, raw, environ, pinned)
    assert set(fit.failed) <= set(TtsLike.model_fields)
    assert all(var in pinned for var in fit.pinned.values())


@BOUNDED
@given(
    st.text(max_size=80),
    st.none() | st.integers(min_value=-(2**64), max_value=2**64),
    st.lists(st.text(max_size=140), max_size=100),
    st.dictionaries(st.text(max_size=140), st.text(max_size=140), max_size=80),
)
def test_report_builder_any_inputs(
    label: str, version: int | None, fields: list[str], pinned: dict[str, str]
) -> None:
    reporter = Reporter("tts-worker", "instance-1")
    reporter.set_pinned(pinned)
    report = reporter.rejected(label, version, tuple(fields))
    assert report is not None
    assert re.fullmatch(r"[a-z][a-z0-9_]{0,63}", report["reason"])
    assert len(report.get("fields", [])) <= MAX_NAMES
    assert len(report.get("pinned", {})) <= MAX_NAMES
    key = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
    assert all(key.fullmatch(f) for f in report.get("fields", []))
    assert all(
        key.fullmatch(k) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", v)
        for k, v in report.get("pinned", {}).items()
    )
    encode(report)
    assert build_report("tts-worker", "i", "offline", None).get("pinned") is None
