use serde_json::json;
use time::macros::datetime;

use super::*;
use crate::crypto::signing::VerifyingKey;

/// RFC 8032 §7.1 TEST 1 secret key: public, well known, used by the contract's
/// worked example so anyone can re-derive it.
const EXAMPLE_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

fn example_key() -> SigningKey {
    let seed: [u8; 32] = hex::decode(EXAMPLE_SEED).unwrap().try_into().unwrap();
    SigningKey::from_seed(&seed)
}

fn example_config() -> Map<String, Value> {
    json!({
        "tts_provider": "piper",
        "piper_voice": "en_US-lessac-medium",
        "volume_percent": 80,
        "tts_aggregate_timeout_sec": 2.5,
        "tts_streaming": false,
        "tts_wake_cache_dir": "data/tts-cache"
    })
    .as_object()
    .unwrap()
    .clone()
}

fn example_envelope() -> Envelope {
    Envelope::sign_at(
        &ServiceName::parse("tts-worker").unwrap(),
        Version::new(7).unwrap(),
        &Epoch::parse("550e8400-e29b-41d4-a716-446655440000").unwrap(),
        example_config(),
        datetime!(2026-01-15 09:30:00 UTC),
        &example_key(),
    )
    .unwrap()
}

fn trusted() -> TrustedKeys {
    TrustedKeys::from_keys([example_key().verifying_key()])
}

fn payload(e: &Envelope) -> Vec<u8> {
    e.to_json_bytes().unwrap()
}

fn reparse(value: &Value) -> Result<Envelope, ParseError> {
    Envelope::parse(
        &serde_json::to_vec(value).unwrap(),
        DEFAULT_MAX_ENVELOPE_BYTES,
    )
}

fn as_value(e: &Envelope) -> Value {
    Value::Object(e.to_object())
}

#[test]
fn sign_parse_verify_round_trip() {
    let e = example_envelope();
    let parsed = Envelope::parse(&payload(&e), DEFAULT_MAX_ENVELOPE_BYTES).unwrap();
    assert_eq!(parsed, e);
    parsed.verify(&trusted()).unwrap();
    assert_eq!(config_topic(&e.service), "system/config/tts-worker");
}

#[test]
fn pretty_printed_and_reordered_payloads_verify_too() {
    let e = example_envelope();
    let pretty = serde_json::to_vec_pretty(&e).unwrap();
    Envelope::parse(&pretty, DEFAULT_MAX_ENVELOPE_BYTES)
        .unwrap()
        .verify(&trusted())
        .unwrap();
}

#[test]
fn tampering_is_detected_with_the_right_reason() {
    let e = example_envelope();

    let mut v = as_value(&e);
    v["config"]["volume_percent"] = json!(100);
    assert_eq!(
        reparse(&v).unwrap().verify(&trusted()),
        Err(VerifyError::ChecksumMismatch)
    );

    // Config changed and checksum recomputed: only the signature catches it.
    let mut forged = e.clone();
    forged.config.insert("volume_percent".into(), json!(100));
    forged.checksum = config_checksum(&forged.config).unwrap();
    assert_eq!(forged.verify(&trusted()), Err(VerifyError::BadSignature));

    let mut v = as_value(&e);
    v["checksum"] = json!("0".repeat(64));
    assert_eq!(
        reparse(&v).unwrap().verify(&trusted()),
        Err(VerifyError::ChecksumMismatch)
    );

    for (field, value) in [
        ("version", json!(8)),
        ("issued_at", json!("2026-01-15T09:31:00.000Z")),
        (
            "config_epoch",
            json!("9e2d7c41-1f3b-4a5e-8c6d-0b1a2c3d4e5f"),
        ),
    ] {
        let mut v = as_value(&e);
        v[field] = value;
        assert_eq!(
            reparse(&v).unwrap().verify(&trusted()),
            Err(VerifyError::BadSignature),
            "{field}"
        );
    }
}

#[test]
fn signature_encoding_and_key_faults() {
    let e = example_envelope();
    let mut bad = e.clone();
    bad.signature = "not*base64".into();
    assert_eq!(bad.verify(&trusted()), Err(VerifyError::BadBase64));
    bad.signature = "AAAA".into();
    assert_eq!(
        bad.verify(&trusted()),
        Err(VerifyError::BadSignatureLength(3))
    );

    // Signed by an untrusted key under its own id.
    let other = SigningKey::generate();
    let foreign = Envelope::sign(
        &e.service,
        Version::new(8).unwrap(),
        &e.config_epoch,
        e.config.clone(),
        &other,
    )
    .unwrap();
    assert_eq!(
        foreign.verify(&trusted()),
        Err(VerifyError::UnknownKey(other.key_id().clone()))
    );

    // Signed by another key but claiming the trusted key's id.
    let mut claimed = foreign.clone();
    claimed.key_id = example_key().key_id().clone();
    assert_eq!(claimed.verify(&trusted()), Err(VerifyError::BadSignature));

    // Rollover: a set with both keys accepts both.
    let both = TrustedKeys::from_keys([example_key().verifying_key(), other.verifying_key()]);
    foreign.verify(&both).unwrap();
    e.verify(&both).unwrap();
}

#[test]
fn parse_refuses_bad_payloads_with_clear_reasons() {
    let e = example_envelope();
    let bytes = payload(&e);
    assert_eq!(
        Envelope::parse(&bytes, 100),
        Err(ParseError::TooLarge {
            len: bytes.len(),
            max: 100
        })
    );
    assert!(matches!(
        Envelope::parse(b"hello", 1000),
        Err(ParseError::NotJson(_))
    ));
    assert!(matches!(
        Envelope::parse(b"\xff\xfe", 1000),
        Err(ParseError::NotJson(_))
    ));
    assert!(matches!(
        Envelope::parse(b"", 1000),
        Err(ParseError::NotJson(_))
    ));
    assert_eq!(Envelope::parse(b"[1,2]", 1000), Err(ParseError::NotObject));

    let mut v = as_value(&e);
    v.as_object_mut().unwrap().remove("signature");
    assert_eq!(reparse(&v), Err(ParseError::Unsigned));
    v["signature"] = json!("");
    assert_eq!(reparse(&v), Err(ParseError::Unsigned));
    v["signature"] = Value::Null;
    assert_eq!(reparse(&v), Err(ParseError::Unsigned));

    for field in [
        "version",
        "service",
        "config",
        "checksum",
        "config_epoch",
        "issued_at",
        "key_id",
    ] {
        let mut v = as_value(&e);
        v.as_object_mut().unwrap().remove(field);
        assert_eq!(reparse(&v), Err(ParseError::MissingField(field)), "{field}");
    }

    let mut v = as_value(&e);
    v["extra\n"] = json!(1);
    assert_eq!(
        reparse(&v),
        Err(ParseError::UnknownField("\"extra\\n\"".into()))
    );

    let invalid = [
        ("version", json!(0)),
        ("version", json!(-1)),
        ("version", json!(1.5)),
        ("version", json!("7")),
        ("service", json!("../etc")),
        ("service", json!(7)),
        ("config", json!([1])),
        ("checksum", json!("ABC")),
        ("config_epoch", json!("not-a-uuid")),
        ("issued_at", json!("yesterday")),
        // Valid RFC 3339 whose UTC time is past year 9999: once a panic in
        // the UTC conversion (issue 23), now a refusal like any bad field.
        ("issued_at", json!("9999-12-31T23:59:59-23:59")),
        ("key_id", json!("a:b")),
        ("signature", json!(12)),
    ];
    for (field, value) in invalid {
        let mut v = as_value(&e);
        v[field] = value.clone();
        assert!(
            matches!(reparse(&v), Err(ParseError::InvalidField { field: f, .. }) if f == field),
            "{field} = {value}"
        );
    }

    let dup = String::from_utf8(bytes)
        .unwrap()
        .replacen("{", "{\"version\":1,", 1);
    assert!(
        matches!(Envelope::parse(dup.as_bytes(), 10_000), Err(ParseError::NotJson(m)) if m.contains("duplicate"))
    );
}

#[test]
fn sign_refuses_unrepresentable_input() {
    let e = example_envelope();
    assert_eq!(
        Envelope::sign(
            &e.service,
            Version::NONE,
            &e.config_epoch,
            e.config.clone(),
            &example_key()
        ),
        Err(EnvelopeError::InvalidVersion(Version::NONE))
    );
    // Past 2^53-1 a JSON reader may not get the exact number back.
    let beyond = Version::new(1 << 53).unwrap();
    assert_eq!(
        Envelope::sign(
            &e.service,
            beyond,
            &e.config_epoch,
            e.config.clone(),
            &example_key()
        ),
        Err(EnvelopeError::InvalidVersion(beyond))
    );
    let mut config = e.config.clone();
    config.insert("big".into(), json!(u64::MAX));
    assert!(matches!(
        Envelope::sign(
            &e.service,
            Version::FIRST,
            &e.config_epoch,
            config,
            &example_key()
        ),
        Err(EnvelopeError::Canonical(_))
    ));
}

#[test]
fn debug_is_short() {
    let shown = format!("{:?}", example_envelope());
    assert!(shown.contains("tts-worker"));
    assert!(!shown.contains("piper"));
}

#[test]
fn verifying_key_type_is_reexported_for_clients() {
    let _: VerifyingKey = example_key().verifying_key();
}

/// The worked example in `contracts/README.md` verifies, is reproduced exactly
/// from its inputs, and the README shows the exact bytes.
#[test]
fn contract_worked_example() {
    let private_pem = include_str!("../../../../contracts/examples/ed25519-test-key.pem");
    let public_pem = include_str!("../../../../contracts/examples/ed25519-test-key.pub.pem");
    let message = include_str!("../../../../contracts/examples/config-update.json");
    let readme = include_str!("../../../../contracts/README.md");

    // The PEM files are OpenSSL's form of the RFC 8032 TEST 1 key.
    let key = SigningKey::from_pkcs8_pem(private_pem).unwrap();
    assert_eq!(key.key_id(), example_key().key_id());
    let public = VerifyingKey::from_spki_pem(public_pem).unwrap();
    assert_eq!(public, key.verifying_key());

    let parsed = Envelope::parse(message.trim().as_bytes(), DEFAULT_MAX_ENVELOPE_BYTES).unwrap();
    parsed.verify(&TrustedKeys::from_keys([public])).unwrap();
    let rebuilt = example_envelope();
    assert_eq!(parsed, rebuilt);
    assert_eq!(message.trim().as_bytes(), payload(&rebuilt).as_slice());

    let config_canonical =
        String::from_utf8(canonical::object_to_canonical_bytes(&rebuilt.config).unwrap()).unwrap();
    let signed = String::from_utf8(rebuilt.signed_bytes().unwrap()).unwrap();
    for shown in [
        config_canonical.as_str(),
        signed.as_str(),
        rebuilt.checksum.as_str(),
        rebuilt.signature.as_str(),
        rebuilt.key_id.as_str(),
        message.trim(),
        private_pem.trim(),
        public_pem.trim(),
    ] {
        assert!(readme.contains(shown), "README lacks {shown}");
    }
}
