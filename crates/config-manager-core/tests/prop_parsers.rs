//! No panic from any input (issue 23): every parser of untrusted input in
//! the core crate, fed arbitrary, near-valid and damaged input, returns
//! `Ok` or an error and never panics. Strategies and the runner are shared
//! (`config-manager-testkit`); each `#[test]` here is also a `make fuzz`
//! target of the same name (docs/testing.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use config_manager_core::applied::{parse_applied_topic, AppliedReport, InstanceId};
use config_manager_core::crypto::canonical::{parse_strict, to_canonical_bytes};
use config_manager_core::crypto::mac::{MacKey, MacKeyRing};
use config_manager_core::crypto::secret_box::{MasterKey, SecretKeyRing};
use config_manager_core::crypto::signing::{SigningKey, TrustedKeys};
use config_manager_core::crypto::KeyId;
use config_manager_core::domain::{
    display_key, format_rfc3339, parse_rfc3339, validate_key, Epoch, ServiceName, Version,
    VersionError,
};
use config_manager_core::envelope::freshness::{check_freshness, AppliedState, FreshnessPolicy};
use config_manager_core::envelope::{config_checksum, Envelope};
use config_manager_core::lkg::{journal_path, LkgCache, LkgContents, LkgService};
use config_manager_core::manager::{parse_dotenv, Manager, ManagerOptions};
use config_manager_core::manager::{ExportDocument, ImportOptions};
use config_manager_core::schema::{SchemaRegistry, ServiceSchema};
use config_manager_core::store::EpochFile;
use config_manager_core::store::Store;
use config_manager_testkit::proptest::prelude::*;
use config_manager_testkit::{bytes, check, documents, json, schema, text};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

const EPOCH: &str = "550e8400-e29b-41d4-a716-446655440000";
const MAX_ENVELOPE: usize = 64 * 1024;

fn key() -> SigningKey {
    SigningKey::from_seed(&[7; 32])
}

fn trusted() -> TrustedKeys {
    TrustedKeys::from_keys([key().verifying_key()])
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// A valid signed envelope's object.
fn valid_envelope() -> Map<String, Value> {
    let e = Envelope::sign(
        &ServiceName::parse("tts-worker").unwrap(),
        Version::new(7).unwrap(),
        &Epoch::parse(EPOCH).unwrap(),
        obj(json!({"volume_percent": 40, "api_key": "********"})),
        &key(),
    )
    .unwrap();
    e.to_object()
}

/// `object` with a fresh checksum and a valid signature over whatever it
/// holds, so parse and verify get to the member checks behind them.
fn resign(mut object: Map<String, Value>) -> Map<String, Value> {
    if let Some(Value::Object(config)) = object.get("config") {
        if let Ok(sum) = config_checksum(config) {
            object.insert("checksum".into(), Value::from(sum));
        }
    }
    object.remove("signature");
    if let Ok(bytes) = to_canonical_bytes(&Value::Object(object.clone())) {
        object.insert("signature".into(), Value::from(key().sign_base64(&bytes)));
    }
    object
}

/// A time anywhere in the years -9999..=9999 (what `time` can hold).
fn any_time() -> impl Strategy<Value = OffsetDateTime> {
    (-377_705_116_800i64..=253_402_300_799)
        .prop_map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap())
}

fn policy() -> impl Strategy<Value = FreshnessPolicy> {
    (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(age, skew, stale)| FreshnessPolicy {
        max_age: Duration::from_secs(age),
        max_skew: Duration::from_secs(skew),
        accept_stale_initial: stale,
    })
}

/// Parse, then verify, then the freshness rule: the client's whole path.
fn envelope_path(bytes: &[u8], now: OffsetDateTime, policy: &FreshnessPolicy) {
    if let Ok(e) = Envelope::parse(bytes, MAX_ENVELOPE) {
        let _ = e.verify(&trusted());
        let _ = e.issued_at_time();
        let applied = AppliedState {
            epoch: Epoch::parse(EPOCH).unwrap(),
            version: Version::new(5).unwrap(),
            checksum: None,
        };
        let _ = check_freshness(Some(&applied), &e, now, policy);
        let _ = check_freshness(None, &e, now, policy);
        let _ = format!("{e:?}");
    }
}

#[test]
fn envelope_bytes() {
    let valid = serde_json::to_vec(&valid_envelope()).unwrap();
    let input = prop_oneof![bytes::any_bytes(512), bytes::damaged(valid, 8),];
    check(
        "envelope_bytes",
        256,
        (input, any_time(), policy()),
        |(b, now, p)| {
            envelope_path(&b, now, &p);
            Ok(())
        },
    );
}

#[test]
fn envelope_members() {
    let members = [
        "version",
        "service",
        "config",
        "checksum",
        "config_epoch",
        "issued_at",
        "key_id",
        "signature",
    ];
    check(
        "envelope_members",
        256,
        (json::object_over(&members), any_time()),
        |(object, now)| {
            let b = serde_json::to_vec(&object).unwrap();
            envelope_path(&b, now, &FreshnessPolicy::default());
            Ok(())
        },
    );
}

#[test]
fn envelope_near_valid() {
    let issued = prop_oneof![text::rfc3339_like().prop_map(Value::from), json::leaf(),];
    // Half of the cases change issued_at alone, so it is what decides.
    let strategy = (
        prop_oneof![Just(valid_envelope()), json::near(valid_envelope(), 3)],
        prop::option::weighted(0.8, issued),
        any::<bool>(),
        any_time(),
        policy(),
    );
    check(
        "envelope_near_valid",
        256,
        strategy,
        |(mut object, issued, sign, now, p)| {
            if let Some(at) = issued {
                object.insert("issued_at".into(), at);
            }
            let object = if sign { resign(object) } else { object };
            let b = serde_json::to_vec(&object).unwrap();
            envelope_path(&b, now, &p);
            Ok(())
        },
    );
}

#[test]
fn rfc3339_timestamps() {
    let input = prop_oneof![3 => text::rfc3339_like(), 1 => text::string()];
    check("rfc3339_timestamps", 512, input, |raw| {
        if let Ok(t) = parse_rfc3339(&raw) {
            // What we accept, we can write and read back.
            let written = format_rfc3339(t);
            prop_assert!(parse_rfc3339(&written).is_ok(), "{raw} -> {written}");
        }
        Ok(())
    });
}

#[test]
fn names_and_keys() {
    let input = prop_oneof![text::service_like(), text::instance_like(), text::string()];
    check("names_and_keys", 512, (input.clone(), input), |(a, b)| {
        let service = ServiceName::parse(&a);
        let _ = InstanceId::parse(&a);
        let _ = validate_key(&a);
        let _ = display_key(&a);
        let _ = KeyId::parse(&a);
        if let Ok(service) = service {
            let id = InstanceId::default_for(&b, &service);
            prop_assert!(InstanceId::parse(id.as_str()).is_ok(), "{id:?}");
        }
        Ok(())
    });
}

#[test]
fn versions() {
    // JSON of every type (edge integers included) and text of any kind.
    let input = (json::value(), text::string(), any::<i64>());
    check("versions", 512, input, |(value, raw, n)| {
        // From JSON: exactly the integers 0..=i64::MAX, and they write back
        // as the same integer.
        let parsed = serde_json::from_value::<Version>(value.clone());
        let expected = value.as_i64().filter(|n| *n >= 0);
        prop_assert_eq!(parsed.as_ref().ok().map(|v| v.get()), expected);
        if let Ok(v) = parsed {
            prop_assert_eq!(serde_json::to_value(v).unwrap(), value);
        }
        // From text (ETags, query strings): the same rule.
        match raw.parse::<Version>() {
            Ok(v) => prop_assert_eq!(Some(v.get()), raw.parse::<i64>().ok()),
            Err(e) => prop_assert!(raw.parse::<i64>().map_or(true, |n| n < 0), "{e}"),
        }
        // From a number: negatives refused naming the number; `next` is
        // checked at the top instead of wrapping.
        match Version::new(n) {
            Ok(v) => {
                prop_assert!(n >= 0);
                match v.next() {
                    Ok(next) => prop_assert_eq!(next.get(), n + 1),
                    Err(e) => prop_assert_eq!(e, VersionError::Exhausted(i64::MAX)),
                }
                let text = v.to_string();
                prop_assert_eq!(text.parse::<Version>(), Ok(v));
            }
            Err(e) => {
                prop_assert!(n < 0);
                prop_assert!(e.to_string().contains(&n.to_string()), "{e}");
            }
        }
        Ok(())
    });
}

#[test]
fn applied_reports() {
    let valid = json!({
        "service": "tts-worker", "instance_id": "robot-1",
        "config_epoch": EPOCH, "version": 3, "status": "rejected",
        "reason": "bad_signature", "rejected_version": 4,
        "applied_at": "2026-01-15T09:30:00.000Z",
        "client": {"name": "config-manager-client", "version": "0.1.0"}
    });
    let members: Vec<&str> = valid
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let payload = prop_oneof![
        1 => bytes::any_bytes(256),
        1 => bytes::damaged(valid.to_string().into_bytes(), 6),
        1 => json::object_over(&members).prop_map(|o| serde_json::to_vec(&o).unwrap()),
        4 => (
            prop_oneof![Just(obj(valid.clone())), json::near(obj(valid.clone()), 3)],
            text::rfc3339_like()
        )
            .prop_map(|(mut o, at)| {
                o.insert("applied_at".into(), Value::from(at));
                serde_json::to_vec(&o).unwrap()
            }),
    ];
    let segment = prop_oneof![
        text::service_like(),
        text::instance_like(),
        Just("applied".to_owned()),
        Just(String::new())
    ];
    let topic = prop_oneof![
        prop::collection::vec(segment, 0..6).prop_map(|s| format!("system/config/{}", s.join("/"))),
        text::string(),
    ];
    check(
        "applied_reports",
        256,
        (payload, topic),
        |(payload, topic)| {
            let _ = parse_applied_topic(&topic);
            let service = ServiceName::parse("tts-worker").unwrap();
            let instance = InstanceId::parse("robot-1").unwrap();
            if let Ok(report) = AppliedReport::parse(&payload, &service, &instance) {
                let back = report.to_json();
                prop_assert!(AppliedReport::parse(back.as_bytes(), &service, &instance).is_ok());
            }
            Ok(())
        },
    );
}

#[test]
fn canonical_json() {
    let input = prop_oneof![3 => json::value(), 1 => json::deep(100)];
    check(
        "canonical_json",
        512,
        (input, bytes::any_bytes(128)),
        |(value, raw)| {
            let _ = parse_strict(&raw);
            if let Ok(bytes) = to_canonical_bytes(&value) {
                // The canonical form parses back to a value with the same form.
                let back = parse_strict(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(to_canonical_bytes(&back).unwrap(), bytes);
            }
            Ok(())
        },
    );
}

/// Compiles `doc` from its text (the registration path keeps the text's
/// property order) and, when it compiles, runs everything a registered
/// schema is used for on `config`.
fn exercise_schema(doc: &Value, config: &Value) {
    let name = ServiceName::parse("prop-svc").unwrap();
    let text = doc.to_string();
    let _ = ServiceSchema::from_json_str_deferred(name.clone(), &text).map(|s| s.check());
    let Ok(schema) = ServiceSchema::from_json_str(name, &text) else {
        return;
    };
    let _ = schema.validate(config);
    let view = schema.view();
    let _ = format!("{view:?}");
    if let Value::Object(config) = config {
        let _ = schema.with_defaults(config);
    }
    let lookup = |name: &str| (name.len() % 2 == 0).then(|| "1e400".to_owned());
    let _ = schema.resolve_env(&lookup);
    let _ = schema.env_override_errors(&lookup);
    let mut registry = SchemaRegistry::new();
    if registry.try_register(schema).is_ok() {
        let _ = registry.hash();
    }
}

#[test]
fn schema_documents() {
    check(
        "schema_documents",
        192,
        (schema::document(), json::value()),
        |(doc, config)| {
            exercise_schema(&doc, &config);
            Ok(())
        },
    );
}

#[test]
fn schema_text() {
    let base = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/tts-worker.json"
    ))
    .unwrap();
    check("schema_text", 128, bytes::damaged(base, 6), |b| {
        let text = String::from_utf8_lossy(&b);
        let name = ServiceName::parse("prop-svc").unwrap();
        if let Ok(s) = ServiceSchema::from_json_str(name, &text) {
            let _ = s.validate(&json!({}));
        }
        Ok(())
    });
}

fn builtins() -> &'static SchemaRegistry {
    static R: OnceLock<SchemaRegistry> = OnceLock::new();
    R.get_or_init(|| SchemaRegistry::builtin().unwrap())
}

#[test]
fn config_validation() {
    let registry = builtins();
    let names: Vec<String> = registry.names().iter().map(|n| n.to_string()).collect();
    let fields: Vec<String> = registry
        .iter()
        .flat_map(|s| {
            s.view()
                .fields()
                .iter()
                .map(|f| f.key.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    let strategy = (
        prop::sample::select(names),
        json::object_over(&fields),
        any::<bool>(),
    );
    check(
        "config_validation",
        256,
        strategy,
        |(name, config, defaults)| {
            let schema = registry.get(&name).unwrap();
            let config = if defaults {
                schema.with_defaults(&config)
            } else {
                config
            };
            let _ = schema.validate(&Value::Object(config));
            Ok(())
        },
    );
}

fn manager() -> &'static (tempfile::TempDir, Manager) {
    static M: OnceLock<(tempfile::TempDir, Manager)> = OnceLock::new();
    M.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        let ring = SecretKeyRing::new(KeyId::parse("k1").unwrap(), MasterKey::generate());
        let options = ManagerOptions {
            allow_unknown_services: false,
            env_policy: Arc::default(),
            env: Arc::new(|_| None),
            secrets: Some(Arc::new(ring)),
            auto_fix_schema: false,
        };
        let m = Manager::open(store, SchemaRegistry::builtin().unwrap(), options).unwrap();
        (dir, m)
    })
}

#[test]
fn import_documents() {
    check(
        "import_documents",
        96,
        (documents::import(), any::<bool>(), any::<bool>()),
        |(doc, dry_run, expect_versions)| {
            let Ok(doc) = serde_json::from_value::<ExportDocument>(doc) else {
                return Ok(());
            };
            let options = ImportOptions {
                expect_versions,
                dry_run,
                actor: "prop".into(),
                reason: None,
            };
            let _ = manager().1.import(doc, &options);
            Ok(())
        },
    );
}

fn mac_ring() -> MacKeyRing {
    MacKeyRing::new(
        KeyId::parse("lkg-1").unwrap(),
        MacKey::from_bytes(&[9; 32]).unwrap(),
    )
}

fn lkg_contents() -> LkgContents {
    let mut c = LkgContents::new(Epoch::parse(EPOCH).unwrap(), "hash");
    for (name, volume) in [("tts-worker", 50), ("router", 0)] {
        c.services.insert(
            ServiceName::parse(name).unwrap(),
            LkgService {
                version: Version::new(3).unwrap(),
                updated_at: "2026-01-15T09:30:00.000Z".into(),
                config: obj(json!({"volume_percent": volume})),
            },
        );
    }
    c
}

/// Seals an arbitrary object as an LKG snapshot would be (valid MAC over
/// whatever members it has), so the reader gets past the MAC check.
fn seal_object(mut object: Map<String, Value>, keys: &MacKeyRing) -> Vec<u8> {
    object.remove("hmac");
    object.insert("format".into(), Value::from(2));
    object.insert("key_id".into(), Value::from("lkg-1"));
    if let Ok(bytes) = to_canonical_bytes(&Value::Object(object.clone())) {
        object.insert(
            "hmac".into(),
            Value::from(keys.current_key().tag_hex(&bytes)),
        );
    }
    serde_json::to_vec(&object).unwrap()
}

#[test]
fn lkg_snapshot() {
    let keys = mac_ring();
    let valid = LkgCache::seal(lkg_contents(), &keys)
        .unwrap()
        .to_json_bytes()
        .unwrap();
    let wire: Map<String, Value> = serde_json::from_slice(&valid).unwrap();
    let names: Vec<&str> = wire.keys().map(String::as_str).collect();
    let k = keys.clone();
    let input = prop_oneof![
        bytes::any_bytes(256),
        bytes::damaged(valid.clone(), 8),
        json::near(wire.clone(), 3).prop_map(move |o| seal_object(o, &k)),
        json::object_over(&names).prop_map(|o| serde_json::to_vec(&o).unwrap()),
    ];
    check("lkg_snapshot", 256, input, |b| {
        if let Ok(cache) = LkgCache::from_slice_verified(&b, &keys) {
            let _ = cache.to_json_bytes();
        }
        Ok(())
    });
}

#[test]
fn lkg_journal() {
    let keys = mac_ring();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lkg.json");
    let mut appender = LkgCache::seal(lkg_contents(), &keys)
        .unwrap()
        .compact_to(&path, &keys)
        .unwrap();
    for v in 4..7 {
        appender
            .append(vec![(
                ServiceName::parse("tts-worker").unwrap(),
                Some(LkgService {
                    version: Version::new(v).unwrap(),
                    updated_at: "2026-01-15T09:31:00.000Z".into(),
                    config: obj(json!({"volume_percent": v})),
                }),
            )])
            .unwrap();
    }
    drop(appender);
    let journal = journal_path(&path);
    let valid = std::fs::read(&journal).unwrap();
    let input = prop_oneof![bytes::any_bytes(256), bytes::damaged(valid, 8),];
    check("lkg_journal", 128, input, |b| {
        std::fs::write(&journal, &b).unwrap();
        let _ = LkgCache::read_verified(&path, &keys);
        Ok(())
    });
}

#[test]
fn epoch_file() {
    let valid = json!({
        "format": "config-manager-epoch", "format_version": 1,
        "config_epoch": EPOCH, "schema_version": 4,
        "created_at": "2026-01-15T09:30:00.000Z",
        "last_rebuild": {"at": "2026-01-15T09:30:00.000Z", "previous_epoch": EPOCH, "reason": "x"},
        "written_at": "2026-01-15T09:30:00.000Z"
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db.epoch.json");
    let input = prop_oneof![
        bytes::any_bytes(256),
        bytes::damaged(serde_json::to_vec_pretty(&valid).unwrap(), 6),
        json::near(obj(valid), 3).prop_map(|o| serde_json::to_vec(&o).unwrap()),
    ];
    check("epoch_file", 256, input, |b| {
        std::fs::write(&path, &b).unwrap();
        if let Ok(file) = EpochFile::read(&path) {
            let _ = file.write_atomic(&dir.path().join("copy.json"));
        }
        Ok(())
    });
}

/// A `.env` in the shape of TARS' stock one (compose `env_file` syntax).
const ENV_TEXT: &str = "# comment\nONLINE_ANNOUNCE_TEXT=System online.\nexport A=1  # note\nB='x # y'\nC=\"a\\nb\\\"c\"\nD=\"multi\nline\"\nE=$$literal\nF=${SUB}\nONLY_NAME\n";

#[test]
fn dotenv_text() {
    let input = prop_oneof![
        text::string(),
        bytes::damaged(ENV_TEXT.as_bytes().to_vec(), 6)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        // Any single-quoted value reads back unchanged (a CR before a line
        // end is dropped: CRLF files read as LF ones, as in compose).
        text::string().prop_map(|v| format!("K='{}'\n", v.replace(['\'', '\r'], ""))),
    ];
    check("dotenv_text", 512, input, |text| {
        let parsed = parse_dotenv(&text);
        if let Some(quoted) = text.strip_prefix("K='").and_then(|t| t.strip_suffix("'\n")) {
            let vars = parsed.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(vars.get("K").map(String::as_str), Some(quoted));
        }
        Ok(())
    });
}
