//! Schema evolution from the first built-in schema set (kept in
//! `testdata/schemas-v1/`, as shipped before the schemas followed the TARS
//! services) to the current one: an install written with the old schemas
//! starts on the new ones and keeps every value.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::*;
use crate::change_type::ChangeType;
use crate::crypto::key_id::KeyId;
use crate::crypto::secret_box::{MasterKey, SecretKeyRing};
use crate::schema::ServiceSchema;

const V1: [(&str, &str); 6] = [
    (
        "llm-worker",
        include_str!("testdata/schemas-v1/llm-worker.json"),
    ),
    (
        "memory-worker",
        include_str!("testdata/schemas-v1/memory-worker.json"),
    ),
    ("router", include_str!("testdata/schemas-v1/router.json")),
    (
        "stt-worker",
        include_str!("testdata/schemas-v1/stt-worker.json"),
    ),
    (
        "tts-worker",
        include_str!("testdata/schemas-v1/tts-worker.json"),
    ),
    (
        "wake-activation",
        include_str!("testdata/schemas-v1/wake-activation.json"),
    ),
];

fn v1_registry() -> SchemaRegistry {
    let mut registry = SchemaRegistry::new();
    for (name, text) in V1 {
        let schema = ServiceSchema::from_json_str(ServiceName::parse(name).unwrap(), text).unwrap();
        registry.register(schema);
    }
    registry
}

fn open(path: &Path, schemas: SchemaRegistry, ring: &Arc<SecretKeyRing>) -> Manager {
    let options = ManagerOptions {
        allow_unknown_services: false,
        env_policy: Arc::default(),
        env: Arc::new(|_| None),
        secrets: Some(Arc::clone(ring)),
        auto_fix_schema: false,
    };
    Manager::open(Store::open(path).unwrap(), schemas, options).unwrap()
}

fn set(m: &Manager, service: &str, values: Value) {
    let s = ServiceName::parse(service).unwrap();
    let version = m
        .get_effective(&s, SecretView::Masked, false)
        .unwrap()
        .version;
    let config: Map<String, Value> = values.as_object().cloned().unwrap_or_default();
    m.put(
        &s,
        PutRequest {
            config,
            expected_version: Some(version),
            merge: true,
            actor: "op".into(),
            reason: Some("set with the old schemas".into()),
            change_type: ChangeType::Update,
        },
    )
    .unwrap();
}

fn effective(m: &Manager, service: &str) -> Map<String, Value> {
    let s = ServiceName::parse(service).unwrap();
    m.get_effective(&s, SecretView::Masked, false)
        .unwrap()
        .config
}

#[test]
fn an_install_with_the_first_schemas_starts_on_the_current_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let ring = Arc::new(SecretKeyRing::new(
        KeyId::parse("k1").unwrap(),
        MasterKey::generate(),
    ));
    {
        let m = open(&path, v1_registry(), &ring);
        set(
            &m,
            "tts-worker",
            json!({"tts_streaming": true, "tts_pipeline": false, "tts_wake_cache_enable": false,
                   "volume_percent": 42, "piper_voice": "en_GB-alan-low",
                   "eleven_api_key": "el-secret-0123456789"}),
        );
        set(
            &m,
            "stt-worker",
            json!({"streaming_partials": true, "vad_threshold": 0.7, "whisper_model": "tiny.en"}),
        );
        set(
            &m,
            "llm-worker",
            json!({"openai_model": "gpt-4o", "openai_api_key": "sk-0123456789abcdef",
                   "llm_timeout_sec": 12.5, "rag_enabled": true}),
        );
        set(
            &m,
            "wake-activation",
            json!({"wake_detection_threshold": 0.4}),
        );
        set(&m, "router", json!({"router_stream_min_chars": 45}));
    }

    let m = open(&path, SchemaRegistry::builtin().unwrap(), &ring);
    let report = m.schema_report();
    assert!(report.changed);
    assert!(report.mismatches.is_empty(), "{}", report.summary());
    assert!(report.reset.is_empty());
    for service in [
        "llm-worker",
        "router",
        "stt-worker",
        "tts-worker",
        "wake-activation",
    ] {
        assert!(
            report.upgraded.iter().any(|s| s.as_str() == service),
            "{service}"
        );
    }

    let tts = effective(&m, "tts-worker");
    // Switches keep their meaning as the integers the service parses.
    assert_eq!(tts["tts_streaming"], json!(1));
    assert_eq!(tts["tts_pipeline"], json!(0));
    assert_eq!(tts["tts_wake_cache_enable"], json!(0));
    assert_eq!(tts["tts_aggregate"], json!(1));
    assert_eq!(tts["volume_percent"], json!(42));
    assert_eq!(tts["piper_voice"], json!("en_GB-alan-low"));
    // New fields start at the service's own default.
    assert_eq!(tts["log_level"], json!("INFO"));
    assert_eq!(tts["tts_wake_ack_texts"], json!([]));

    let stt = effective(&m, "stt-worker");
    assert_eq!(stt["streaming_partials"], json!(1));
    assert_eq!(stt["vad_threshold"], json!(0.7));
    assert_eq!(stt["whisper_model"], json!("tiny.en"));
    assert_eq!(stt["chunk_duration_ms"], json!(30));

    let llm = effective(&m, "llm-worker");
    assert_eq!(llm["openai_model"], json!("gpt-4o"));
    assert_eq!(llm["llm_timeout_sec"], json!(12.5));
    assert_eq!(llm["rag_enabled"], json!(true));
    assert_eq!(llm["llm_max_tokens"], json!(256));

    assert_eq!(
        effective(&m, "wake-activation")["wake_detection_threshold"],
        json!(0.4)
    );
    assert_eq!(
        effective(&m, "router")["router_stream_min_chars"],
        json!(45)
    );

    // Secrets survive, still encrypted with the same key.
    let llm_key = m
        .reveal_secret(&ServiceName::parse("llm-worker").unwrap(), "openai_api_key")
        .unwrap();
    assert_eq!(llm_key, Some(json!("sk-0123456789abcdef")));
    let tts_key = m
        .reveal_secret(&ServiceName::parse("tts-worker").unwrap(), "eleven_api_key")
        .unwrap();
    assert_eq!(tts_key, Some(json!("el-secret-0123456789")));

    // The upgrade is one recorded step: opening again changes nothing.
    drop(m);
    let m = open(&path, SchemaRegistry::builtin().unwrap(), &ring);
    assert!(!m.schema_report().changed);
    assert_eq!(effective(&m, "tts-worker")["tts_streaming"], json!(1));
}

#[test]
fn a_boolean_is_converted_only_where_the_field_no_longer_takes_one() {
    let view_of = |doc: Value| {
        ServiceSchema::compile(ServiceName::parse("cam").unwrap(), doc)
            .unwrap()
            .view()
    };
    let view = view_of(json!({"type": "object", "properties": {
        "switch": {"type": "integer", "minimum": 0, "maximum": 1, "default": 0},
        "either": {"type": ["integer", "boolean"], "default": 0},
        "flag": {"type": "boolean", "default": false},
        "text": {"type": "string", "default": ""}
    }}));
    let mut config: Map<String, Value> = json!({
        "switch": true, "either": true, "flag": true, "text": "true"
    })
    .as_object()
    .cloned()
    .unwrap();
    assert!(super::evolve::convert_switches(&view, &mut config));
    assert_eq!(
        Value::Object(config.clone()),
        json!({"switch": 1, "either": true, "flag": true, "text": "true"})
    );
    assert!(!super::evolve::convert_switches(&view, &mut config));
}
