//! Attacks through input (issue 14, findings 1, 3, 7, 9 and 12), each tried
//! against the real binary, real SQLite files and, where publishing matters,
//! a real mosquitto: environment variables read through `x-env`, secrets
//! smuggled in through imported profiles, the dry-run import as a secret
//! oracle, hostile keys and float integers, and configurations too large to
//! publish.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/mqtt.rs"]
mod mqtt_support;

use std::time::Duration;

use common::{Server, READ_TOKEN, WRITE_TOKEN};
use config_manager_core::envelope::{Envelope, DEFAULT_MAX_ENVELOPE_BYTES, MAX_CONFIG_BYTES};
use config_manager_core::store::Store;
use mqtt_support::{env_public_key, trusted, Broker, Subscriber};
use serde_json::{json, Map, Value};

const TTS: &str = "/services/tts-worker";
const WAIT: Duration = Duration::from_secs(20);

/// An export document holding `services` and `profiles`.
fn document(services: Value, profiles: Value) -> Value {
    json!({
        "format": "config-manager-export",
        "format_version": 1,
        "services": services,
        "profiles": profiles,
    })
}

fn pointers(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["pointer"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ---- finding 1: x-env ------------------------------------------------------

/// A write-role caller registers a schema whose `x-env` names the service's
/// own token list (the attack of the issue). Refused with 422 naming the
/// field; with `CONFIG_ENV_ALLOW` set, allowed names work and the service's
/// own variables stay refused even when a pattern would match them.
#[tokio::test]
async fn api_schema_cannot_read_service_variables_through_x_env() {
    let leak = |var: &str| {
        format!(
            r#"{{"type":"object","properties":{{"leak":{{"type":"string","default":"","x-env":"{var}"}}}}}}"#
        )
    };
    let s = Server::start_with(vec![("TARS_ROBOT_NAME".into(), "r2-unit".into())]).await;
    for var in [
        "CONFIG_API_TOKENS",
        "CONFIG_MASTER_KEY_BASE64",
        "MQTT_URL",
        "REBUILD_TOKEN",
        "RUST_LOG",
        // Not the service's, but not allowed either: the default list is empty.
        "TARS_ROBOT_NAME",
    ] {
        let (status, body) = s.put_schema("envleak", &leak(var)).await;
        assert_eq!(status, 422, "{var}: {body}");
        assert_eq!(pointers(&body), ["/properties/leak/x-env"], "{body}");
        assert!(
            body["errors"][0]["message"].as_str().unwrap().contains(var),
            "{body}"
        );
    }
    let (status, _) = s.get("/services/envleak", Some(READ_TOKEN)).await;
    assert_eq!(status, 404, "nothing was registered");
    drop(s);

    let s = Server::start_with(vec![
        ("TARS_ROBOT_NAME".into(), "r2-unit".into()),
        ("CONFIG_ENV_ALLOW".into(), "TARS_*, CONFIG_*".into()),
    ])
    .await;
    let (status, body) = s.put_schema("envok", &leak("TARS_ROBOT_NAME")).await;
    assert_eq!(status, 200, "{body}");
    let (_, got) = s.get("/services/envok", Some(READ_TOKEN)).await;
    assert_eq!(got["config"]["leak"], "r2-unit", "{got}");
    assert_eq!(got["sources"]["leak"], "env", "{got}");
    let (status, body) = s.put_schema("envleak", &leak("CONFIG_API_TOKENS")).await;
    assert_eq!(
        status, 422,
        "CONFIG_* allowed by the operator is still reserved: {body}"
    );
    assert!(!body.to_string().contains(WRITE_TOKEN));
}

/// Schemas the API never checked: a `CONFIG_SCHEMA_DIR` file naming
/// `CONFIG_API_TOKENS`, and a schema stored in the database before the rule
/// existed naming `CONFIG_DB_PATH`. Neither is read (REST shows the default);
/// a non-reserved variable of the operator's file still is.
#[tokio::test]
async fn schema_dir_and_stored_schemas_never_read_service_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dirleak.json"),
        r#"{"type":"object","properties":{
            "tokens":{"type":"string","default":"none","x-env":"CONFIG_API_TOKENS"},
            "robot":{"type":"string","default":"none","x-env":"TARS_ROBOT_NAME"}}}"#,
    )
    .unwrap();
    let mut s = Server::start_with(vec![
        (
            "CONFIG_SCHEMA_DIR".into(),
            dir.path().to_string_lossy().into_owned(),
        ),
        ("TARS_ROBOT_NAME".into(), "r2-unit".into()),
    ])
    .await;
    s.terminate();
    // As if registered over the API by an older release.
    let store = Store::open(&s.db_path()).unwrap();
    store
        .save_registered_schema(
            &config_manager_core::domain::ServiceName::parse("oldleak").unwrap(),
            r#"{"type":"object","properties":{"db":{"type":"string","default":"none","x-env":"CONFIG_DB_PATH"}}}"#,
            "writer",
        )
        .unwrap();
    drop(store);
    s.spawn().await;

    let (status, got) = s.get("/services/dirleak", Some(READ_TOKEN)).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["config"]["tokens"], "none", "{got}");
    assert_ne!(got["sources"]["tokens"], "env");
    assert_eq!(
        got["config"]["robot"], "r2-unit",
        "operator schemas read other variables"
    );
    assert!(!got.to_string().contains(WRITE_TOKEN));
    let (status, got) = s.get("/services/oldleak", Some(READ_TOKEN)).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["config"]["db"], "none", "{got}");
    assert!(!got.to_string().contains("config.db"));
    let (_, export) = s.get("/export", Some(WRITE_TOKEN)).await;
    assert!(!export.to_string().contains(WRITE_TOKEN));
    let log = s.log();
    assert!(
        log.contains("x-env override not read") && log.contains("oldleak/db"),
        "{log}"
    );
}

// ---- finding 3: profiles in imports -----------------------------------------

/// The issue's hostile import: a profile carrying a secret in clear text and
/// a `../evil` service. Refused as a whole with errors naming both; nothing
/// is stored. Schema rules and the key rule apply to profiles too.
#[tokio::test]
async fn imported_profiles_are_validated_and_never_hold_secrets() {
    let s = Server::start().await;
    let hostile = document(
        json!({}),
        json!([{"name": "hostile", "config_snapshot": {
            "tts-worker": {"eleven_api_key": "sk-planted-secret"},
            "../evil": {"x": 1},
        }}]),
    );
    let (status, body) = s.post("/import", &hostile).await;
    assert_eq!(status, 422, "{body}");
    let got = pointers(&body);
    assert!(
        got.contains(&"/profiles/0/config_snapshot/tts-worker/eleven_api_key".to_owned()),
        "{body}"
    );
    assert!(
        got.contains(&"/profiles/0/config_snapshot/..~1evil".to_owned()),
        "{body}"
    );
    let (status, _) = s.get("/profiles/hostile", Some(READ_TOKEN)).await;
    assert_eq!(status, 404);

    for (snapshot, pointer) in [
        (
            json!({"tts-worker": {"volume_percent": 9999}}),
            "/profiles/0/config_snapshot/tts-worker/volume_percent",
        ),
        (
            json!({"tts-worker": {"no_such_field": 1}}),
            "/profiles/0/config_snapshot/tts-worker/no_such_field",
        ),
        (
            json!({"no-such-service": {}}),
            "/profiles/0/config_snapshot/no-such-service",
        ),
        (
            json!({"tts-worker": "not an object"}),
            "/profiles/0/config_snapshot/tts-worker",
        ),
    ] {
        let doc = document(
            json!({}),
            json!([{"name": "p", "config_snapshot": snapshot}]),
        );
        let (status, body) = s.post("/import", &doc).await;
        assert_eq!(status, 422, "{snapshot}: {body}");
        assert_eq!(pointers(&body), [pointer], "{body}");
    }
    let good = document(
        json!({}),
        json!([{"name": "quiet", "config_snapshot": {"tts-worker": {"volume_percent": 10}}}]),
    );
    let (status, body) = s.post("/import", &good).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["profiles_saved"], json!(["quiet"]));
}

/// A profile stored in clear text before the fix (planted in the database
/// file) loses its secret on the next start, audited; activating it never
/// replaces the stored secret.
#[tokio::test]
async fn stored_profile_secrets_are_removed_and_activation_keeps_secrets() {
    let mut s = Server::start().await;
    s.patch_latest("tts-worker", json!({"eleven_api_key": "real-vendor-key"}))
        .await;
    s.terminate();
    let store = Store::open(&s.db_path()).unwrap();
    let snapshot: Map<String, Value> = serde_json::from_value(json!({
        "tts-worker": {"eleven_api_key": "planted-key", "volume_percent": 33},
    }))
    .unwrap();
    store
        .save_profile("legacy", None, &snapshot, "writer")
        .unwrap();
    drop(store);
    s.spawn().await;

    let (status, profile) = s.get("/profiles/legacy", Some(READ_TOKEN)).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(
        profile["config_snapshot"]["tts-worker"],
        json!({"volume_percent": 33}),
        "{profile}"
    );
    let entries = s.audit_entries("action=profile.secrets_removed").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["target"], "legacy");
    assert_eq!(
        entries[0]["detail"]["removed"],
        json!(["tts-worker/eleven_api_key"])
    );
    let (_, export) = s
        .get("/export?include_profiles=true", Some(WRITE_TOKEN))
        .await;
    assert!(!export.to_string().contains("planted-key"));

    let (status, body) = s
        .send(
            "PUT",
            "/profiles/legacy/activate",
            Some(WRITE_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, got) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(got["config"]["volume_percent"], 33);
    let (status, revealed) = s
        .reveal("tts-worker", "eleven_api_key", "check activation kept it")
        .await;
    assert_eq!(status, 200, "{revealed}");
    assert_eq!(revealed["value"], "real-vendor-key");
}

// ---- finding 7: dry-run import as an oracle ---------------------------------

/// A right and a wrong guess of a secret get the same dry-run answer, and
/// every dry run (also a refused one) is in the audit log.
#[tokio::test]
async fn dry_run_import_says_nothing_about_secret_values_and_is_audited() {
    let s = Server::start().await;
    s.patch_latest("tts-worker", json!({"eleven_api_key": "the-right-key"}))
        .await;
    let guess = |value: &str| {
        document(
            json!({"tts-worker": {"config": {"eleven_api_key": value}}}),
            json!([]),
        )
    };
    let mut answers = Vec::new();
    for value in ["the-right-key", "a-wrong-guess"] {
        let (status, body) = s.post("/import?dry_run=true", &guess(value)).await;
        assert_eq!(status, 200, "{body}");
        answers.push(body);
    }
    for part in ["services_updated", "services_unchanged"] {
        assert_eq!(
            answers[0][part], answers[1][part],
            "the answer depends on the guess: {answers:?}"
        );
    }
    for body in &answers {
        assert_eq!(
            body["secrets_written"],
            json!(["tts-worker/eleven_api_key"])
        );
    }
    let (status, _) = s
        .post(
            "/import?dry_run=true",
            &document(json!({"../x": {"config": {}}}), json!([])),
        )
        .await;
    assert_eq!(status, 422);
    let entries = s.audit_entries("action=config.import_dry_run").await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[0]["outcome"], "refused");
    assert_eq!(entries[1]["outcome"], "ok");
    assert_eq!(entries[0]["actor"], "writer");
    assert!(!Value::Array(entries).to_string().contains("the-right-key"));
    // Nothing was written by the dry runs.
    assert_eq!(s.version("tts-worker").await, 2);
}

// ---- finding 9: keys and integers -------------------------------------------

/// Hostile keys on a schema that accepts unknown properties, through every
/// way values enter: PUT, PATCH, import and profiles in an import. Each is
/// refused with 422 naming the key (escaped, shortened); nothing is stored.
#[tokio::test]
async fn hostile_keys_are_refused_on_every_write_path() {
    let s = Server::start().await;
    let (status, body) = s
        .put_schema(
            "loose",
            r#"{"type":"object","properties":{"speed":{"type":"integer","default":5}}}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let long = "k".repeat(200_000);
    let bad_keys: [&str; 5] = ["", "a\u{0}b", "a/b", "__proto__", &long];
    for key in bad_keys {
        let mut config = Map::new();
        config.insert(key.to_owned(), json!(1));
        let config = Value::Object(config);
        let version = s.version("loose").await;
        for method in ["PUT", "PATCH"] {
            let (status, body) = s
                .send(
                    method,
                    "/services/loose",
                    Some(WRITE_TOKEN),
                    &json!({"config": config, "version": version}),
                )
                .await;
            assert_eq!(
                status,
                422,
                "{method} {:?}: {body}",
                &key[..key.len().min(10)]
            );
            let message = body["errors"][0]["message"].as_str().unwrap();
            assert!(message.starts_with("invalid key"), "{message}");
            assert!(message.len() < 300, "the key is shortened: {message}");
            assert!(!message.contains('\u{0}'), "control characters escaped");
        }
        let doc = document(json!({"loose": {"config": config}}), json!([]));
        let (status, body) = s.post("/import", &doc).await;
        assert_eq!(status, 422, "import: {body}");
        assert!(
            pointers(&body)[0].starts_with("/services/loose/config/"),
            "{body}"
        );
        let doc = document(
            json!({}),
            json!([{"name": "p", "config_snapshot": {"loose": config}}]),
        );
        let (status, body) = s.post("/import", &doc).await;
        assert_eq!(status, 422, "profile: {body}");
        assert!(
            pointers(&body)[0].starts_with("/profiles/0/config_snapshot/loose/"),
            "{body}"
        );
    }
    let (_, got) = s.get("/services/loose", Some(READ_TOKEN)).await;
    assert_eq!(got["version"], 1, "{got}");
    assert_eq!(got["config"], json!({"speed": 5}));
    let (status, _) = s.get("/profiles/p", Some(READ_TOKEN)).await;
    assert_eq!(status, 404);
    // A schema property must follow the same rule.
    let (status, body) = s
        .put_schema(
            "badprops",
            r#"{"type":"object","properties":{"a/b":{"type":"integer","default":1}}}"#,
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

/// `60.0` and `-0` sent for integer fields are stored as `60` and `0`, so
/// REST (raw text) and the signed MQTT message say the same thing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_fields_store_integers_and_rest_matches_mqtt() {
    let broker = Broker::start();
    let mut live = Subscriber::connect(broker.port, "system/config/tts-worker").await;
    let s = Server::start_with_mqtt(broker.url()).await;
    let key = env_public_key(&s.path(".env"));
    let version = s.version("tts-worker").await;
    let (status, body) = s
        .send_raw(
            "PATCH",
            TTS,
            format!(r#"{{"config":{{"volume_percent":60.0}},"version":{version}}}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let new_version = body["version"].as_u64().unwrap();
    let raw = s.get_text(TTS, READ_TOKEN).await;
    assert!(
        raw.contains(r#""volume_percent":60,"#) || raw.contains(r#""volume_percent":60}"#),
        "{raw}"
    );
    let msg = live
        .next_matching(WAIT, "after the PATCH", |m| {
            m.json()["version"].as_u64() == Some(new_version)
        })
        .await;
    let envelope = Envelope::parse(&msg.payload, DEFAULT_MAX_ENVELOPE_BYTES).unwrap();
    envelope.verify(&trusted(&key)).unwrap();
    let rest: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        envelope.config["volume_percent"],
        rest["config"]["volume_percent"]
    );
    assert!(rest["config"]["volume_percent"].is_i64());

    let (status, body) = s.put_schema("signed",
        r#"{"type":"object","properties":{"offset":{"type":"integer","default":3,"minimum":-10}}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .send_raw(
            "PUT",
            "/services/signed",
            r#"{"config":{"offset":-0},"version":1}"#.into(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let raw = s.get_text("/services/signed", READ_TOKEN).await;
    assert!(raw.contains(r#""offset":0"#), "{raw}");
    let rest: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(rest["config"]["offset"].as_i64(), Some(0), "{raw}");
}

// ---- finding 12: oversized configurations -----------------------------------

/// A configuration that could not be published is refused at write time
/// (PUT, import, profile in an import), and one exactly at the limit is
/// stored and published: the limit is the publisher's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_configs_are_refused_at_write_time() {
    let broker = Broker::start();
    let mut live = Subscriber::connect(broker.port, "system/config/big").await;
    let s = Server::start_with(vec![
        ("MQTT_URL".into(), broker.url()),
        ("CONFIG_MAX_BODY_BYTES".into(), "1048576".into()),
    ])
    .await;
    let (status, body) = s.put_schema("big",
        r#"{"type":"object","additionalProperties":false,"properties":{"blob":{"type":"string","default":""}}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Canonical JSON of {"blob":"…"} is the string plus 11 bytes.
    let at_limit = "x".repeat(MAX_CONFIG_BYTES - 11);
    let over = "x".repeat(300_000);

    let (status, body) = s
        .put_config("big", &json!({"config": {"blob": over}, "version": 1}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "{body}"
    );
    assert_eq!(s.version("big").await, 1, "nothing stored");
    let doc = document(json!({"big": {"config": {"blob": over}}}), json!([]));
    let (status, _) = s.post("/import", &doc).await;
    assert_eq!(status, 422);
    let doc = document(
        json!({}),
        json!([{"name": "huge", "config_snapshot": {"big": {"blob": over}}}]),
    );
    let (status, body) = s.post("/import", &doc).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(s.version("big").await, 1);

    let (status, body) = s
        .put_config("big", &json!({"config": {"blob": at_limit}, "version": 1}))
        .await;
    assert_eq!(status, 200, "{body}");
    let msg = live
        .next_matching(WAIT, "the largest accepted config", |m| {
            m.json()["version"].as_u64() == Some(2)
        })
        .await;
    assert!(msg.payload.len() <= DEFAULT_MAX_ENVELOPE_BYTES);
    assert_eq!(
        msg.json()["config"]["blob"].as_str().map(str::len),
        Some(at_limit.len())
    );
}
