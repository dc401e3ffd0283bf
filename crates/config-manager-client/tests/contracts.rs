//! The JSON Schemas in `contracts/` agree with what the Rust types produce:
//! envelopes signed by core and health payloads serialized from
//! `HealthStatus` validate, and payloads the client rejects do not.

// Helpers outside #[test] fns are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use config_manager_core::crypto::signing::SigningKey;
use config_manager_core::domain::{Epoch, ServiceName, Version};
use config_manager_core::envelope::Envelope;
use config_manager_core::health::{
    DatabaseStatus, HealthStatus, LitestreamStatus, ManagerStatus, OperationalMode,
};
use serde_json::{json, Value};

fn validator(schema_text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(schema_text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("contract schema compiles")
}

fn envelope_schema() -> jsonschema::Validator {
    validator(include_str!(
        "../../../contracts/mqtt-config-update.schema.json"
    ))
}

fn health_schema() -> jsonschema::Validator {
    validator(include_str!(
        "../../../contracts/mqtt-health-status.schema.json"
    ))
}

fn assert_valid(v: &jsonschema::Validator, instance: &Value) {
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{instance}\n{errors:#?}");
}

fn signed() -> Value {
    let e = Envelope::sign(
        &ServiceName::parse("llm-worker").unwrap(),
        Version::new(12).unwrap(),
        &Epoch::generate(),
        json!({"llm_provider": "openai", "openai_api_key": "********", "nested": {"a": [1, 2.5, null]}})
            .as_object()
            .unwrap()
            .clone(),
        &SigningKey::generate(),
    )
    .unwrap();
    serde_json::from_slice(&e.to_json_bytes().unwrap()).unwrap()
}

#[test]
fn signed_envelopes_and_the_worked_example_validate() {
    let schema = envelope_schema();
    assert_valid(&schema, &signed());
    let example: Value = serde_json::from_str(include_str!(
        "../../../contracts/examples/config-update.json"
    ))
    .unwrap();
    assert_valid(&schema, &example);
    let embedded: Value = serde_json::from_str(include_str!(
        "../../../contracts/mqtt-config-update.schema.json"
    ))
    .unwrap();
    assert_eq!(embedded["examples"][0], example);
}

#[test]
fn envelopes_the_client_rejects_do_not_validate() {
    let schema = envelope_schema();
    let base = signed();
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "unsigned",
            Box::new(|v| drop(v.as_object_mut().unwrap().remove("signature"))),
        ),
        ("version 0", Box::new(|v| v["version"] = json!(0))),
        (
            "old format constant",
            Box::new(|v| v["version"] = json!("1")),
        ),
        ("bad service", Box::new(|v| v["service"] = json!("../etc"))),
        (
            "checksum case",
            Box::new(|v| v["checksum"] = json!("A".repeat(64))),
        ),
        (
            "epoch",
            Box::new(|v| v["config_epoch"] = json!("not-a-uuid")),
        ),
        (
            "issued_at",
            Box::new(|v| v["issued_at"] = json!("yesterday")),
        ),
        ("signature", Box::new(|v| v["signature"] = json!("AAAA"))),
        ("extra member", Box::new(|v| v["extra"] = json!(1))),
        ("config type", Box::new(|v| v["config"] = json!([1]))),
    ];
    for (name, edit) in edits {
        let mut v = base.clone();
        edit(&mut v);
        assert!(!schema.is_valid(&v), "{name} should not validate");
    }
}

fn health() -> HealthStatus {
    HealthStatus {
        ok: true,
        status: ManagerStatus::Online,
        database_status: DatabaseStatus::Healthy,
        operational_mode: OperationalMode::Normal,
        config_epoch: Some(Epoch::generate()),
        schema_version: 3,
        lkg_cache_valid: true,
        litestream_status: LitestreamStatus::Healthy,
        last_backup: Some("2026-01-15T09:25:00.000Z".into()),
        event: None,
        degraded_tasks: Vec::new(),
        err: None,
        mqtt_connected: true,
        mqtt_configured: true,
        uptime_seconds: 5,
        manager_version: "0.1.0".into(),
    }
}

#[test]
fn health_payloads_validate() {
    let schema = health_schema();
    assert_valid(&schema, &serde_json::to_value(health()).unwrap());
    let will = health().to_offline("config-manager connection lost");
    assert_valid(&schema, &serde_json::to_value(&will).unwrap());
    let mut degraded = health();
    degraded.database_status = DatabaseStatus::Missing;
    degraded.operational_mode = OperationalMode::ReadOnlyFallback;
    degraded.litestream_status = LitestreamStatus::Disabled;
    degraded.last_backup = None;
    degraded.ok = degraded.derived_ok();
    assert_valid(&schema, &serde_json::to_value(&degraded).unwrap());
    let example: Value = serde_json::from_str(include_str!(
        "../../../contracts/examples/health-status.json"
    ))
    .unwrap();
    assert_valid(&schema, &example);
}

#[test]
fn python_era_health_examples_lack_only_the_new_fields() {
    // The earlier contract's first example plus our five additions validates:
    // existing consumers see every field they know, unchanged.
    let mut old = json!({
        "ok": true, "database_status": "healthy", "operational_mode": "normal",
        "config_epoch": "550e8400-e29b-41d4-a716-446655440000", "schema_version": 1,
        "lkg_cache_valid": true, "litestream_status": "healthy",
        "last_backup": "2025-10-17T12:00:00Z", "event": null, "err": null
    });
    let schema = health_schema();
    assert!(!schema.is_valid(&old));
    for (k, v) in [
        ("status", json!("online")),
        ("mqtt_connected", json!(true)),
        ("mqtt_configured", json!(true)),
        ("uptime_seconds", json!(1)),
        ("manager_version", json!("0.1.0")),
    ] {
        old[k] = v;
    }
    assert_valid(&schema, &old);
    let parsed: HealthStatus = serde_json::from_value(old).unwrap();
    assert!(parsed.derived_ok());
}
