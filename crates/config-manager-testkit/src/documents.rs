//! Whole documents a caller sends: export documents for import.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use crate::{json, text};

/// An export document as `POST /import` and `config import` read it:
/// mostly of the right shape with generated services (built-in names and
/// others), versions, configs and profiles; sometimes members of any type.
pub fn import() -> BoxedStrategy<Value> {
    let service = prop_oneof![
        3 => prop::sample::select(vec!["tts-worker", "router", "stt-worker", "llm-worker"]).prop_map(str::to_owned),
        1 => text::service_like(),
    ];
    let entry = (
        prop::option::of(json::number()),
        json::object_over(&[
            "volume_percent",
            "tts_provider",
            "eleven_api_key",
            "piper_voice",
        ]),
    )
        .prop_map(|(version, config)| {
            let mut e = Map::new();
            if let Some(v) = version {
                e.insert("version".into(), v);
            }
            e.insert("config".into(), Value::Object(config));
            Value::Object(e)
        });
    let services = prop::collection::btree_map(service, entry, 0..3);
    let profiles = prop::option::of(prop::collection::vec(
        (text::string(), json::value()).prop_map(
            |(name, snapshot)| json!({"name": name, "config_snapshot": {"tts-worker": snapshot}}),
        ),
        0..2,
    ));
    let doc = (
        services,
        profiles,
        prop::option::of(text::string()),
        any::<bool>(),
    )
        .prop_map(|(services, profiles, epoch, secrets)| {
            let mut doc = Map::new();
            doc.insert("format".into(), Value::from("config-manager-export"));
            doc.insert("format_version".into(), Value::from(1));
            doc.insert("includes_secrets".into(), Value::Bool(secrets));
            doc.insert(
                "services".into(),
                Value::Object(services.into_iter().collect()),
            );
            if let Some(p) = profiles {
                doc.insert("profiles".into(), Value::from(p));
            }
            if let Some(e) = epoch {
                doc.insert("config_epoch".into(), Value::from(e));
            }
            Value::Object(doc)
        });
    prop_oneof![
        4 => doc,
        1 => json::object_over(&["format", "format_version", "services", "profiles", "config_epoch"]).prop_map(Value::Object),
    ]
    .boxed()
}
