//! Key rotation against the real binary: master-key re-encryption of 1,000
//! secrets interrupted by SIGKILL and resumed, a wrong key as a named degraded
//! state, and LKG HMAC key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, READ_TOKEN};
use serde_json::{json, Map, Value};

const KEY_A: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
const KEY_B: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";
const KEY_C: &str = "Q0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0M=";
const SERVICES: usize = 20;
const FIELDS: usize = 50;

fn write_vault_schemas(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    for s in 0..SERVICES {
        let mut props = Map::new();
        for f in 0..FIELDS {
            props.insert(
                format!("s{f:02}"),
                json!({"type": ["string", "null"], "default": null, "writeOnly": true, "x-secret": true, "description": "a secret"}),
            );
        }
        let schema = json!({"type": "object", "additionalProperties": false, "properties": props});
        std::fs::write(
            dir.join(format!("vault-{s:02}.json")),
            serde_json::to_vec(&schema).unwrap(),
        )
        .unwrap();
    }
}

fn secret_value(s: usize, f: usize) -> String {
    format!("secret-{s:02}-{f:02}-value")
}

fn set_env(s: &mut Server, key: &str, value: &str) {
    s.extra_env.retain(|(k, _)| k != key);
    s.extra_env.push((key.into(), value.into()));
}

fn unset_env(s: &mut Server, key: &str) {
    s.extra_env.retain(|(k, _)| k != key);
    s.extra_env.push((key.into(), String::new()));
}

async fn key_status(s: &Server) -> Value {
    let (status, body) = s.get("/keys/status", Some(READ_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_key_status(s: &Server, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = key_status(s).await;
        if pred(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {st}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn master_key_rotation_of_1000_secrets_survives_sigkill_and_resumes() {
    let mut s = Server::start_with(vec![
        ("CONFIG_MASTER_KEY_BASE64".into(), KEY_A.into()),
        ("CONFIG_MASTER_KEY_ID".into(), "key-a".into()),
    ])
    .await;
    let dir = s.path("schemas");
    write_vault_schemas(&dir);
    set_env(&mut s, "CONFIG_SCHEMA_DIR", &dir.display().to_string());
    s.terminate();
    s.spawn().await;
    for sv in 0..SERVICES {
        let config: Map<String, Value> = (0..FIELDS)
            .map(|f| (format!("s{f:02}"), Value::String(secret_value(sv, f))))
            .collect();
        s.patch_ok(&format!("vault-{sv:02}"), Value::Object(config), 1)
            .await;
    }
    let st = key_status(&s).await;
    assert_eq!(st["secrets_total"], SERVICES * FIELDS);
    assert_eq!(st["secrets_current"], SERVICES * FIELDS);

    // Rotate: B is current, A stays as previous. Small batches so the job is
    // still running when it is killed.
    s.terminate();
    set_env(&mut s, "CONFIG_MASTER_KEY_BASE64", KEY_B);
    set_env(&mut s, "CONFIG_MASTER_KEY_ID", "key-b");
    set_env(&mut s, "CONFIG_MASTER_KEY_PREVIOUS_BASE64", KEY_A);
    set_env(&mut s, "CONFIG_MASTER_KEY_PREVIOUS_ID", "key-a");
    set_env(&mut s, "CONFIG_ROTATION_BATCH", "5");
    s.spawn().await;
    let mid = wait_key_status(&s, "rotation under way", |st| {
        st["secrets_current"].as_u64().unwrap_or(0) >= 200
    })
    .await;
    s.kill9();
    let done_before_kill = mid["secrets_current"].as_u64().unwrap();
    assert!(
        done_before_kill < (SERVICES * FIELDS) as u64,
        "rotation finished before the kill: {mid}"
    );

    // Resume to completion.
    s.spawn().await;
    let st = wait_key_status(&s, "rotation done", |st| st["secrets_pending"] == 0).await;
    assert_eq!(st["secrets_current"], SERVICES * FIELDS);
    assert_eq!(st["secrets_unavailable"], json!([]));

    // The old key can go: everything still decrypts with B alone.
    s.terminate();
    unset_env(&mut s, "CONFIG_MASTER_KEY_PREVIOUS_BASE64");
    unset_env(&mut s, "CONFIG_MASTER_KEY_PREVIOUS_ID");
    s.spawn().await;
    let st = key_status(&s).await;
    assert_eq!(st["secrets_current"], SERVICES * FIELDS, "{st}");
    for (sv, f) in [(0, 0), (7, 13), (19, 49)] {
        let (status, body) = s
            .reveal(
                &format!("vault-{sv:02}"),
                &format!("s{f:02}"),
                "rotation check",
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["value"], secret_value(sv, f));
    }
    // No clear text on disk.
    let mut bytes = std::fs::read(s.db_path()).unwrap();
    bytes.extend(std::fs::read(s.db_path().with_extension("db-wal")).unwrap_or_default());
    bytes.extend(std::fs::read(s.path("data/lkg.json")).unwrap_or_default());
    bytes.extend(std::fs::read(s.path("data/lkg.json.journal")).unwrap_or_default());
    let needle = secret_value(7, 13);
    assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()));
}

#[tokio::test]
async fn a_wrong_master_key_is_a_named_degraded_state() {
    let mut s = Server::start_with(vec![
        ("CONFIG_MASTER_KEY_BASE64".into(), KEY_A.into()),
        ("CONFIG_MASTER_KEY_ID".into(), "key-a".into()),
    ])
    .await;
    s.patch_ok(
        "llm-worker",
        json!({"openai_api_key": "sk-0123456789abcdef"}),
        1,
    )
    .await;
    s.terminate();
    // Same id, different key material.
    set_env(&mut s, "CONFIG_MASTER_KEY_BASE64", KEY_C);
    s.spawn().await;
    let st = key_status(&s).await;
    assert_eq!(
        st["secrets_unavailable"],
        json!(["llm-worker/openai_api_key"])
    );
    // Still serving; the secret is masked, reveal explains.
    let (status, body) = s.get("/services/llm-worker", Some(READ_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(body["config"]["openai_api_key"], "********");
    let (status, body) = s.reveal("llm-worker", "openai_api_key", "check").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("cannot be decrypted"));
    assert!(s.log().contains("llm-worker/openai_api_key"));
    // Nothing was lost: the right key brings it back.
    s.terminate();
    set_env(&mut s, "CONFIG_MASTER_KEY_BASE64", KEY_A);
    s.spawn().await;
    let (_, body) = s.reveal("llm-worker", "openai_api_key", "check").await;
    assert_eq!(body["value"], "sk-0123456789abcdef");
}

#[tokio::test]
async fn lkg_hmac_key_rotation_reseals_the_cache() {
    let k1 = "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=";
    let k2 = "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjI=";
    let mut s = Server::start_with(vec![
        ("LKG_HMAC_KEY_BASE64".into(), k1.into()),
        ("LKG_HMAC_KEY_ID".into(), "lkg-1".into()),
    ])
    .await;
    let lkg = |s: &Server| -> Value {
        serde_json::from_slice(&std::fs::read(s.path("data/lkg.json")).unwrap()).unwrap()
    };
    assert_eq!(lkg(&s)["key_id"], "lkg-1");
    s.terminate();
    set_env(&mut s, "LKG_HMAC_KEY_BASE64", k2);
    set_env(&mut s, "LKG_HMAC_KEY_ID", "lkg-2");
    set_env(&mut s, "LKG_HMAC_KEY_PREVIOUS_BASE64", k1);
    set_env(&mut s, "LKG_HMAC_KEY_PREVIOUS_ID", "lkg-1");
    s.spawn().await;
    assert_eq!(lkg(&s)["key_id"], "lkg-2", "re-sealed with the new key");
    assert!(
        !s.log().contains("failed verification"),
        "the old cache verified with the previous key"
    );
    let (_, h) = s.get("/health", None).await;
    assert_eq!(h["lkg_cache_valid"], true);
}

#[tokio::test]
async fn cli_rotate_master_then_status_shows_completion() {
    // Keys come from the generated .env file (first run), as in production.
    let mut s = Server::start().await;
    s.patch_ok(
        "llm-worker",
        json!({"openai_api_key": "sk-rotate-me-0123456789"}),
        1,
    )
    .await;
    s.terminate();
    let before = std::fs::read_to_string(s.path(".env")).unwrap();
    let out = common::cli(&s, &["keys", "rotate-master"]);
    assert!(out.status.success(), "{}", common::text(&out));
    let after = std::fs::read_to_string(s.path(".env")).unwrap();
    assert!(after.contains("CONFIG_MASTER_KEY_PREVIOUS_BASE64="));
    assert_ne!(before, after);
    s.spawn().await;
    let st = wait_key_status(&s, "rotation done", |st| st["secrets_pending"] == 0).await;
    assert_eq!(st["secrets_current"], 1);
    assert!(st["master_key_id"]
        .as_str()
        .unwrap()
        .starts_with("master-2"));
    let out = s
        .command()
        .args([
            "keys",
            "status",
            "--url",
            &format!("http://127.0.0.1:{}", s.port),
        ])
        .env("CONFIG_API_TOKEN", READ_TOKEN)
        .output()
        .unwrap();
    let shown = common::success_json(&out);
    assert_eq!(shown["secrets_pending"], 0);
    let (_, body) = s.reveal("llm-worker", "openai_api_key", "check").await;
    assert_eq!(body["value"], "sk-rotate-me-0123456789");
}
