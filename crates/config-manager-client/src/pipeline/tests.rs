use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use config_manager_core::crypto::signing::SigningKey;
use config_manager_core::envelope::config_checksum;
use serde::Deserialize;
use serde_json::json;
use time::macros::datetime;

use super::*;

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00:00 UTC);
const EPOCH: &str = "5b0c3f0e-8a51-4c8e-9a43-7f6d2b1e0a01";
const OTHER_EPOCH: &str = "9e2d7c41-1f3b-4a5e-8c6d-0b1a2c3d4e5f";
const MIN: time::Duration = time::Duration::MINUTE;

#[derive(Debug, Deserialize, PartialEq)]
struct Tts {
    volume_percent: u8,
    #[serde(default)]
    api_key: Option<String>,
}

fn key() -> SigningKey {
    SigningKey::from_seed(&[42; 32])
}

fn v(n: i64) -> Version {
    Version::new(n).unwrap()
}

fn service() -> ServiceName {
    ServiceName::parse("tts-worker").unwrap()
}

/// A pipeline that applied version 5 of EPOCH with volume 50 (as from REST).
fn pipeline() -> (UpdatePipeline<Tts>, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let p = UpdatePipeline::new(PipelineConfig {
        service: service(),
        trusted: TrustedKeys::from_keys([key().verifying_key()]),
        policy: FreshnessPolicy::default(),
        max_payload: 4096,
        initial: Arc::new(Tts {
            volume_percent: 50,
            api_key: Some("sk-real".into()),
        }),
        initial_raw: json!({"volume_percent": 50, "api_key": "sk-real"})
            .as_object()
            .unwrap()
            .clone(),
        applied: Some(AppliedState {
            epoch: Epoch::parse(EPOCH).unwrap(),
            version: v(5),
            checksum: None,
        }),
        counters: Arc::clone(&counters),
    });
    (p, counters)
}

fn config(volume: u64) -> Map<String, Value> {
    json!({"volume_percent": volume, "api_key": SECRET_MASK})
        .as_object()
        .unwrap()
        .clone()
}

fn envelope_at(epoch: &str, version: i64, volume: u64, issued: OffsetDateTime) -> Envelope {
    Envelope::sign_at(
        &service(),
        v(version),
        &Epoch::parse(epoch).unwrap(),
        config(volume),
        issued,
        &key(),
    )
    .unwrap()
}

fn bytes(e: &Envelope) -> Vec<u8> {
    e.to_json_bytes().unwrap()
}

fn tamper(e: &Envelope, edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
    let mut object = e.to_object();
    edit(&mut object);
    serde_json::to_vec(&object).unwrap()
}

/// A callback that counts its calls and succeeds.
fn counting() -> (Box<Callback<Tts>>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    (
        Box::new(move |_: &Tts| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }),
        calls,
    )
}

/// Feeds `payload` and asserts it was rejected with `label`, with the config,
/// the applied state and the callback untouched.
fn assert_rejected(p: &mut UpdatePipeline<Tts>, payload: &[u8], label: &str) {
    let before_config = Arc::clone(p.current());
    let before_state = p.applied().cloned();
    let (callback, calls) = counting();
    match p.handle(payload, NOW, Some(&*callback)) {
        Outcome::Rejected(reason) => assert_eq!(reason.label(), label, "{reason}"),
        other => panic!("expected rejection {label}, got {other:?}"),
    }
    assert!(
        Arc::ptr_eq(p.current(), &before_config),
        "config changed on {label}"
    );
    assert_eq!(
        p.applied().cloned(),
        before_state,
        "state changed on {label}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "callback called on {label}"
    );
}

#[test]
fn valid_update_is_applied_and_callback_called_once() {
    let (mut p, counters) = pipeline();
    let (callback, calls) = counting();
    let e = envelope_at(EPOCH, 6, 80, NOW);
    let outcome = p.handle(&bytes(&e), NOW, Some(&*callback));
    assert_eq!(
        outcome,
        Outcome::Applied {
            version: v(6),
            epoch: Epoch::parse(EPOCH).unwrap()
        }
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(p.current().volume_percent, 80);
    // The masked secret kept the value from the REST load.
    assert_eq!(p.current().api_key.as_deref(), Some("sk-real"));
    assert_eq!(p.applied().unwrap().version, v(6));
    assert_eq!(counters.snapshot().applied, 1);

    // Its periodic re-issue (new issued_at and signature) is ignored quietly.
    let again = envelope_at(EPOCH, 6, 80, NOW + MIN);
    let outcome = p.handle(&bytes(&again), NOW + MIN, Some(&*callback));
    assert_eq!(outcome, Outcome::Ignored(IgnoreReason::Duplicate));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(counters.snapshot().ignored, 1);
    assert_eq!(counters.snapshot().rejected_total(), 0);
}

#[test]
fn late_joiner_accepts_newer_version_of_any_age() {
    let (mut p, _) = pipeline();
    let old_but_newer = envelope_at(EPOCH, 9, 70, NOW - time::Duration::DAY * 3);
    assert!(matches!(
        p.handle(&bytes(&old_but_newer), NOW, None),
        Outcome::Applied { version, .. } if version == v(9)
    ));
}

#[test]
fn tampered_config_is_rejected() {
    let (mut p, _) = pipeline();
    let e = envelope_at(EPOCH, 6, 80, NOW);
    let payload = tamper(&e, |o| {
        o["config"]["volume_percent"] = json!(100);
    });
    assert_rejected(&mut p, &payload, "checksum_mismatch");
}

#[test]
fn tampered_config_with_recomputed_checksum_is_rejected() {
    let (mut p, _) = pipeline();
    let e = envelope_at(EPOCH, 6, 80, NOW);
    let payload = tamper(&e, |o| {
        let forged = config(100);
        o.insert("checksum".into(), json!(config_checksum(&forged).unwrap()));
        o.insert("config".into(), Value::Object(forged));
    });
    assert_rejected(&mut p, &payload, "bad_signature");
}

#[test]
fn tampered_checksum_is_rejected() {
    let (mut p, _) = pipeline();
    let e = envelope_at(EPOCH, 6, 80, NOW);
    let payload = tamper(&e, |o| {
        o.insert("checksum".into(), json!("ab".repeat(32)));
    });
    assert_rejected(&mut p, &payload, "checksum_mismatch");
}

#[test]
fn wrong_key_is_rejected() {
    let (mut p, _) = pipeline();
    let intruder = SigningKey::generate();
    let e = Envelope::sign_at(
        &service(),
        v(6),
        &Epoch::parse(EPOCH).unwrap(),
        config(80),
        NOW,
        &intruder,
    )
    .unwrap();
    assert_rejected(&mut p, &bytes(&e), "unknown_key");
    // The same, claiming the trusted key's id.
    let payload = tamper(&e, |o| {
        o.insert("key_id".into(), json!(key().key_id().as_str()));
    });
    assert_rejected(&mut p, &payload, "bad_signature");
}

#[test]
fn bad_base64_signature_is_rejected() {
    let (mut p, _) = pipeline();
    let e = envelope_at(EPOCH, 6, 80, NOW);
    let payload = tamper(&e, |o| {
        o.insert("signature".into(), json!("%%%not-base64%%%"));
    });
    assert_rejected(&mut p, &payload, "bad_base64");
    let payload = tamper(&e, |o| {
        o.insert("signature".into(), json!("c2hvcnQ="));
    });
    assert_rejected(&mut p, &payload, "bad_signature_length");
}

#[test]
fn unsigned_message_is_rejected() {
    let (mut p, _) = pipeline();
    let e = envelope_at(EPOCH, 6, 80, NOW);
    let payload = tamper(&e, |o| {
        o.remove("signature");
    });
    assert_rejected(&mut p, &payload, "unsigned");
}

#[test]
fn replayed_older_version_is_rejected() {
    let (mut p, _) = pipeline();
    let (callback, _) = counting();
    let v6 = envelope_at(EPOCH, 6, 60, NOW - MIN);
    let v7 = envelope_at(EPOCH, 7, 70, NOW);
    assert!(matches!(
        p.handle(&bytes(&v6), NOW, Some(&*callback)),
        Outcome::Applied { .. }
    ));
    assert!(matches!(
        p.handle(&bytes(&v7), NOW, Some(&*callback)),
        Outcome::Applied { .. }
    ));
    // v6 is freshly signed and authentic, but older: a replay.
    assert_rejected(&mut p, &bytes(&v6), "replay");
    assert_eq!(p.current().volume_percent, 70);
}

#[test]
fn same_version_with_other_content_applies_only_when_fresh() {
    let (mut p, _) = pipeline();
    let v6 = envelope_at(EPOCH, 6, 60, NOW - 10 * MIN);
    assert!(matches!(
        p.handle(&bytes(&v6), NOW, None),
        Outcome::Applied { .. }
    ));
    // The manager's effective config changed without a new version (an env
    // override changed across its restart): the fresh re-issue applies...
    let changed = envelope_at(EPOCH, 6, 61, NOW);
    assert!(matches!(
        p.handle(&bytes(&changed), NOW, None),
        Outcome::Applied { .. }
    ));
    assert_eq!(p.current().volume_percent, 61);
    // ...and the old variant, replayed, does not.
    assert_rejected(&mut p, &bytes(&v6), "version_conflict");
}

#[test]
fn other_epoch_is_applied_only_when_fresh() {
    let (mut p, _) = pipeline();
    assert_rejected(
        &mut p,
        &bytes(&envelope_at(OTHER_EPOCH, 1, 10, NOW - 10 * MIN)),
        "stale_epoch",
    );
    let fresh = envelope_at(OTHER_EPOCH, 1, 10, NOW - 4 * MIN);
    assert!(matches!(
        p.handle(&bytes(&fresh), NOW, None),
        Outcome::Applied { version, .. } if version == v(1)
    ));
    assert_eq!(p.applied().unwrap().epoch.as_str(), OTHER_EPOCH);
}

#[test]
fn stale_issued_at_is_rejected_without_a_reference_version() {
    let counters = Arc::new(Counters::default());
    let mut p = UpdatePipeline::<Tts>::new(PipelineConfig {
        service: service(),
        trusted: TrustedKeys::from_keys([key().verifying_key()]),
        policy: FreshnessPolicy::default(),
        max_payload: 4096,
        initial: Arc::new(Tts {
            volume_percent: 100,
            api_key: None,
        }),
        initial_raw: Map::new(),
        applied: None,
        counters,
    });
    assert_rejected(
        &mut p,
        &bytes(&envelope_at(EPOCH, 3, 30, NOW - 6 * MIN)),
        "stale",
    );
    assert_rejected(
        &mut p,
        &bytes(&envelope_at(EPOCH, 3, 30, NOW + 5 * MIN)),
        "from_future",
    );
    assert!(matches!(
        p.handle(&bytes(&envelope_at(EPOCH, 3, 30, NOW - MIN)), NOW, None),
        Outcome::Applied { .. }
    ));
    // No REST value to carry over: the mask stays as it came.
    assert_eq!(p.current().api_key.as_deref(), Some(SECRET_MASK));
}

#[test]
fn oversized_and_non_json_payloads_are_rejected() {
    let (mut p, _) = pipeline();
    let mut big = config(80);
    big.insert("padding".into(), json!("x".repeat(5000)));
    let e = Envelope::sign_at(
        &service(),
        v(6),
        &Epoch::parse(EPOCH).unwrap(),
        big,
        NOW,
        &key(),
    )
    .unwrap();
    assert_rejected(&mut p, &bytes(&e), "oversized");
    assert_rejected(&mut p, b"volume=100", "not_json");
    assert_rejected(&mut p, b"\xff\xfe\x00", "not_json");
    assert_rejected(&mut p, b"", "not_json");
    assert_rejected(&mut p, b"[]", "not_object");
}

#[test]
fn message_for_another_service_is_rejected() {
    let (mut p, _) = pipeline();
    let other = ServiceName::parse("stt-worker").unwrap();
    let e = Envelope::sign_at(
        &other,
        v(6),
        &Epoch::parse(EPOCH).unwrap(),
        config(80),
        NOW,
        &key(),
    )
    .unwrap();
    assert_rejected(&mut p, &bytes(&e), "wrong_service");
}

#[test]
fn config_that_does_not_fit_the_type_is_rejected() {
    let (mut p, _) = pipeline();
    let mut bad = config(80);
    bad.insert("volume_percent".into(), json!("loud"));
    let e = Envelope::sign_at(
        &service(),
        v(6),
        &Epoch::parse(EPOCH).unwrap(),
        bad,
        NOW,
        &key(),
    )
    .unwrap();
    assert_rejected(&mut p, &bytes(&e), "invalid_config");
}

#[test]
fn failing_callback_keeps_previous_config_and_retries_on_reissue() {
    let (mut p, counters) = pipeline();
    let refuse: Box<Callback<Tts>> = Box::new(|c: &Tts| {
        if c.volume_percent > 90 {
            Err("too loud".into())
        } else {
            Ok(())
        }
    });
    let e = envelope_at(EPOCH, 6, 95, NOW);
    let outcome = p.handle(&bytes(&e), NOW, Some(&*refuse));
    assert_eq!(
        outcome,
        Outcome::Rejected(RejectReason::CallbackFailed("too loud".into()))
    );
    assert_eq!(p.current().volume_percent, 50);
    assert_eq!(p.applied().unwrap().version, v(5));
    assert_eq!(counters.snapshot().rejected("callback_failed"), 1);

    // The same version re-issued later is tried again (not a duplicate).
    let (ok, calls) = counting();
    let reissue = envelope_at(EPOCH, 6, 95, NOW + MIN);
    assert!(matches!(
        p.handle(&bytes(&reissue), NOW + MIN, Some(&*ok)),
        Outcome::Applied { .. }
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(p.current().volume_percent, 95);
}

#[test]
fn counters_count_by_reason() {
    let (mut p, counters) = pipeline();
    p.handle(b"nope", NOW, None);
    p.handle(b"nope", NOW, None);
    p.handle(b"[]", NOW, None);
    let snap = counters.snapshot();
    assert_eq!(snap.rejected("not_json"), 2);
    assert_eq!(snap.rejected("not_object"), 1);
    assert_eq!(snap.rejected_total(), 3);
}

#[test]
fn omitted_secret_keeps_the_rest_value() {
    // The manager leaves secrets out of MQTT payloads (docs/mqtt.md).
    let (mut p, _) = pipeline();
    let mut without_secret = config(80);
    without_secret.remove("api_key");
    let e = Envelope::sign_at(
        &service(),
        v(6),
        &Epoch::parse(EPOCH).unwrap(),
        without_secret,
        NOW,
        &key(),
    )
    .unwrap();
    assert!(matches!(
        p.handle(&bytes(&e), NOW, None),
        Outcome::Applied { version, .. } if version == v(6)
    ));
    assert_eq!(p.current().volume_percent, 80);
    assert_eq!(p.current().api_key.as_deref(), Some("sk-real"));
}
