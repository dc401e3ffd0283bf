//! Writes the shared applied-state vectors `contracts/vectors/applied-state.json`,
//! read by `tests/vectors.rs` (the core parser accepts or refuses each report,
//! the default instance ids, the Rust report builder) and by the Python
//! client's `tests/test_applied_vectors.py` (the JSON Schema agrees where it
//! can, the same default ids, the Python report builder gives the same reports).
//!
//! The parser verdicts, default ids, id grammar and topics are written out
//! here by hand and checked against the core before the file is written, so
//! they state the contract rather than record what the code does. The
//! `builder` sequences are recorded from the Rust report builder; the Python
//! builder must give the same reports. Deterministic:
//!
//! ```sh
//! cargo run -p config-manager-client --example gen_applied_vectors
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use config_manager_client::report::Reporter;
use config_manager_core::applied::{
    applied_topic, parse_applied_topic, AppliedReport, AppliedReportError, InstanceId,
    MAX_APPLIED_REPORT_BYTES,
};
use config_manager_core::domain::{Epoch, ServiceName, Version};
use config_manager_core::envelope::freshness::AppliedState;
use serde_json::{json, Value};
use time::macros::datetime;

const EPOCH: &str = "550e8400-e29b-41d4-a716-446655440000";
const SERVICE: &str = "tts-worker";
const INSTANCE: &str = "robot-7-tts-worker";

fn base() -> Value {
    json!({
        "service": SERVICE,
        "instance_id": INSTANCE,
        "config_epoch": EPOCH,
        "version": 7,
        "status": "applied",
        "reason": null,
        "rejected_version": null,
        "applied_at": "2026-01-15T09:30:00.120Z",
        "client": {"name": "config-manager-client", "version": "0.1.0"}
    })
}

fn with(changes: Value) -> Value {
    let mut v = base();
    for (k, change) in changes.as_object().unwrap() {
        if change == &json!("<remove>") {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = change.clone();
        }
    }
    v
}

struct Reports(Vec<Value>);

impl Reports {
    /// `expect`: `valid`, `invalid`, `too_large` or `topic_mismatch`;
    /// `schema_valid`: whether the JSON Schema alone accepts the payload
    /// (its extra rules are the parser's), `null` when it is not JSON.
    fn add(&mut self, name: &str, payload: Value, expect: &str, schema_valid: bool) {
        self.check(name, &serde_json::to_vec(&payload).unwrap(), expect);
        self.0.push(json!({
            "name": name, "topic": topic(), "payload": payload,
            "expect": expect, "schema_valid": schema_valid,
        }));
    }

    fn add_text(&mut self, name: &str, text: &str, expect: &str, schema_valid: Option<bool>) {
        self.check(name, text.as_bytes(), expect);
        self.0.push(json!({
            "name": name, "topic": topic(), "payload_text": text,
            "expect": expect, "schema_valid": schema_valid,
        }));
    }

    fn check(&self, name: &str, payload: &[u8], expect: &str) {
        let (service, instance) = parse_applied_topic(&topic()).unwrap();
        let got = match AppliedReport::parse(payload, &service, &instance) {
            Ok(_) => "valid",
            Err(AppliedReportError::TooLarge) => "too_large",
            Err(AppliedReportError::Invalid(_)) => "invalid",
            Err(AppliedReportError::TopicMismatch) => "topic_mismatch",
        };
        assert_eq!(got, expect, "report case {name}");
    }
}

fn topic() -> String {
    applied_topic(
        &ServiceName::parse(SERVICE).unwrap(),
        &InstanceId::parse(INSTANCE).unwrap(),
    )
}

fn reports() -> Vec<Value> {
    let mut r = Reports(Vec::new());
    r.add("applied", base(), "valid", true);
    r.add(
        "rejected_keeps_version",
        with(json!({"status": "rejected", "reason": "invalid_config", "rejected_version": 8})),
        "valid",
        true,
    );
    r.add(
        "rejected_before_any_config",
        with(
            json!({"status": "rejected", "reason": "bad_signature", "rejected_version": 3,
            "config_epoch": null, "version": null, "applied_at": null}),
        ),
        "valid",
        true,
    );
    r.add(
        "rejected_unreadable_update",
        with(json!({"status": "rejected", "reason": "not_json"})),
        "valid",
        true,
    );
    r.add(
        "offline_with_version",
        with(json!({"status": "offline"})),
        "valid",
        true,
    );
    r.add(
        "offline_nothing_applied",
        with(
            json!({"status": "offline", "config_epoch": null, "version": null, "applied_at": null}),
        ),
        "valid",
        true,
    );
    r.add(
        "applied_at_with_offset",
        with(json!({"applied_at": "2026-01-15T11:30:00+02:00"})),
        "valid",
        true,
    );
    r.add(
        "python_client_local_version",
        with(json!({"client": {"name": "tars-config-client", "version": "0.1.0+local.1"}})),
        "valid",
        true,
    );
    // Refused by the JSON Schema as well as by the parser.
    r.add(
        "unknown_member",
        with(json!({"extra": 1})),
        "invalid",
        false,
    );
    r.add(
        "missing_client",
        with(json!({"client": "<remove>"})),
        "invalid",
        false,
    );
    r.add(
        "missing_reason_member",
        with(json!({"reason": "<remove>"})),
        "invalid",
        false,
    );
    r.add(
        "unknown_status",
        with(json!({"status": "degraded"})),
        "invalid",
        false,
    );
    r.add(
        "version_zero",
        with(json!({"version": 0})),
        "invalid",
        false,
    );
    r.add(
        "version_negative",
        with(json!({"version": -1})),
        "invalid",
        false,
    );
    r.add(
        "version_string",
        with(json!({"version": "7"})),
        "invalid",
        false,
    );
    r.add(
        "version_fraction",
        with(json!({"version": 7.5})),
        "invalid",
        false,
    );
    r.add(
        "epoch_not_uuid",
        with(json!({"config_epoch": "epoch-1"})),
        "invalid",
        false,
    );
    r.add(
        "reason_with_a_value",
        with(json!({"status": "rejected", "reason": "Value was secret123!"})),
        "invalid",
        false,
    );
    r.add(
        "reason_too_long",
        with(json!({"status": "rejected", "reason": "a".repeat(65)})),
        "invalid",
        false,
    );
    r.add(
        "rejected_version_zero",
        with(json!({"status": "rejected", "reason": "stale", "rejected_version": 0})),
        "invalid",
        false,
    );
    r.add(
        "client_name_with_space",
        with(json!({"client": {"name": "a b", "version": "1"}})),
        "invalid",
        false,
    );
    r.add(
        "client_name_with_plus",
        with(json!({"client": {"name": "a+b", "version": "1"}})),
        "invalid",
        false,
    );
    r.add(
        "client_unknown_member",
        with(json!({"client": {"name": "a", "version": "1", "pid": 7}})),
        "invalid",
        false,
    );
    // Valid for the JSON Schema alone; the parser's cross-member rules refuse them.
    r.add(
        "version_without_epoch",
        with(json!({"config_epoch": null})),
        "invalid",
        true,
    );
    r.add(
        "applied_without_version",
        with(json!({"config_epoch": null, "version": null})),
        "invalid",
        true,
    );
    r.add(
        "rejected_without_reason",
        with(json!({"status": "rejected"})),
        "invalid",
        true,
    );
    r.add(
        "applied_with_reason",
        with(json!({"reason": "stale"})),
        "invalid",
        true,
    );
    r.add(
        "offline_with_rejected_version",
        with(json!({"status": "offline", "rejected_version": 3})),
        "invalid",
        true,
    );
    // `format: date-time` is an annotation unless a validator asserts it.
    r.add(
        "applied_at_not_a_time",
        with(json!({"applied_at": "yesterday"})),
        "invalid",
        true,
    );
    r.add(
        "other_service_than_topic",
        with(json!({"service": "stt-worker"})),
        "topic_mismatch",
        true,
    );
    r.add(
        "other_instance_than_topic",
        with(json!({"instance_id": "robot-8-tts-worker"})),
        "topic_mismatch",
        true,
    );
    let mut big = base();
    big["pad"] = json!("x".repeat(MAX_APPLIED_REPORT_BYTES));
    r.add("larger_than_16_kib", big, "too_large", false);
    // The optional members of issue 24 (decision 4).
    r.add(
        "pinned_fields",
        with(json!({"pinned": {"tts_volume": "TTS_VOLUME", "log_level": "LOG_LEVEL"}})),
        "valid",
        true,
    );
    r.add(
        "crashed_with_fields_by_the_agent",
        with(
            json!({"status": "rejected", "reason": "crashed", "rejected_version": 8,
                    "fields": ["tts_volume"],
                    "client": {"name": "config-agent", "version": "0.1.0"}}),
        ),
        "valid",
        true,
    );
    r.add(
        "pinned_null",
        with(json!({"pinned": null})),
        "invalid",
        false,
    );
    r.add(
        "pinned_bad_variable",
        with(json!({"pinned": {"tts_volume": "TTS-VOLUME"}})),
        "invalid",
        false,
    );
    r.add(
        "pinned_bad_key",
        with(json!({"pinned": {"tts.volume": "TTS_VOLUME"}})),
        "invalid",
        false,
    );
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("f{i}"), json!("V"))).collect();
    r.add(
        "pinned_65_entries",
        with(json!({"pinned": many})),
        "invalid",
        false,
    );
    r.add(
        "fields_twice",
        with(json!({"status": "rejected", "reason": "invalid_config", "fields": ["a", "a"]})),
        "invalid",
        false,
    );
    r.add(
        "fields_not_strings",
        with(json!({"status": "rejected", "reason": "invalid_config", "fields": [1]})),
        "invalid",
        false,
    );
    // Valid for the JSON Schema alone: `fields` only with a rejection.
    r.add(
        "fields_with_applied",
        with(json!({"fields": ["a"]})),
        "invalid",
        true,
    );
    r.add_text("not_json", "{not json", "invalid", None);
    r.add_text("array", "[]", "invalid", Some(false));
    // Python's json keeps the last duplicate; the strict parser refuses it.
    let dup = base().to_string().replacen(
        "\"status\":\"applied\"",
        "\"status\":\"rejected\",\"status\":\"applied\"",
        1,
    );
    assert!(dup.contains("\"status\":\"rejected\",\"status\""), "{dup}");
    r.add_text("duplicate_member", &dup, "invalid", Some(true));
    r.0
}

/// Host name and service → default instance id, written out by hand.
fn default_ids() -> Vec<Value> {
    let long_host = format!("{}.{}", "x".repeat(100), "y".repeat(52));
    let cases: Vec<(String, &str, String)> = vec![
        ("robot-7".into(), "tts-worker", "robot-7-tts-worker".into()),
        (
            "Robot-7.local".into(),
            "tts-worker",
            "robot-7-local-tts-worker".into(),
        ),
        (
            "TARS_Pi5".into(),
            "stt-worker",
            "tars-pi5-stt-worker".into(),
        ),
        ("".into(), "tts-worker", "tts-worker".into()),
        ("--..--".into(), "tts-worker", "tts-worker".into()),
        ("-host-".into(), "router", "host-router".into()),
        ("a b\tc".into(), "ui", "a-b-c-ui".into()),
        // Non-ASCII: one '-' per character, never lower-cased into two.
        (
            "Ärger\u{130}".into(),
            "tts-worker",
            "rger-tts-worker".into(),
        ),
        ("日本".into(), "tts-worker", "tts-worker".into()),
        ("h😀st".into(), "tts-worker", "h-st-tts-worker".into()),
        (
            "h".repeat(200),
            "tts-worker",
            format!("{}-tts-worker", "h".repeat(53)),
        ),
        // The cut lands on a '-': it is dropped so the id starts with a letter.
        (
            long_host,
            "tts-worker",
            format!("{}-tts-worker", "y".repeat(52)),
        ),
    ];
    cases
        .into_iter()
        .map(|(host, service, id)| {
            let got = InstanceId::default_for(&host, &ServiceName::parse(service).unwrap());
            assert_eq!(got.as_str(), id, "default id for {host:?}");
            assert!(InstanceId::parse(&id).is_ok(), "{id}");
            json!({"host": host, "service": service, "id": id})
        })
        .collect()
}

fn instance_ids() -> Value {
    let valid = vec![
        "a".to_owned(),
        "0".to_owned(),
        "Robot_7.tts-worker".to_owned(),
        "x".repeat(64),
    ];
    let invalid = vec![
        "".to_owned(),
        "-a".to_owned(),
        ".a".to_owned(),
        "_a".to_owned(),
        "a/b".to_owned(),
        "a+b".to_owned(),
        "a#".to_owned(),
        "a b".to_owned(),
        "ä".to_owned(),
        "x".repeat(65),
    ];
    for id in &valid {
        assert!(InstanceId::parse(id).is_ok(), "{id}");
    }
    for id in &invalid {
        assert!(InstanceId::parse(id).is_err(), "{id}");
    }
    json!({"valid": valid, "invalid": invalid})
}

fn topics() -> Vec<Value> {
    let cases = [
        (
            "system/config/tts-worker/applied/robot-7",
            Some(("tts-worker", "robot-7")),
        ),
        ("system/config/a/applied/A.b_c-1", Some(("a", "A.b_c-1"))),
        ("system/config/tts-worker", None),
        ("system/config/tts-worker/applied", None),
        ("system/config/tts-worker/applied/", None),
        ("system/config/tts-worker/applied/a/b", None),
        ("system/config/TTS/applied/a", None),
        ("system/config/tts-worker/other/a", None),
        ("system/config/tts-worker/applied/+", None),
        ("system/config/tts-worker/applied/#", None),
        ("system/health/tts-worker/applied/a", None),
    ];
    cases
        .iter()
        .map(|(topic, expect)| {
            let got = parse_applied_topic(topic);
            assert_eq!(
                got.as_ref().map(|(s, i)| (s.as_str(), i.as_str())),
                *expect,
                "{topic}"
            );
            match expect {
                Some((s, i)) => json!({"topic": topic, "service": s, "instance_id": i}),
                None => json!({"topic": topic, "service": null, "instance_id": null}),
            }
        })
        .collect()
}

/// What a client reports along a sequence of events (`client` left out: its
/// name and version differ between the two libraries). `null`: nothing new
/// to publish.
fn builder() -> Vec<Value> {
    let service = ServiceName::parse(SERVICE).unwrap();
    let instance = InstanceId::parse(INSTANCE).unwrap();
    let t0 = datetime!(2026-01-15 09:30:00.120 UTC);
    let t1 = datetime!(2026-01-15 09:31:05.007 UTC);
    let v = |n: i64| Version::new(n).unwrap();
    let state = |version: i64| AppliedState {
        epoch: Epoch::parse(EPOCH).unwrap(),
        version: v(version),
        checksum: None,
    };
    let strip = |r: Option<AppliedReport>| match r {
        None => Value::Null,
        Some(r) => {
            let mut v = serde_json::to_value(r).unwrap();
            v.as_object_mut().unwrap().remove("client");
            v
        }
    };
    let mut sequences = Vec::new();

    let mut r = Reporter::new(service.clone(), instance.clone(), Some(&state(5)), t0);
    let mut steps = vec![
        json!({"event": "start", "version": 5, "at": "2026-01-15T09:30:00.120Z",
        "report": strip(r.current().cloned())}),
    ];
    for (label, version) in [
        ("replay", Some(v(4))),
        ("replay", Some(v(4))),
        ("not_json", None),
    ] {
        steps.push(
            json!({"event": "rejected", "reason": label, "rejected_version": version,
            "report": strip(r.rejected(label, version))}),
        );
    }
    steps.push(
        json!({"event": "applied", "version": 6, "at": "2026-01-15T09:31:05.007Z",
        "report": strip(Some(r.applied(&state(6), t1)))}),
    );
    steps.push(json!({"event": "offline", "report": strip(Some(r.offline()))}));
    sequences.push(json!({"name": "versioned_start_up", "epoch": EPOCH, "steps": steps}));

    let mut r = Reporter::new(service, instance, None, t0);
    let mut steps = vec![json!({"event": "start", "version": null, "at": null,
        "report": strip(r.current().cloned())})];
    steps.push(json!({"event": "offline", "report": strip(Some(r.offline()))}));
    steps.push(
        json!({"event": "rejected", "reason": "unknown_key", "rejected_version": 3,
        "report": strip(r.rejected("unknown_key", Some(v(3))))}),
    );
    steps.push(
        json!({"event": "rejected", "reason": "stale", "rejected_version": 0,
        "report": strip(r.rejected("stale", Some(Version::NONE)))}),
    );
    sequences.push(json!({"name": "defaults_start_up", "epoch": EPOCH, "steps": steps}));
    sequences
}

fn main() {
    let doc = json!({
        "description": "Applied-state report vectors (contracts/README.md, \"Applied state\"). reports: payloads on `topic` with the manager parser's verdict (valid, invalid, too_large, topic_mismatch) and whether the JSON Schema alone accepts them (null: not JSON). default_instance_ids: host name + service -> the default id. instance_ids: the CONFIG_INSTANCE_ID grammar. topics: report topics and what they name (null: not a report topic). builder: what a client reports along a sequence of events (client member left out; null = nothing new to publish). Written by `cargo run -p config-manager-client --example gen_applied_vectors`.",
        "max_report_bytes": MAX_APPLIED_REPORT_BYTES,
        "reports": reports(),
        "default_instance_ids": default_ids(),
        "instance_ids": instance_ids(),
        "topics": topics(),
        "builder": builder(),
    });
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contracts/vectors/applied-state.json"
    );
    let mut text = serde_json::to_string_pretty(&doc).unwrap();
    text.push('\n');
    std::fs::write(path, text).unwrap();
    println!("wrote {path}");
}
