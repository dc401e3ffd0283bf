//! The shared golden vectors `contracts/vectors/envelopes.json` (written by
//! `examples/gen_vectors.rs`; the Python client's tests read the same file):
//! every case through the client's real pipeline, with the expected outcome
//! and reason label, and the canonical bytes, checksum and signature of the
//! accepted ones recomputed independently of the generator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use config_manager_client::counters::Counters;
use config_manager_client::pipeline::{Outcome, PipelineConfig, UpdatePipeline};
use config_manager_client::{AppliedState, FreshnessPolicy};
use config_manager_core::crypto::canonical::object_to_canonical_bytes;
use config_manager_core::crypto::signing::{TrustedKeys, VerifyingKey};
use config_manager_core::domain::{parse_rfc3339, Epoch, ServiceName};
use config_manager_core::envelope::{config_checksum, Envelope};
use serde_json::{Map, Value};

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contracts/vectors/envelopes.json"
    );
    serde_json::from_slice(&std::fs::read(path).expect("read the vectors")).expect("vectors JSON")
}

fn applied(v: &Value) -> Option<AppliedState> {
    if v.is_null() {
        return None;
    }
    Some(AppliedState {
        epoch: Epoch(v["epoch"].as_str().unwrap().into()),
        version: v["version"].as_u64().unwrap(),
        checksum: v["checksum"].as_str().map(str::to_owned),
    })
}

#[test]
fn every_vector_gets_its_expected_outcome() {
    let doc = vectors();
    let service = ServiceName::parse(doc["service"].as_str().unwrap()).unwrap();
    let now = parse_rfc3339(doc["now"].as_str().unwrap()).unwrap();
    let keys: Vec<VerifyingKey> = doc["trusted_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pem| VerifyingKey::from_spki_pem(pem.as_str().unwrap()).unwrap())
        .collect();
    for (key, id) in keys.iter().zip(doc["trusted_key_ids"].as_array().unwrap()) {
        assert_eq!(
            key.key_id().as_str(),
            id.as_str().unwrap(),
            "key id of a trusted key"
        );
    }
    let policy = FreshnessPolicy {
        max_age: Duration::from_secs(doc["policy"]["max_age_secs"].as_u64().unwrap()),
        max_skew: Duration::from_secs(doc["policy"]["max_skew_secs"].as_u64().unwrap()),
        accept_stale_initial: doc["policy"]["accept_stale_initial"].as_bool().unwrap(),
    };
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "vectors lost cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let payload = base64::engine::general_purpose::STANDARD
            .decode(case["payload_b64"].as_str().unwrap())
            .unwrap();
        let mut pipeline = UpdatePipeline::<Map<String, Value>>::new(PipelineConfig {
            service: service.clone(),
            trusted: TrustedKeys::from_keys(keys.iter().cloned()),
            policy: policy.clone(),
            max_payload: usize::try_from(case["max_payload_bytes"].as_u64().unwrap()).unwrap(),
            initial: Arc::new(Map::new()),
            initial_raw: Map::new(),
            applied: applied(&case["applied"]),
            counters: Arc::new(Counters::default()),
        });
        let got = match pipeline.handle(&payload, now, None) {
            Outcome::Applied { .. } => ("apply", None),
            Outcome::Ignored(_) => ("ignore", None),
            Outcome::Rejected(r) => ("reject", Some(r.label())),
        };
        let want = (
            case["expect"]["outcome"].as_str().unwrap(),
            case["expect"]["reason"].as_str(),
        );
        if got != want {
            failures.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
        if let Some(hex_bytes) = case["canonical_config_hex"].as_str() {
            let envelope = Envelope::parse(&payload, usize::MAX).unwrap();
            let canonical = object_to_canonical_bytes(&envelope.config).unwrap();
            assert_eq!(
                hex::encode(&canonical),
                hex_bytes,
                "{name}: canonical config"
            );
            assert_eq!(
                config_checksum(&envelope.config).unwrap(),
                case["checksum"].as_str().unwrap(),
                "{name}: checksum"
            );
            assert_eq!(
                hex::encode(envelope.signed_bytes().unwrap()),
                case["signed_bytes_hex"].as_str().unwrap(),
                "{name}: signed bytes"
            );
            assert_eq!(
                envelope.signature,
                case["signature"].as_str().unwrap(),
                "{name}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_worked_example_is_the_first_accepted_vector_key() {
    // The vectors' trusted key is the published test key of contracts/examples.
    let doc = vectors();
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contracts/examples/ed25519-test-key.pub.pem"
    ))
    .unwrap();
    assert_eq!(
        doc["trusted_key_ids"][0].as_str().unwrap(),
        VerifyingKey::from_spki_pem(&pem).unwrap().key_id().as_str()
    );
}
