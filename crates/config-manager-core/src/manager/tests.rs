//! Manager tests over a real SQLite file and the built-in schemas.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::*;
use crate::change_type::ChangeType;
use crate::domain::Source;
use crate::manager::test_support::{open_manager, test_options};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn open_with_env(env: &'static [(&'static str, &'static str)]) -> (tempfile::TempDir, Manager) {
    open_manager(ManagerOptions {
        env: Arc::new(move |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }),
        ..test_options()
    })
}

fn svc(name: &str) -> ServiceName {
    ServiceName::parse(name).unwrap()
}

fn put(config: Value, version: i64) -> PutRequest {
    PutRequest {
        config: obj(config),
        expected_version: Some(Version::new(version).unwrap()),
        merge: true,
        actor: "op".into(),
        reason: Some("test".into()),
        change_type: ChangeType::Update,
    }
}

#[test]
fn first_open_seeds_defaults_as_version_1() {
    let (_d, m) = open_with_env(&[]);
    assert_eq!(m.list_services().unwrap().len(), 6);
    let c = m
        .get_effective(&svc("tts-worker"), SecretView::Masked, true)
        .unwrap();
    assert_eq!(c.version.get(), 1);
    assert!(c.fields.unwrap().len() > 3);
    assert!(c
        .sources
        .values()
        .all(|s| *s == Source::Database || *s == Source::Default));
}

#[test]
fn validation_names_every_failing_field() {
    let (_d, m) = open_with_env(&[]);
    let s = svc("llm-worker");
    let err = m
        .put(
            &s,
            put(
                json!({"llm_timeout_sec": 1000, "llm_provider": "nope", "bogus": 1}),
                1,
            ),
        )
        .unwrap_err();
    match err {
        ManagerError::Validation(errors) => {
            let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
            assert!(pointers.contains(&"/llm_timeout_sec"), "{pointers:?}");
            assert!(pointers.contains(&"/llm_provider"), "{pointers:?}");
            assert!(pointers.contains(&"/bogus"), "{pointers:?}");
        }
        other => panic!("expected validation error, got {other:?}"),
    }
    // Nothing was stored.
    assert_eq!(
        m.get_effective(&s, SecretView::Masked, false)
            .unwrap()
            .version
            .get(),
        1
    );
}

/// Decision 2 (docs/adopting.md): a secret without a value is absent from
/// every view (`null` would fail a service model declaring `str = ""`); an
/// environment override that sets it empty is no value either.
#[test]
fn unset_secret_is_absent_from_every_view() {
    let s = svc("llm-worker");
    let envs: [&'static [(&str, &str)]; 2] = [&[], &[("TARS_OPENAI_API_KEY", "")]];
    for env in envs {
        let (_d, m) = open_with_env(env);
        for view in [
            SecretView::Masked,
            SecretView::Omitted,
            SecretView::Revealed,
        ] {
            let c = m.get_effective(&s, view, false).unwrap();
            assert!(
                !c.config.contains_key("openai_api_key"),
                "{env:?} {view:?}: {:?}",
                c.config
            );
            assert!(c.config.contains_key("openai_model"));
        }
    }
}

#[test]
fn secrets_are_encrypted_masked_and_revealable() {
    let (_d, m) = open_with_env(&[]);
    let s = svc("llm-worker");
    let out = m
        .put(
            &s,
            put(json!({"openai_api_key": "sk-very-secret-value"}), 1),
        )
        .unwrap();
    assert_eq!(out.stored.version.get(), 2);
    assert!(!out.stored.config.contains_key("openai_api_key"));
    let masked = m.get_effective(&s, SecretView::Masked, false).unwrap();
    assert_eq!(masked.config["openai_api_key"], json!("********"));
    let omitted = m.get_effective(&s, SecretView::Omitted, false).unwrap();
    assert!(!omitted.config.contains_key("openai_api_key"));
    assert_eq!(
        m.reveal_secret_audited(&s, "openai_api_key", "ops", "rotate the key")
            .unwrap(),
        Some(json!("sk-very-secret-value"))
    );
    // Every reveal is audited with its reason, a refused one too; never the value.
    assert!(m
        .reveal_secret_audited(&s, "openai_model", "ops", "curious")
        .is_err());
    let audit = m
        .store()
        .list_audit(&crate::store::AuditFilter {
            action: Some("secret.reveal".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let seen: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|e| {
            (
                e.target.as_deref().unwrap_or(""),
                e.outcome.as_str(),
                e.detail
                    .as_ref()
                    .and_then(|d| d["reason"].as_str())
                    .unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("llm-worker/openai_model", "error", "curious"),
            ("llm-worker/openai_api_key", "ok", "rotate the key"),
        ]
    );
    assert!(!format!("{audit:?}").contains("sk-very-secret-value"));
    // Sending the mask back keeps the secret; the write is a no-op.
    let same = m
        .put(&s, put(json!({"openai_api_key": "********"}), 2))
        .unwrap();
    assert!(!same.changed);
    let bytes = std::fs::read(m.store().path()).unwrap();
    let wal = std::fs::read(m.store().path().with_extension("db-wal")).unwrap_or_default();
    let needle = b"sk-very-secret-value";
    assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    assert!(!wal.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn restore_and_point_in_time() {
    let (_d, m) = open_with_env(&[]);
    let s = svc("memory-worker");
    let before = m.get_effective(&s, SecretView::Masked, false).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mid = crate::domain::now_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(5));
    m.put(&s, put(json!({"character_name": "CASE"}), 1))
        .unwrap();
    let h = m
        .store()
        .list_history(&crate::store::HistoryFilter {
            service: Some(svc("memory-worker")),
            key: Some("character_name".into()),
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    let r = m.restore_history(&s, &[h[0].id], "op", None).unwrap();
    assert_eq!(r.keys_restored, vec!["character_name"]);
    assert_eq!(r.new_version.get(), 3);
    let now = m.get_effective(&s, SecretView::Masked, false).unwrap();
    assert_eq!(
        now.config["character_name"],
        before.config["character_name"]
    );
    // Change again, then go back to `mid` for every service.
    m.put(&s, put(json!({"character_name": "KIPP"}), 3))
        .unwrap();
    let changed = m.restore_at(None, &mid, "op", None).unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].version.get(), 5);
    let now = m.get_effective(&s, SecretView::Masked, false).unwrap();
    assert_eq!(
        now.config["character_name"],
        before.config["character_name"]
    );
}

#[test]
fn profiles_activate_atomically() {
    let (_d, m) = open_with_env(&[]);
    let s = svc("memory-worker");
    m.save_profile("day", Some("defaults"), "op").unwrap();
    m.put(&s, put(json!({"character_name": "CASE"}), 1))
        .unwrap();
    let changed = m.activate_profile("day", "op").unwrap();
    assert_eq!(
        changed
            .iter()
            .map(|c| c.service.as_str())
            .collect::<Vec<_>>(),
        vec!["memory-worker"]
    );
    assert!(matches!(
        m.save_profile("../x", None, "op"),
        Err(ManagerError::InvalidName { .. })
    ));
    assert!(matches!(
        m.activate_profile("missing", "op"),
        Err(ManagerError::NotFound(_))
    ));
}

#[test]
fn search_scores_and_filters() {
    let (_d, m) = open_with_env(&[]);
    let (hits, total) = m
        .search(&SearchQuery {
            query: "provider".into(),
            max_results: 50,
            ..Default::default()
        })
        .unwrap();
    assert!(total >= 1);
    assert_eq!(hits[0].key, "llm_provider");
    assert!(hits[0].match_score > 0.5 && hits[0].match_score <= 1.0);
    let (secret_hits, _) = m
        .search(&SearchQuery {
            query: "key".into(),
            max_results: 50,
            ..Default::default()
        })
        .unwrap();
    assert!(secret_hits
        .iter()
        .filter(|h| h.is_secret)
        .all(|h| h.value.is_none()));
    assert!(m
        .search(&SearchQuery {
            query: "x".into(),
            max_results: 0,
            ..Default::default()
        })
        .is_err());
}

#[test]
fn unknown_and_hostile_services_are_rejected() {
    let (_d, m) = open_with_env(&[]);
    assert!(matches!(
        m.resolve_service("nope"),
        Err(ManagerError::UnknownService(_))
    ));
    for bad in ["../etc/passwd", "a'b", "", "tts\u{0}"] {
        assert!(matches!(
            m.resolve_service(bad),
            Err(ManagerError::InvalidName { .. })
        ));
    }
}
