//! Unit tests of the input rules of issue 14: `x-env` policy, the one key
//! rule, integer normalization, the size limit and profile secrets.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::*;
use crate::change_type::ChangeType;
use crate::crypto::key_id::KeyId;
use crate::crypto::secret_box::{MasterKey, SecretKeyRing};
use crate::envelope::MAX_CONFIG_BYTES;
use crate::manager::test_support::open_manager;
use crate::schema::{EnvPolicy, FieldError};

fn options(policy: EnvPolicy) -> ManagerOptions {
    ManagerOptions {
        allow_unknown_services: false,
        env_policy: Arc::new(policy),
        env: Arc::new(|name| match name {
            "CONFIG_API_TOKENS" => Some("admin=secret-token:config.write".into()),
            "TARS_OPENAI_API_KEY" => Some("sk-operator".into()),
            "TARS_ROBOT" => Some("r2".into()),
            _ => None,
        }),
        secrets: Some(Arc::new(SecretKeyRing::new(
            KeyId::parse("k1").unwrap(),
            MasterKey::generate(),
        ))),
        auto_fix_schema: false,
    }
}

fn open(policy: EnvPolicy) -> (tempfile::TempDir, Manager) {
    open_manager(options(policy))
}

fn name(s: &str) -> ServiceName {
    ServiceName::parse(s).unwrap()
}

fn write(m: &Manager, service: &str, config: Value) -> Result<WriteOutcome> {
    let service = name(service);
    let version = m
        .store()
        .get_config(&service)
        .map_or(Version::NONE, |c| c.version);
    m.put(
        &service,
        PutRequest {
            config: config.as_object().cloned().unwrap_or_default(),
            expected_version: Some(version),
            merge: true,
            actor: "op".into(),
            reason: None,
            change_type: ChangeType::Update,
        },
    )
}

fn field_errors(r: Result<impl std::fmt::Debug>) -> Vec<FieldError> {
    match r {
        Err(ManagerError::Validation(e)) => e,
        other => panic!("expected field errors, got {other:?}"),
    }
}

fn schema_with_env(var: &str) -> String {
    format!(
        r#"{{"type":"object","properties":{{"v":{{"type":"string","default":"d","x-env":"{var}"}}}}}}"#
    )
}

#[test]
fn api_schemas_read_only_allowed_variables_and_never_reserved_ones() {
    let allow = EnvPolicy::parse_allow_list("TARS_ROBOT").unwrap();
    let (_d, m) = open(EnvPolicy::new(["CONFIG_API_TOKENS"], allow));
    // Built-in schemas read operator variables.
    let llm = m
        .get_effective(&name("llm-worker"), SecretView::Revealed, false)
        .unwrap();
    assert!(llm.config.values().any(|v| v == "sk-operator"), "{llm:?}");
    for var in ["CONFIG_API_TOKENS", "CONFIG_OTHER", "TARS_OPENAI_API_KEY"] {
        let errors = field_errors(m.register_schema(&name("leak"), &schema_with_env(var), "op"));
        assert_eq!(errors[0].pointer, "/properties/v/x-env");
        assert!(errors[0].message.contains(var));
    }
    let m = m
        .register_schema(&name("robot"), &schema_with_env("TARS_ROBOT"), "op")
        .unwrap();
    let got = m
        .get_effective(&name("robot"), SecretView::Masked, false)
        .unwrap();
    assert_eq!(got.config["v"], "r2");
    assert!(m.env_refusals().is_empty(), "{:?}", m.env_refusals());
}

#[test]
fn stored_api_schemas_follow_the_rule_when_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = Store::open(&path).unwrap();
    store
        .save_registered_schema(&name("old"), &schema_with_env("CONFIG_API_TOKENS"), "op")
        .unwrap();
    let m = Manager::open(
        store,
        SchemaRegistry::builtin().unwrap(),
        options(EnvPolicy::new(["CONFIG_API_TOKENS"], vec![])),
    )
    .unwrap();
    let got = m
        .get_effective(&name("old"), SecretView::Revealed, false)
        .unwrap();
    assert_eq!(got.config["v"], "d");
    assert_eq!(m.env_refusals().len(), 1);
}

#[test]
fn keys_integers_and_size_are_checked_on_write() {
    let (_d, m) = open(EnvPolicy::default());
    let m = m
        .register_schema(
            &name("loose"),
            r#"{"type":"object","properties":{"n":{"type":"integer","default":1},"x":{"type":["number","null"],"default":null}}}"#,
            "op",
        )
        .unwrap();
    let errors = field_errors(write(&m, "loose", json!({"a/b": 1, "ok_key": 2})));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].pointer, "/a~1b");
    let stored = write(&m, "loose", json!({"n": 60.0, "x": 2.0}))
        .unwrap()
        .stored;
    assert!(stored.config["n"].is_i64(), "{:?}", stored.config);
    assert!(stored.config["x"].is_f64(), "number fields keep floats");
    let big = "x".repeat(MAX_CONFIG_BYTES);
    let errors = field_errors(write(&m, "loose", json!({"blob": big})));
    assert!(errors[0].message.contains("limit"), "{errors:?}");
}

#[test]
fn profiles_never_hold_or_apply_secrets() {
    let (d, m) = open(EnvPolicy::default());
    write(&m, "tts-worker", json!({"eleven_api_key": "kept"})).unwrap();
    let mut snapshot = Map::new();
    snapshot.insert(
        "tts-worker".into(),
        json!({"eleven_api_key": "planted", "volume_percent": 7}),
    );
    m.store()
        .save_profile("legacy", None, &snapshot, "op")
        .unwrap();
    // Activation ignores the secret even before any scrub ran.
    m.activate_profile("legacy", "op").unwrap();
    assert_eq!(
        m.reveal_secret(&name("tts-worker"), "eleven_api_key")
            .unwrap(),
        Some(json!("kept"))
    );
    drop(m);
    let store = Store::open(&d.path().join("c.db")).unwrap();
    let m = Manager::open(
        store,
        SchemaRegistry::builtin().unwrap(),
        options(EnvPolicy::default()),
    )
    .unwrap();
    let p = m.store().get_profile("legacy").unwrap();
    assert_eq!(
        p.config_snapshot["tts-worker"],
        json!({"volume_percent": 7})
    );
    let errors = m
        .profile_snapshot_errors(&snapshot, "/profiles/0/config_snapshot")
        .unwrap();
    assert_eq!(
        errors[0].pointer,
        "/profiles/0/config_snapshot/tts-worker/eleven_api_key"
    );
}
