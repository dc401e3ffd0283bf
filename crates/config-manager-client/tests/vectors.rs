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
        epoch: Epoch::parse(v["epoch"].as_str().unwrap()).unwrap(),
        version: serde_json::from_value(v["version"].clone()).unwrap(),
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

// ---- contracts/vectors/applied-state.json (examples/gen_applied_vectors.rs) ----

fn applied_vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contracts/vectors/applied-state.json"
    );
    serde_json::from_slice(&std::fs::read(path).expect("read the applied-state vectors"))
        .expect("vectors JSON")
}

#[test]
fn applied_state_reports_get_the_parser_verdict() {
    use config_manager_core::applied::{parse_applied_topic, AppliedReport, AppliedReportError};
    let doc = applied_vectors();
    let cases = doc["reports"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (service, instance) = parse_applied_topic(case["topic"].as_str().unwrap()).unwrap();
        let payload = match case.get("payload_text") {
            Some(text) => text.as_str().unwrap().as_bytes().to_vec(),
            None => serde_json::to_vec(&case["payload"]).unwrap(),
        };
        let got = match AppliedReport::parse(&payload, &service, &instance) {
            Ok(report) => {
                // A valid report survives its own serialization unchanged.
                let again = AppliedReport::parse(report.to_json().as_bytes(), &service, &instance);
                assert_eq!(again.as_ref(), Ok(&report), "{name}");
                "valid"
            }
            Err(AppliedReportError::TooLarge) => "too_large",
            Err(AppliedReportError::Invalid(_)) => "invalid",
            Err(AppliedReportError::TopicMismatch) => "topic_mismatch",
        };
        assert_eq!(got, case["expect"].as_str().unwrap(), "report case {name}");
    }
}

#[test]
fn applied_state_ids_and_topics() {
    use config_manager_core::applied::{applied_topic, parse_applied_topic, InstanceId};
    let doc = applied_vectors();
    for case in doc["default_instance_ids"].as_array().unwrap() {
        let service = ServiceName::parse(case["service"].as_str().unwrap()).unwrap();
        let id = InstanceId::default_for(case["host"].as_str().unwrap(), &service);
        assert_eq!(id.as_str(), case["id"].as_str().unwrap(), "{case}");
    }
    for id in doc["instance_ids"]["valid"].as_array().unwrap() {
        assert!(InstanceId::parse(id.as_str().unwrap()).is_ok(), "{id}");
    }
    for id in doc["instance_ids"]["invalid"].as_array().unwrap() {
        assert!(InstanceId::parse(id.as_str().unwrap()).is_err(), "{id}");
    }
    for case in doc["topics"].as_array().unwrap() {
        let topic = case["topic"].as_str().unwrap();
        match parse_applied_topic(topic) {
            Some((service, instance)) => {
                assert_eq!(
                    service.as_str(),
                    case["service"].as_str().unwrap(),
                    "{topic}"
                );
                assert_eq!(instance.as_str(), case["instance_id"].as_str().unwrap());
                assert_eq!(applied_topic(&service, &instance), topic);
            }
            None => assert!(case["service"].is_null(), "{topic} should parse"),
        }
    }
}

#[test]
fn applied_state_builder_sequences() {
    use config_manager_client::report::{Reporter, CLIENT_NAME, CLIENT_VERSION};
    use config_manager_core::applied::{AppliedReport, InstanceId};
    let doc = applied_vectors();
    let strip = |r: Option<AppliedReport>| -> Value {
        let Some(r) = r else { return Value::Null };
        assert_eq!(
            (r.client.name.as_str(), r.client.version.as_str()),
            (CLIENT_NAME, CLIENT_VERSION)
        );
        let mut v = serde_json::to_value(r).unwrap();
        v.as_object_mut().unwrap().remove("client");
        v
    };
    for seq in doc["builder"].as_array().unwrap() {
        let epoch = Epoch::parse(seq["epoch"].as_str().unwrap()).unwrap();
        let state = |v: &Value| AppliedState {
            epoch: epoch.clone(),
            version: serde_json::from_value(v.clone()).unwrap(),
            checksum: None,
        };
        let at = |v: &Value| parse_rfc3339(v.as_str().unwrap()).unwrap();
        let service = ServiceName::parse("tts-worker").unwrap();
        let instance = InstanceId::parse("robot-7-tts-worker").unwrap();
        let mut reporter: Option<Reporter> = None;
        for step in seq["steps"].as_array().unwrap() {
            let report = match step["event"].as_str().unwrap() {
                "start" => {
                    let initial = (!step["version"].is_null()).then(|| state(&step["version"]));
                    let when = if step["at"].is_null() {
                        parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
                    } else {
                        at(&step["at"])
                    };
                    let r =
                        Reporter::new(service.clone(), instance.clone(), initial.as_ref(), when);
                    let current = r.current().cloned();
                    reporter = Some(r);
                    current
                }
                "applied" => Some(
                    reporter
                        .as_mut()
                        .unwrap()
                        .applied(&state(&step["version"]), at(&step["at"])),
                ),
                "rejected" => reporter.as_mut().unwrap().rejected(
                    step["reason"].as_str().unwrap(),
                    serde_json::from_value(step["rejected_version"].clone()).unwrap(),
                ),
                "offline" => Some(reporter.as_ref().unwrap().offline()),
                other => panic!("unknown event {other}"),
            };
            assert_eq!(strip(report), step["report"], "{} {step}", seq["name"]);
        }
    }
}
