//! Tests of import-env through the manager (store, schemas, audit).

use serde_json::json;

use super::*;
use crate::manager::test_support::{open_manager, test_options};

fn open() -> (tempfile::TempDir, Manager) {
    open_manager(test_options())
}

/// Up to ten audit rows whose action starts with `action`.
fn audit_rows(m: &Manager, action: &str) -> Vec<crate::store::AuditEntry> {
    m.store()
        .list_audit(&crate::store::AuditFilter {
            action: Some(action.into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
}

fn svc(name: &str) -> ServiceName {
    ServiceName::parse(name).unwrap()
}

fn req(text: &str, dry_run: bool) -> EnvImportRequest {
    EnvImportRequest {
        text: text.to_owned(),
        dry_run,
        expected_version: None,
        actor: "op".into(),
        reason: None,
    }
}

fn version(m: &Manager, s: &str) -> i64 {
    m.get_effective(&svc(s), SecretView::Masked, false)
        .unwrap()
        .version
        .get()
}

fn field_errors(e: ManagerError) -> Vec<(String, String)> {
    match e {
        ManagerError::Validation(errors) => {
            errors.into_iter().map(|e| (e.pointer, e.message)).collect()
        }
        other => panic!("not a validation error: {other}"),
    }
}

const TTS_ENV: &str = "# the shared .env\nMQTT_URL=mqtt://tars:pass@mqtt:1883\nTTS_STREAMING=1\n\
    PIPER_VOICE=/voices/other.onnx\nELEVEN_API_KEY=el-0123456789abcdef\nTTS_WAKE_CACHE_MAX=16\n\
    TTS_WAKE_ACK_TEXTS=Yes?|Hmm?\nSOMETHING_ELSE=1\n";

#[test]
fn dry_run_shows_the_diff_and_writes_nothing() {
    let (_d, m) = open();
    let before = version(&m, "tts-worker");
    let out = m
        .import_env(&svc("tts-worker"), req(TTS_ENV, true))
        .unwrap();
    assert!(out.dry_run && !out.written);
    assert_eq!(out.version.get(), before);
    assert_eq!(version(&m, "tts-worker"), before);
    let changed: Vec<(&str, &str)> = out
        .changes
        .iter()
        .map(|c| (c.field.as_str(), c.variable.as_str()))
        .collect();
    assert_eq!(
        changed,
        [
            ("piper_voice", "PIPER_VOICE"),
            ("eleven_api_key", "ELEVEN_API_KEY"),
            ("tts_streaming", "TTS_STREAMING"),
            ("tts_wake_ack_texts", "TTS_WAKE_ACK_TEXTS"),
        ]
    );
    let streaming = &out.changes[2];
    assert_eq!(
        (streaming.old.clone(), streaming.new.clone()),
        (Some(json!(0)), Some(json!(1)))
    );
    let secret = &out.changes[1];
    assert!(secret.secret && secret.old.is_none() && secret.new.is_none());
    assert_eq!(out.unchanged, ["tts_wake_cache_max"]);
    assert_eq!(out.ignored, ["MQTT_URL", "SOMETHING_ELSE"]);
    let text = serde_json::to_string(&out).unwrap();
    assert!(!text.contains("el-0123456789abcdef"));
}

#[test]
fn apply_writes_one_import_version_with_the_secret_encrypted_and_audits() {
    let (_d, m) = open();
    let before = version(&m, "tts-worker");
    let out = m
        .import_env(&svc("tts-worker"), req(TTS_ENV, false))
        .unwrap();
    assert!(out.written);
    assert_eq!(out.version.get(), before + 1);
    let c = m
        .get_effective(&svc("tts-worker"), SecretView::Masked, false)
        .unwrap();
    assert_eq!(c.config["tts_streaming"], json!(1));
    assert_eq!(c.config["piper_voice"], json!("/voices/other.onnx"));
    assert_eq!(c.config["tts_wake_ack_texts"], json!(["Yes?|Hmm?"]));
    assert_eq!(
        c.config["eleven_api_key"],
        json!(crate::domain::SECRET_MASK)
    );
    assert_eq!(
        m.reveal_secret(&svc("tts-worker"), "eleven_api_key")
            .unwrap(),
        Some(json!("el-0123456789abcdef"))
    );
    let audit = audit_rows(&m, "config.import_env");
    assert_eq!(audit.len(), 1);
    let detail = audit[0].detail.clone().unwrap_or_default().to_string();
    assert!(detail.contains("ELEVEN_API_KEY") && !detail.contains("el-0123"));
    let writes = audit_rows(&m, "config.import");
    // The filter is a prefix: the write itself is the one `config.import`.
    assert_eq!(
        writes
            .iter()
            .filter(|e| e.action.as_str() == "config.import")
            .count(),
        1
    );
    // The same file again changes nothing.
    let again = m
        .import_env(&svc("tts-worker"), req(TTS_ENV, false))
        .unwrap();
    assert_eq!(
        again.version.get(),
        out.version.get() + i64::from(again.written)
    );
}

#[test]
fn bad_values_name_the_variable_and_write_nothing() {
    let (_d, m) = open();
    let before = version(&m, "tts-worker");
    let errors = field_errors(
        m.import_env(
            &svc("tts-worker"),
            req(
                "TTS_CONCURRENCY=two\nTTS_STREAMING=true\nPIPER_VOICE=x\n",
                false,
            ),
        )
        .unwrap_err(),
    );
    assert_eq!(
        errors,
        [
            (
                "/tts_streaming".to_owned(),
                "TTS_STREAMING cannot be read as a whole number".to_owned()
            ),
            (
                "/tts_concurrency".to_owned(),
                "TTS_CONCURRENCY cannot be read as a whole number".to_owned()
            ),
        ]
    );
    // A value of the right type that breaks a rule: named by the variable too.
    let errors = field_errors(
        m.import_env(&svc("tts-worker"), req("TTS_CONCURRENCY=50\n", false))
            .unwrap_err(),
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .1
            .starts_with("TTS_CONCURRENCY: must be at most 10"),
        "{errors:?}"
    );
    // A secret that breaks a rule: named, never echoed.
    let errors = field_errors(
        m.import_env(&svc("llm-worker"), req("OPENAI_API_KEY=sk-short\n", false))
            .unwrap_err(),
    );
    assert!(errors[0].1.starts_with("OPENAI_API_KEY"), "{errors:?}");
    assert!(!errors[0].1.contains("sk-short"));
    // Empty where the service needs a number.
    let errors = field_errors(
        m.import_env(&svc("stt-worker"), req("SAMPLE_RATE=\n", false))
            .unwrap_err(),
    );
    assert_eq!(errors[0].1, "SAMPLE_RATE is empty; expected a whole number");
    assert_eq!(version(&m, "tts-worker"), before);
    // Refused imports are audited too.
    let audit = audit_rows(&m, "config.import_env");
    assert!(audit.iter().all(|e| e.outcome.as_str() == "refused"));
}

#[test]
fn aliases_substitution_empty_secrets_lists_and_unknown_services() {
    let (_d, m) = open();
    let out = m
        .import_env(
            &svc("router"),
            req("STREAM_MIN_CHARS=10\nROUTER_STREAM_MIN_CHARS=70\nWAKE_PHRASES=\"hey tars|ok tars\"\n", true),
        )
        .unwrap();
    let by_field: BTreeMap<&str, (&str, Option<&Value>)> = out
        .changes
        .iter()
        .map(|c| (c.field.as_str(), (c.variable.as_str(), c.new.as_ref())))
        .collect();
    assert_eq!(
        by_field["router_stream_min_chars"],
        ("ROUTER_STREAM_MIN_CHARS", Some(&json!(70)))
    );
    assert_eq!(
        by_field["router_wake_phrases"],
        ("WAKE_PHRASES", Some(&json!("hey tars|ok tars")))
    );
    assert_eq!(out.skipped.len(), 1);
    assert_eq!(out.skipped[0].variable, "STREAM_MIN_CHARS");

    // $-substitution would read the manager's own environment: refused.
    let errors = field_errors(
        m.import_env(
            &svc("llm-worker"),
            req("LLM_MODEL=${CONFIG_MASTER_KEY}\n", true),
        )
        .unwrap_err(),
    );
    assert!(errors[0].1.starts_with("LLM_MODEL: uses $-substitution"));
    // Single-quoted, the `$` is literal.
    let out = m
        .import_env(
            &svc("llm-worker"),
            req("LLM_MODEL='gpt$x'\nOPENAI_API_KEY=\n", true),
        )
        .unwrap();
    assert_eq!(out.changes[0].new, Some(json!("gpt$x")));
    assert_eq!(out.skipped[0].variable, "OPENAI_API_KEY");

    // Lists are comma-separated; booleans as the services spell them.
    let out = m
        .import_env(
            &svc("stt-worker"),
            req(
                "COUGH_SUSPICIOUS_PHRASES=\"a, b,,c\"\nOPENAI_TIMEOUT_S=12\n",
                true,
            ),
        )
        .unwrap();
    let news: Vec<Value> = out.changes.iter().filter_map(|c| c.new.clone()).collect();
    assert!(news.contains(&json!(["a", "b", "c"])));
    assert!(news.contains(&json!(12.0)) || news.contains(&json!(12)));
    let out = m
        .import_env(
            &svc("llm-worker"),
            req("RAG_ENABLED=yes\nRAG_TOP_K=+7\n", true),
        )
        .unwrap();
    assert_eq!(out.changes.len(), 2);

    assert!(matches!(
        m.import_env(&svc("camera"), req("A=1\n", true)),
        Err(ManagerError::UnknownService(_))
    ));
    assert!(matches!(
        m.import_env(&svc("llm-worker"), req("not a line\n", true)),
        Err(ManagerError::BadRequest(_))
    ));
    let huge = "A=".to_owned() + &"x".repeat(MAX_DOTENV_BYTES);
    assert!(matches!(
        m.import_env(&svc("llm-worker"), req(&huge, true)),
        Err(ManagerError::BadRequest(_))
    ));
}
