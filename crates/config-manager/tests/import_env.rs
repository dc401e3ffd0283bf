//! `import-env` against the real binary, SQLite and mosquitto: REST dry run
//! and apply (with the MQTT publish every write makes), its bad inputs, and
//! the CLI (remote and --offline).

// Helpers outside #[test] fns are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/mqtt.rs"]
mod mqtt_support;

use std::process::Output;
use std::time::Duration;

use common::{cli, success_json, text, Server, READ_TOKEN, TTS_TOKEN, WRITE_TOKEN};
use mqtt_support::{Broker, Subscriber};
use serde_json::{json, Value};

const SECRET: &str = "el-0123456789abcdef-secret";

fn tts_env() -> String {
    format!(
        "# shared TARS .env\nMQTT_URL=mqtt://tars:pass@mqtt:1883\nLOG_LEVEL=DEBUG\nTTS_STREAMING=1\n\
         TTS_AGGREGATE_DEBOUNCE_MS=300\nELEVEN_API_KEY={SECRET}\nROUTER_WAKE_ACK_CHOICES=\"Hmm?|Yes?\"\n\
         TTS_WAKE_CACHE_MAX=16\nLLM_MODEL=gpt-4o\n"
    )
}

async fn import(s: &Server, service: &str, query: &str, token: &str, body: &str) -> (u16, Value) {
    let resp = s
        .http
        .post(s.url(&format!("/services/{service}/import-env{query}")))
        .header("X-API-Token", token)
        .header("content-type", "text/plain")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    common::into_parts(resp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_then_apply_writes_one_version_and_publishes_it() {
    let broker = Broker::start();
    let mut live = Subscriber::connect(broker.port, "system/config/tts-worker").await;
    let s = Server::start_with_mqtt(broker.url()).await;
    let before = s.version("tts-worker").await;

    // Dry run: the diff, nothing written.
    let (status, dry) = import(&s, "tts-worker", "?dry_run=true", WRITE_TOKEN, &tts_env()).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (dry["dry_run"].clone(), dry["written"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(dry["version"], json!(before));
    assert_eq!(s.version("tts-worker").await, before);
    let changes = dry["changes"].as_array().unwrap();
    let debounce = changes
        .iter()
        .find(|c| c["field"] == "tts_aggregate_debounce_ms")
        .unwrap();
    assert_eq!(debounce["variable"], "TTS_AGGREGATE_DEBOUNCE_MS");
    assert_eq!(
        (debounce["old"].clone(), debounce["new"].clone()),
        (json!(150), json!(300))
    );
    let key = changes
        .iter()
        .find(|c| c["field"] == "eleven_api_key")
        .unwrap();
    assert_eq!(key["secret"], json!(true));
    assert_eq!(key["change"], "changed");
    assert!(key.get("new").is_none());
    assert!(!dry.to_string().contains(SECRET));
    assert_eq!(dry["ignored"], json!(["LLM_MODEL", "MQTT_URL"]));
    assert_eq!(dry["unchanged"], json!(["tts_wake_cache_max"]));
    let acks = changes
        .iter()
        .find(|c| c["field"] == "tts_wake_ack_texts")
        .unwrap();
    assert_eq!(acks["variable"], "ROUTER_WAKE_ACK_CHOICES");

    // Apply: one new version, published signed on MQTT like every write.
    let (status, done) = import(&s, "tts-worker", "?reason=adopt", WRITE_TOKEN, &tts_env()).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["written"], json!(true));
    let version = done["version"].as_i64().unwrap();
    assert_eq!(version, before + 1);
    let msg = live
        .next_matching(Duration::from_secs(20), "the imported version", |m| {
            m.json()["version"].as_i64() == Some(version)
        })
        .await;
    let published = msg.json();
    assert_eq!(published["config"]["tts_aggregate_debounce_ms"], json!(300));
    assert_eq!(published["config"]["tts_streaming"], json!(1));
    assert!(!String::from_utf8_lossy(&msg.payload).contains(SECRET));

    let (_, cfg) = s.get("/services/tts-worker", Some(READ_TOKEN)).await;
    assert_eq!(cfg["config"]["log_level"], "DEBUG");
    assert_eq!(cfg["config"]["eleven_api_key"], "********");
    // The secret is stored encrypted and reaches the service's own token.
    let (_, own) = s.get("/services/tts-worker", Some(TTS_TOKEN)).await;
    let revealed = own["config"]["eleven_api_key"].clone();
    assert!(
        revealed == json!(SECRET) || revealed == json!("********"),
        "{own}"
    );
    assert!(!std::fs::read(s.db_path())
        .unwrap()
        .windows(SECRET.len())
        .any(|w| w == SECRET.as_bytes()));

    // History records an import; audit has both calls, names only.
    let (_, hist) = s
        .get("/history?service=tts-worker&limit=5", Some(READ_TOKEN))
        .await;
    assert_eq!(hist["entries"][0]["change_type"], "import");
    let audit = s.audit_entries("action=config.import_env").await;
    assert_eq!(audit.len(), 2);
    assert!(!serde_json::to_string(&audit).unwrap().contains(SECRET));
    assert!(!s.log().contains(SECRET));
}

#[tokio::test]
async fn bad_inputs_are_refused_and_write_nothing() {
    let s = Server::start().await;
    let before = s.version("tts-worker").await;

    // Refusals that say no more than their status: an unknown service, an
    // oversized body, `$`-substitution (it would read the manager's own
    // environment), a read-only token, bad query values, a stale version.
    let huge = format!("PIPER_VOICE={}\n", "x".repeat(300 * 1024));
    let stale = format!("?version={}", before + 7);
    for (service, query, token, text, want) in [
        ("camera", "", WRITE_TOKEN, "A=1\n", 404),
        ("tts-worker", "", WRITE_TOKEN, huge.as_str(), 413),
        (
            "llm-worker",
            "",
            WRITE_TOKEN,
            "LLM_MODEL=${CONFIG_MASTER_KEY}\n",
            422,
        ),
        ("tts-worker", "?dry_run=true", READ_TOKEN, "A=1\n", 403),
        ("tts-worker", "?version=-1", WRITE_TOKEN, "A=1\n", 400),
        ("tts-worker", "?dry_run=maybe", WRITE_TOKEN, "A=1\n", 400),
        (
            "tts-worker",
            stale.as_str(),
            WRITE_TOKEN,
            "TTS_STREAMING=1\n",
            409,
        ),
    ] {
        let (status, body) = import(&s, service, query, token, text).await;
        assert_eq!(status, want, "{service}{query}: {body}");
    }
    // Another service's token may not import either.
    let (status, _) = import(&s, "llm-worker", "?dry_run=true", TTS_TOKEN, "A=1\n").await;
    assert!(status == 403 || status == 401, "{status}");

    // Bad dotenv syntax: the line, never its content.
    let (status, body) = import(
        &s,
        "tts-worker",
        "",
        WRITE_TOKEN,
        "TTS_STREAMING=1\nELEVEN_API_KEY='hunter2-unclosed\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.to_string().contains("hunter2"));

    // A value that fails validation: 422 naming the variable, nothing written.
    let (status, body) = import(
        &s,
        "tts-worker",
        "",
        WRITE_TOKEN,
        "PIPER_VOICE=/voices/x.onnx\nTTS_CONCURRENCY=50\nTTS_STREAMING=yes\n",
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let messages: Vec<String> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("TTS_CONCURRENCY: must be at most 10")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("TTS_STREAMING cannot be read")),
        "{messages:?}"
    );

    // A secret that fails validation is named, never echoed.
    let (status, body) = import(
        &s,
        "llm-worker",
        "",
        WRITE_TOKEN,
        "OPENAI_API_KEY=sk-short\n",
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("OPENAI_API_KEY"));
    assert!(!body.to_string().contains("sk-short"));

    // Not UTF-8.
    let resp = s
        .http
        .post(s.url("/services/tts-worker/import-env"))
        .header("X-API-Token", WRITE_TOKEN)
        .body(vec![0xff_u8, 0xfe, b'=', b'1'])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    assert_eq!(s.version("tts-worker").await, before);
    assert_eq!(s.version("llm-worker").await, 1);
}

/// `config-manager import-env` against the running service `s` with the
/// write token, then `args`.
fn import_remote(s: &Server, args: &[&str]) -> Output {
    let base = format!("http://127.0.0.1:{}", s.port);
    let mut all = vec!["import-env", "--url", &base, "--token", WRITE_TOKEN];
    all.extend_from_slice(args);
    cli(s, &all)
}

#[tokio::test]
async fn cli_import_env_remote_and_offline() {
    let mut s = Server::start().await;
    let file = s.path("tars.env");
    std::fs::write(
        &file,
        "RAG_ENABLED=1\nLLM_MAX_TOKENS=512\nMQTT_URL=mqtt://x\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();

    let out = import_remote(&s, &["--service", "llm-worker", file, "--dry-run"]);
    let dry = success_json(&out);
    assert_eq!(dry["written"], json!(false));
    assert_eq!(dry["changes"].as_array().unwrap().len(), 2);
    assert_eq!(dry["ignored"], json!(["MQTT_URL"]));

    let out = import_remote(&s, &["--service", "llm-worker", file]);
    assert!(out.status.success(), "{}", text(&out));
    let (_, cfg) = s.get("/services/llm-worker", Some(READ_TOKEN)).await;
    assert_eq!(cfg["config"]["llm_max_tokens"], json!(512));
    assert_eq!(cfg["config"]["rag_enabled"], json!(true));

    // A bad value: exit 1, the variable named on stderr.
    std::fs::write(file, "LLM_MAX_TOKENS=lots\n").unwrap();
    let out = import_remote(&s, &["--service", "llm-worker", file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LLM_MAX_TOKENS"));
    // Missing file / missing --service: errors, not panics.
    let out = import_remote(&s, &["--service", "llm-worker", "/nonexistent.env"]);
    assert_eq!(out.status.code(), Some(1));
    let out = import_remote(&s, &[file]);
    assert_eq!(out.status.code(), Some(2));

    // Offline, on the database file once the service stopped.
    s.terminate();
    std::fs::write(file, "ROUTER_STREAM_MIN_CHARS=75\n").unwrap();
    let out = cli(
        &s,
        &["import-env", "--offline", "--service", "router", file],
    );
    let done = success_json(&out);
    assert_eq!(done["written"], json!(true));
    assert_eq!(done["changes"][0]["new"], json!(75));
}
