//! Writes the shared golden vectors `contracts/vectors/envelopes.json`, read by
//! the Rust test `tests/vectors.rs` and by the Python client's tests, so both
//! clients are held to the same accept/reject decisions and the same bytes.
//!
//! Deterministic (fixed keys, timestamps and epochs; Ed25519 is deterministic),
//! so re-running it reproduces the file exactly:
//!
//! ```sh
//! cargo run -p config-manager-client --example gen_vectors
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use config_manager_core::crypto::canonical::object_to_canonical_bytes;
use config_manager_core::crypto::signing::SigningKey;
use config_manager_core::domain::{format_rfc3339, Epoch, ServiceName, Version};
use config_manager_core::envelope::{config_checksum, Envelope};
use serde_json::{json, Map, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00:00 UTC);
const EPOCH_A: &str = "5b0c3f0e-8a51-4c8e-9a43-7f6d2b1e0a01";
const EPOCH_B: &str = "9e2d7c41-1f3b-4a5e-8c6d-0b1a2c3d4e5f";
/// RFC 8032 §7.1 TEST 1 (the key of `contracts/examples/`): public knowledge.
const TEST_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

fn seed(hex_seed: &str) -> [u8; 32] {
    hex::decode(hex_seed).unwrap().try_into().unwrap()
}

fn trusted() -> SigningKey {
    SigningKey::from_seed(&seed(TEST_SEED))
}

/// A second trusted key, as during a rollover.
fn rotation() -> SigningKey {
    SigningKey::from_seed(&[0x52; 32])
}

/// A key nobody trusts.
fn intruder() -> SigningKey {
    SigningKey::from_seed(&[0x66; 32])
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn tts(volume: u64) -> Map<String, Value> {
    obj(json!({
        "tts_provider": "piper",
        "piper_voice": "en_US-lessac-medium",
        "volume_percent": volume,
        "tts_aggregate_timeout_sec": 2.5,
        "tts_streaming": false
    }))
}

fn sign(
    service: &str,
    epoch: &str,
    version: u64,
    config: Map<String, Value>,
    issued: OffsetDateTime,
    key: &SigningKey,
) -> Envelope {
    Envelope::sign_at(
        &ServiceName::parse(service).unwrap(),
        Version::try_from(version).unwrap(),
        &Epoch::parse(epoch).unwrap(),
        config,
        issued,
        key,
    )
    .unwrap()
}

fn tts_env(epoch: &str, version: u64, volume: u64, issued: OffsetDateTime) -> Envelope {
    sign(
        "tts-worker",
        epoch,
        version,
        tts(volume),
        issued,
        &trusted(),
    )
}

fn bytes(e: &Envelope) -> Vec<u8> {
    e.to_json_bytes().unwrap()
}

fn edited(e: &Envelope, edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
    let mut o = e.to_object();
    edit(&mut o);
    object_to_canonical_bytes(&o).unwrap()
}

fn applied(epoch: &str, version: u64, checksum: Option<&str>) -> Value {
    json!({"epoch": epoch, "version": version, "checksum": checksum})
}

struct Cases(Vec<Value>);

impl Cases {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        name: &str,
        what: &str,
        payload: &[u8],
        state: Value,
        outcome: &str,
        reason: Option<&str>,
    ) {
        self.0.push(json!({
            "name": name,
            "description": what,
            "payload_b64": base64::engine::general_purpose::STANDARD.encode(payload),
            "max_payload_bytes": 4096,
            "applied": state,
            "expect": {"outcome": outcome, "reason": reason},
        }));
    }

    /// An accepted envelope with its canonical bytes, checksum and signature.
    fn accepted(&mut self, name: &str, what: &str, payload: &[u8], e: &Envelope, state: Value) {
        self.add(name, what, payload, state, "apply", None);
        let last = self.0.last_mut().unwrap();
        last["canonical_config_hex"] =
            json!(hex::encode(object_to_canonical_bytes(&e.config).unwrap()));
        last["checksum"] = json!(config_checksum(&e.config).unwrap());
        last["signed_bytes_hex"] = json!(hex::encode(e.signed_bytes().unwrap()));
        last["signature"] = json!(e.signature);
        last["key_id"] = json!(e.key_id.as_str());
    }
}

fn main() {
    let rest_a5 = applied(EPOCH_A, 5, None);
    let mut c = Cases(Vec::new());

    let v6 = tts_env(EPOCH_A, 6, 80, NOW);
    c.accepted(
        "apply_newer_version",
        "same epoch, version 6 after 5",
        &bytes(&v6),
        &v6,
        rest_a5.clone(),
    );

    let rot = sign("tts-worker", EPOCH_A, 6, tts(81), NOW, &rotation());
    c.accepted(
        "apply_second_trusted_key",
        "signed by the second trusted key (rollover)",
        &bytes(&rot),
        &rot,
        rest_a5.clone(),
    );

    let floats = obj(json!({
        "big": 1e21, "e20": 1e20, "small": 1e-7, "micro": 0.000001, "ratio": 2.5,
        "third": 1.0 / 3.0, "neg": -1.5e-9, "max_safe": 9_007_199_254_740_991_u64,
        "min_safe": -9_007_199_254_740_991_i64, "float_int": 80.0, "neg_zero": -0.0
    }));
    let fl = sign("tts-worker", EPOCH_A, 6, floats, NOW, &trusted());
    c.accepted(
        "apply_exponent_floats",
        "numbers in ECMAScript form: 1e+21, 1e-7, 0.000001, 80, 0",
        &bytes(&fl),
        &fl,
        rest_a5.clone(),
    );

    let non_ascii = obj(json!({
        "grüße": "café", "日本語": "テスト", "😀": "emoji (UTF-16 sorts it before U+FF61)",
        "\u{ff61}": "halfwidth", "é": 1, "e\u{301}": 2, "quote\"back\\slash": "tab\tnl\nctl\u{1}",
        "€": "\u{2028}"
    }));
    let na = sign("tts-worker", EPOCH_A, 6, non_ascii, NOW, &trusted());
    c.accepted(
        "apply_non_ascii_keys",
        "non-ASCII and escaped member names sorted by UTF-16 code units",
        &bytes(&na),
        &na,
        rest_a5.clone(),
    );

    // The same v6, reformatted by a bridge: pretty-printed, members reordered,
    // numbers written differently. Verifiers re-canonicalize, so it verifies.
    let mut text = String::from("{\n  \"signature\": \"");
    text.push_str(&v6.signature);
    text.push_str("\",\n  \"config\": {\"volume_percent\": 8.0e1, \"tts_streaming\": false,\n    \"tts_aggregate_timeout_sec\": 25E-1, \"piper_voice\": \"en_US-lessac-\\u006dedium\", \"tts_provider\": \"piper\"},\n");
    text.push_str(&format!(
        "  \"version\": 6, \"service\": \"tts-worker\", \"key_id\": \"{}\",\n  \"issued_at\": \"{}\", \"config_epoch\": \"{EPOCH_A}\",\n  \"checksum\": \"{}\"\n}}\n",
        v6.key_id.as_str(), v6.issued_at, v6.checksum
    ));
    c.accepted(
        "apply_reformatted_payload",
        "v6 pretty-printed, reordered, 8.0e1 / 25E-1 / \\u escapes",
        text.as_bytes(),
        &v6,
        rest_a5.clone(),
    );

    let v6_later = tts_env(EPOCH_A, 6, 80, NOW - Duration::minutes(1));
    c.add(
        "ignore_reissue",
        "re-issue of the applied version and checksum",
        &bytes(&v6_later),
        applied(EPOCH_A, 6, Some(&v6.checksum)),
        "ignore",
        None,
    );
    c.add(
        "ignore_same_version_after_rest",
        "the applied version from a REST load (no checksum)",
        &bytes(&v6),
        applied(EPOCH_A, 6, None),
        "ignore",
        None,
    );
    c.add(
        "reject_replay",
        "an older version of the same epoch, freshly signed",
        &bytes(&v6),
        applied(EPOCH_A, 7, None),
        "reject",
        Some("replay"),
    );
    let other_sum = "ab".repeat(32);
    c.add(
        "reject_version_conflict",
        "same version, other checksum, 10 minutes old",
        &bytes(&tts_env(EPOCH_A, 6, 80, NOW - Duration::minutes(10))),
        applied(EPOCH_A, 6, Some(&other_sum)),
        "reject",
        Some("version_conflict"),
    );
    c.add(
        "apply_same_version_changed_fresh",
        "same version, other checksum, fresh",
        &bytes(&v6),
        applied(EPOCH_A, 6, Some(&other_sum)),
        "apply",
        None,
    );
    c.add(
        "reject_stale_epoch",
        "another epoch, 10 minutes old",
        &bytes(&tts_env(EPOCH_B, 2, 40, NOW - Duration::minutes(10))),
        applied(EPOCH_A, 9, None),
        "reject",
        Some("stale_epoch"),
    );
    c.add(
        "apply_new_epoch_older_version",
        "restore to an older version in a new epoch, fresh",
        &bytes(&tts_env(EPOCH_B, 2, 40, NOW - Duration::minutes(1))),
        applied(EPOCH_A, 9, None),
        "apply",
        None,
    );
    c.add(
        "apply_late_joiner",
        "newer version of the same epoch, 3 days old",
        &bytes(&tts_env(EPOCH_A, 9, 70, NOW - Duration::days(3))),
        rest_a5.clone(),
        "apply",
        None,
    );
    c.add(
        "reject_stale_initial",
        "nothing applied, 6 minutes old",
        &bytes(&tts_env(EPOCH_A, 3, 30, NOW - Duration::minutes(6))),
        Value::Null,
        "reject",
        Some("stale"),
    );
    c.add(
        "apply_initial_at_max_age",
        "nothing applied, exactly max_age old",
        &bytes(&tts_env(EPOCH_A, 3, 30, NOW - Duration::minutes(5))),
        Value::Null,
        "apply",
        None,
    );
    c.add(
        "apply_at_max_skew",
        "issued exactly max_skew in the future",
        &bytes(&tts_env(EPOCH_A, 6, 80, NOW + Duration::seconds(60))),
        rest_a5.clone(),
        "apply",
        None,
    );
    c.add(
        "reject_from_future",
        "issued 61 s in the future",
        &bytes(&tts_env(EPOCH_A, 6, 80, NOW + Duration::seconds(61))),
        rest_a5.clone(),
        "reject",
        Some("from_future"),
    );

    let forged = sign("tts-worker", EPOCH_A, 6, tts(100), NOW, &intruder());
    c.add(
        "reject_wrong_key",
        "signed by an untrusted key",
        &bytes(&forged),
        rest_a5.clone(),
        "reject",
        Some("unknown_key"),
    );
    c.add(
        "reject_wrong_key_claiming_trusted_id",
        "untrusted signature under the trusted key id",
        &edited(&forged, |o| {
            o.insert("key_id".into(), json!(trusted().key_id().as_str()));
        }),
        rest_a5.clone(),
        "reject",
        Some("bad_signature"),
    );
    c.add(
        "reject_tampered_config",
        "config changed after signing",
        &edited(&v6, |o| {
            o["config"]["volume_percent"] = json!(100);
        }),
        rest_a5.clone(),
        "reject",
        Some("checksum_mismatch"),
    );
    c.add(
        "reject_tampered_config_recomputed_checksum",
        "config changed and checksum recomputed",
        &edited(&v6, |o| {
            let f = tts(100);
            o.insert("checksum".into(), json!(config_checksum(&f).unwrap()));
            o.insert("config".into(), Value::Object(f));
        }),
        rest_a5.clone(),
        "reject",
        Some("bad_signature"),
    );
    c.add(
        "reject_tampered_version",
        "version bumped after signing",
        &edited(&v6, |o| {
            o.insert("version".into(), json!(60));
        }),
        rest_a5.clone(),
        "reject",
        Some("bad_signature"),
    );
    c.add(
        "reject_tampered_issued_at",
        "issued_at moved after signing",
        &edited(&v6, |o| {
            o.insert(
                "issued_at".into(),
                json!(format_rfc3339(NOW + Duration::seconds(1))),
            );
        }),
        rest_a5.clone(),
        "reject",
        Some("bad_signature"),
    );
    let stt = sign("stt-worker", EPOCH_A, 6, tts(80), NOW, &trusted());
    c.add(
        "reject_other_service",
        "a valid envelope of another service",
        &bytes(&stt),
        rest_a5.clone(),
        "reject",
        Some("wrong_service"),
    );
    let mut big = tts(80);
    big.insert("padding".into(), json!("x".repeat(5000)));
    c.add(
        "reject_oversized",
        "over the 4096-byte limit of this vector",
        &bytes(&sign("tts-worker", EPOCH_A, 6, big, NOW, &trusted())),
        rest_a5.clone(),
        "reject",
        Some("oversized"),
    );
    c.add(
        "reject_unsigned",
        "signature member removed",
        &edited(&v6, |o| {
            o.remove("signature");
        }),
        rest_a5.clone(),
        "reject",
        Some("unsigned"),
    );
    c.add(
        "reject_empty_signature",
        "signature is empty",
        &edited(&v6, |o| {
            o.insert("signature".into(), json!(""));
        }),
        rest_a5.clone(),
        "reject",
        Some("unsigned"),
    );
    c.add(
        "reject_unknown_member",
        "an extra member",
        &edited(&v6, |o| {
            o.insert("format_version".into(), json!(1));
        }),
        rest_a5.clone(),
        "reject",
        Some("unknown_field"),
    );
    c.add(
        "reject_missing_key_id",
        "the earlier Python contract without key_id",
        &edited(&v6, |o| {
            o.remove("key_id");
        }),
        rest_a5.clone(),
        "reject",
        Some("missing_field"),
    );
    c.add(
        "reject_version_as_float",
        "version 6.0",
        &String::from_utf8(bytes(&v6))
            .unwrap()
            .replace("\"version\":6", "\"version\":6.0")
            .into_bytes(),
        rest_a5.clone(),
        "reject",
        Some("invalid_field"),
    );
    c.add(
        "reject_version_as_string",
        "version \"6\"",
        &edited(&v6, |o| {
            o.insert("version".into(), json!("6"));
        }),
        rest_a5.clone(),
        "reject",
        Some("invalid_field"),
    );
    c.add(
        "reject_bad_epoch",
        "config_epoch not a UUID",
        &edited(&v6, |o| {
            o.insert("config_epoch".into(), json!("epoch-1"));
        }),
        rest_a5.clone(),
        "reject",
        Some("invalid_field"),
    );
    c.add(
        "reject_bad_issued_at",
        "issued_at not RFC 3339",
        &edited(&v6, |o| {
            o.insert("issued_at".into(), json!("2026-03-01 12:00:00"));
        }),
        rest_a5.clone(),
        "reject",
        Some("invalid_field"),
    );
    c.add(
        "reject_issued_at_past_year_9999_in_utc",
        "issued_at 9999-12-31T23:59:59-23:59: valid RFC 3339, past year 9999 in UTC",
        &edited(&v6, |o| {
            o.insert("issued_at".into(), json!("9999-12-31T23:59:59-23:59"));
        }),
        rest_a5.clone(),
        "reject",
        Some("invalid_field"),
    );
    c.add(
        "reject_uppercase_checksum",
        "checksum in uppercase hex",
        &edited(&v6, |o| {
            o.insert("checksum".into(), json!(v6.checksum.to_uppercase()));
        }),
        rest_a5.clone(),
        "reject",
        Some("invalid_field"),
    );
    let dup = String::from_utf8(bytes(&v6)).unwrap().replacen(
        "{\"checksum\"",
        "{\"version\":99,\"checksum\"",
        1,
    );
    c.add(
        "reject_duplicate_member",
        "a member name given twice",
        dup.as_bytes(),
        rest_a5.clone(),
        "reject",
        Some("not_json"),
    );
    c.add(
        "reject_not_json",
        "not JSON",
        b"volume=100",
        rest_a5.clone(),
        "reject",
        Some("not_json"),
    );
    c.add(
        "reject_invalid_utf8",
        "not UTF-8",
        b"\xff\xfe{}",
        rest_a5.clone(),
        "reject",
        Some("not_json"),
    );
    c.add(
        "reject_not_object",
        "a JSON array",
        b"[]",
        rest_a5.clone(),
        "reject",
        Some("not_object"),
    );
    c.add(
        "reject_bad_base64",
        "signature not base64",
        &edited(&v6, |o| {
            o.insert("signature".into(), json!("%%%not-base64%%%"));
        }),
        rest_a5.clone(),
        "reject",
        Some("bad_base64"),
    );
    c.add(
        "reject_bad_signature_length",
        "signature of 5 bytes",
        &edited(&v6, |o| {
            o.insert("signature".into(), json!("c2hvcnQ="));
        }),
        rest_a5.clone(),
        "reject",
        Some("bad_signature_length"),
    );
    let unsafe_int = String::from_utf8(bytes(&v6)).unwrap().replace(
        "\"volume_percent\":80",
        "\"volume_percent\":9007199254740993",
    );
    c.add(
        "reject_integer_beyond_2_53",
        "an integer with no exact double has no canonical form",
        unsafe_int.as_bytes(),
        rest_a5.clone(),
        "reject",
        Some("malformed"),
    );
    let surrogate = String::from_utf8(bytes(&v6))
        .unwrap()
        .replace("\"piper\",", "\"piper\\ud800\",");
    assert!(surrogate.contains("\\ud800"));
    c.add(
        "reject_lone_surrogate",
        "a string with a lone UTF-16 surrogate escape is not valid JSON text",
        surrogate.as_bytes(),
        rest_a5.clone(),
        "reject",
        Some("not_json"),
    );
    // Signed as is: RFC 3339 allows lowercase "t" and "z" and any offset.
    let mut lower = v6.to_object();
    lower.insert("issued_at".into(), json!("2026-03-01t13:00:00.000+01:00"));
    lower.remove("signature");
    let signature = trusted().sign_base64(&object_to_canonical_bytes(&lower).unwrap());
    lower.insert("signature".into(), json!(signature));
    c.add(
        "apply_issued_at_with_offset_and_lowercase",
        "issued_at 2026-03-01t13:00:00.000+01:00 is now",
        &object_to_canonical_bytes(&lower).unwrap(),
        rest_a5.clone(),
        "apply",
        None,
    );

    let doc = json!({
        "description": "Golden vectors of the config envelope contract (contracts/README.md, contracts/freshness.md). Each case: payload bytes (base64), the applied state before it (null = nothing applied), and the expected outcome with the client's reason label. Accepted cases also carry the canonical config bytes, checksum, signed bytes and signature.",
        "generated_by": "cargo run -p config-manager-client --example gen_vectors",
        "service": "tts-worker",
        "now": format_rfc3339(NOW),
        "policy": {"max_age_secs": 300, "max_skew_secs": 60, "accept_stale_initial": false},
        "trusted_keys": [trusted().verifying_key().to_spki_pem().unwrap(), rotation().verifying_key().to_spki_pem().unwrap()],
        "trusted_key_ids": [trusted().key_id().as_str(), rotation().key_id().as_str()],
        "untrusted_key": {"public_pem": intruder().verifying_key().to_spki_pem().unwrap(), "key_id": intruder().key_id().as_str()},
        "cases": c.0,
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contracts/vectors/envelopes.json");
    let mut out = serde_json::to_string_pretty(&doc).unwrap();
    out.push('\n');
    std::fs::write(&path, out).unwrap();
    println!(
        "wrote {} cases to {}",
        doc["cases"].as_array().unwrap().len(),
        path.display()
    );
}
