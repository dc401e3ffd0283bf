//! Store tests on real SQLite files in a temporary directory.

use crate::change_type::ChangeType;
use crate::domain::{Epoch, ServiceName, Version};
use serde_json::{json, Map, Value};

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("test literal is an object"),
    }
}

fn svc(name: &str) -> ServiceName {
    ServiceName::parse(name).unwrap()
}

const E1: &str = "0c1d2e3f-4a5b-4c6d-8e7f-001122334455";
const E2: &str = "9f8e7d6c-5b4a-4c3d-9e2f-554433221100";

fn e1() -> Epoch {
    Epoch::parse(E1).unwrap()
}

fn v(n: i64) -> Version {
    Version::new(n).unwrap()
}

fn write(service: &str, config: Value, expected: Option<i64>) -> ConfigWrite {
    ConfigWrite {
        service: svc(service),
        config: obj(config),
        expected_version: expected.map(v),
        actor: "tester".into(),
        reason: Some("because".into()),
        change_type: ChangeType::Update,
        items: vec![],
        secrets: vec![],
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sub/config.db")).unwrap();
    store
        .init_epoch(&crate::domain::Epoch::parse(E1).unwrap(), None, "test")
        .unwrap();
    (dir, store)
}

#[test]
fn wal_mode_and_migrations() {
    let (dir, store) = open();
    assert_eq!(store.journal_mode().unwrap(), "wal");
    store.integrity_check().unwrap();
    drop(store);
    // Reopening applies nothing new and keeps the epoch.
    let store = Store::open(&dir.path().join("sub/config.db")).unwrap();
    assert_eq!(store.get_epoch().unwrap().config_epoch.as_str(), E1);
    assert!(matches!(
        store.init_epoch(&crate::domain::Epoch::parse(E2).unwrap(), None, "x"),
        Err(StoreError::AlreadyExists(_))
    ));
}

#[test]
fn optimistic_locking_history_and_versions() {
    let (_dir, store) = open();
    let v1 = store
        .save_config(&write("tts", json!({"a": 1, "b": "x"}), Some(0)), &e1())
        .unwrap();
    assert_eq!(v1.version.get(), 1);
    let v2 = store
        .save_config(&write("tts", json!({"a": 2, "b": "x"}), Some(1)), &e1())
        .unwrap();
    assert_eq!(v2.version.get(), 2);
    // Stale write.
    match store.save_config(&write("tts", json!({"a": 3, "b": "x"}), Some(1)), &e1()) {
        Err(StoreError::Conflict { current }) => assert_eq!(current, v(2)),
        other => panic!("expected conflict, got {other:?}"),
    }
    // No-op write keeps the version.
    let same = store
        .save_config(&write("tts", json!({"a": 2, "b": "x"}), Some(2)), &e1())
        .unwrap();
    assert_eq!(same.version.get(), 2);
    let h = store
        .list_history(&HistoryFilter {
            service: Some(svc("tts")),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    // v1 added a and b, v2 changed a.
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].key, "a");
    assert_eq!(h[0].old_value, Some(json!(1)));
    assert_eq!(h[0].new_value, Some(json!(2)));
    assert_eq!(h[0].changed_by, "tester");
    assert_eq!(h[0].change_reason.as_deref(), Some("because"));
    let snap = store.get_config_version(&svc("tts"), v(1)).unwrap();
    assert_eq!(snap.config, obj(json!({"a": 1, "b": "x"})));
    let at = store
        .find_config_at(&svc("tts"), &v2.updated_at)
        .unwrap()
        .unwrap();
    assert_eq!(at.version.get(), 2);
    assert!(store
        .find_config_at(&svc("tts"), "2000-01-01T00:00:00.000Z")
        .unwrap()
        .is_none());
    let audit = store.list_audit(&AuditFilter {
        action: Some("config.".into()),
        limit: 10,
        ..Default::default()
    });
    assert_eq!(audit.unwrap().len(), 2);
}

#[test]
fn batch_is_atomic() {
    let (_dir, store) = open();
    store
        .save_config(&write("a", json!({"x": 1}), Some(0)), &e1())
        .unwrap();
    let batch = [
        write("a", json!({"x": 2}), Some(1)),
        write("b", json!({"x": 2}), Some(5)),
    ];
    assert!(matches!(
        store.save_configs(&batch, &e1()),
        Err(StoreError::Conflict { current }) if current == Version::NONE
    ));
    assert_eq!(store.get_config(&svc("a")).unwrap().version.get(), 1);
    assert!(matches!(
        store.get_config(&svc("b")),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn secrets_are_masked_in_history() {
    let (_dir, store) = open();
    let mut w = write("llm", json!({"m": "x"}), Some(0));
    w.secrets.push(SecretChange {
        key: "api_key".into(),
        sealed: Some(("v1:k:cipher".into(), "k".into())),
    });
    store.save_config(&w, &e1()).unwrap();
    let h = store
        .list_history(&HistoryFilter {
            key: Some("api_key".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(h[0].new_value, Some(json!("********")));
    assert_eq!(
        store.list_secrets(Some(&svc("llm"))).unwrap()[0].key_id,
        "k"
    );
    assert!(store
        .reseal_secret(&svc("llm"), "api_key", "v1:k:cipher", "v1:k2:c2", "k2")
        .unwrap());
    assert!(!store
        .reseal_secret(&svc("llm"), "api_key", "v1:k:cipher", "v1:k3:c3", "k3")
        .unwrap());
}

#[test]
fn profiles_roundtrip() {
    let (_dir, store) = open();
    let snap = obj(json!({"tts": {"v": 1}}));
    store
        .save_profile("night", Some("quiet"), &snap, "op")
        .unwrap();
    let p = store.get_profile("night").unwrap();
    assert_eq!(p.config_snapshot, snap);
    assert_eq!(store.list_profiles().unwrap().len(), 1);
    store.delete_profile("night", "op").unwrap();
    assert!(matches!(
        store.delete_profile("night", "op"),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    match Store::open(&path) {
        Err(StoreError::Corrupt(_)) => {}
        other => panic!("expected corrupt, got {other:?}"),
    }
}

#[test]
fn renew_epoch_records_the_previous_one_and_keeps_the_data() {
    let (_dir, store) = open();
    store
        .save_config(&write("svc", json!({"a": 1}), None), &e1())
        .unwrap();
    let info = store
        .renew_epoch(
            &crate::domain::Epoch::parse(E2).unwrap(),
            "restore --new-epoch",
        )
        .unwrap();
    assert_eq!(info.config_epoch.as_str(), E2);
    assert_eq!(info.previous_epoch.as_deref(), Some(E1));
    assert_eq!(store.get_config(&svc("svc")).unwrap().version.get(), 1);
}

#[test]
fn a_file_that_exists_but_cannot_be_opened_is_unavailable_not_missing() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the database should be: SQLite cannot open it, and
    // it is not missing.
    let path = dir.path().join("config.db");
    std::fs::create_dir(&path).unwrap();
    let e = Store::open_existing(&path).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    let gone = dir.path().join("gone.db");
    let e = Store::open_existing(&gone).unwrap_err();
    assert!(matches!(e, StoreError::Missing(_)), "{e:?}");
}

#[test]
fn unknown_words_in_audit_rows_are_errors_naming_them() {
    let (_dir, store) = open();
    store
        .write(|tx| {
            tx.execute(
                "INSERT INTO audit_log (at, actor, action, target, outcome, detail)
                 VALUES ('2026-01-01T00:00:00.000Z', 'x', 'config.teleport', NULL, 'ok', NULL)",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    let filter = AuditFilter {
        limit: 10,
        ..AuditFilter::default()
    };
    let err = store.list_audit(&filter).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown audit action 'config.teleport'"),
        "{err}"
    );
}

#[test]
fn a_row_with_a_bad_version_or_service_name_fails_the_read_naming_it() {
    let (_dir, store) = open();
    store
        .save_config(&write("tts", json!({"a": 1}), Some(0)), &e1())
        .unwrap();
    let set = |sql: &str| store.write(|tx| Ok(tx.execute(sql, [])?)).unwrap();
    // The table's CHECK (version >= 1) keeps negative numbers out of
    // `configs`, not values of another type (SQLite columns take any).
    for (sql, says) in [
        (
            "UPDATE configs SET version = 'four'",
            "'four' is not a version",
        ),
        ("UPDATE configs SET version = 2.5", "'2.5' is not a version"),
    ] {
        set(sql);
        let err = store.get_config(&svc("tts")).unwrap_err().to_string();
        assert!(err.contains(says), "{sql}: {err}");
        let err = store.list_current_versions().unwrap_err().to_string();
        assert!(err.contains(says), "{sql}: {err}");
    }
    set("UPDATE configs SET version = 1");
    assert_eq!(store.get_config(&svc("tts")).unwrap().version, v(1));
    // Other tables have no such check.
    set("UPDATE config_versions SET version = -4");
    let err = store
        .list_config_versions(&svc("tts"), 10)
        .unwrap_err()
        .to_string();
    assert!(err.contains("version must be >= 0, got -4"), "{err}");
    // History rows carry the version and the name too.
    set("UPDATE history SET version = -1");
    let err = store
        .list_history(&HistoryFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("got -1"), "{err}");
    set("UPDATE configs SET service = 'TTS'");
    let err = store.list_configs().unwrap_err().to_string();
    assert!(
        err.contains("stored service name 'TTS' is invalid"),
        "{err}"
    );
}

#[test]
fn a_write_past_the_largest_version_is_refused_not_wrapped() {
    let (_dir, store) = open();
    store
        .save_config(&write("tts", json!({"a": 1}), Some(0)), &e1())
        .unwrap();
    store
        .write(|tx| {
            Ok(tx.execute(
                "UPDATE configs SET version = ?1",
                [Version::new(i64::MAX).unwrap()],
            )?)
        })
        .unwrap();
    let err = store
        .save_config(&write("tts", json!({"a": 2}), None), &e1())
        .unwrap_err();
    assert!(matches!(err, StoreError::Version(_)), "{err:?}");
    assert!(!err.is_fault(), "the database is fine");
    let kept = store.get_config(&svc("tts")).unwrap();
    assert_eq!(kept.version.get(), i64::MAX);
    assert_eq!(kept.config, obj(json!({"a": 1})));
}
