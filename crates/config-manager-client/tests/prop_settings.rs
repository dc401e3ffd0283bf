//! No panic from any input (issue 23), in the client library: settings from
//! arbitrary environments, `MQTT_URL`, and the update pipeline (every MQTT
//! payload a service receives, then the applied-state report it answers
//! with). Each `#[test]` is also a `make fuzz` target of the same name
//! (docs/testing.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use config_manager_client::counters::Counters;
use config_manager_client::pipeline::{PipelineConfig, UpdatePipeline};
use config_manager_client::report::Reporter;
use config_manager_client::{AppliedState, ClientSettings, FreshnessPolicy, MqttEndpoint, Outcome};
use config_manager_core::applied::InstanceId;
use config_manager_core::crypto::signing::{SigningKey, TrustedKeys};
use config_manager_core::domain::{Epoch, ServiceName, Version};
use config_manager_core::envelope::Envelope;
use config_manager_testkit::proptest::prelude::*;
use config_manager_testkit::{bytes, check, json, text};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

const EPOCH: &str = "5b0c3f0e-8a51-4c8e-9a43-7f6d2b1e0a01";

fn key() -> SigningKey {
    SigningKey::from_seed(&[42; 32])
}

fn public_pem() -> String {
    key().verifying_key().to_spki_pem().unwrap()
}

const VARIABLES: &[&str] = &[
    "SERVICE_NAME",
    "CONFIG_SIGNATURE_PUBLIC_KEY",
    "CONFIG_MANAGER_URL",
    "CONFIG_API_TOKEN",
    "MQTT_URL",
    "MQTT_CA_FILE",
    "CONFIG_LKG_CACHE_PATH",
    "LKG_HMAC_KEY_BASE64",
    "LKG_HMAC_KEY_ID",
    "CONFIG_MAX_AGE_SECS",
    "CONFIG_MAX_SKEW_SECS",
    "CONFIG_ACCEPT_STALE_INITIAL",
    "CONFIG_INSTANCE_ID",
    "CONFIG_REPORT_APPLIED",
];

/// `MQTT_URL`-shaped text: scheme, user info, host (name, IPv4, bracketed
/// IPv6), port and path parts each drawn with near misses.
fn mqtt_url() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "(mqtts?://|mqtt:/|http://|)([a-zA-Z0-9%:]{0,6}@){0,2}(\\[[0-9a-fA-F:%.]{0,12}\\]?|[a-z0-9.-]{0,12})(:[0-9]{0,7}|:)?(/|/x|\\?a|#)?",
        1 => text::string(),
    ]
    .boxed()
}

fn env_value(name: &'static str) -> BoxedStrategy<String> {
    match name {
        "CONFIG_SIGNATURE_PUBLIC_KEY" => prop_oneof![
            3 => Just(public_pem()),
            1 => Just(public_pem().replace('\n', "\\n")),
            2 => bytes::damaged(public_pem().into_bytes(), 4)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ]
        .boxed(),
        "SERVICE_NAME" => text::service_like(),
        "CONFIG_INSTANCE_ID" => text::instance_like(),
        "MQTT_URL" => mqtt_url(),
        "LKG_HMAC_KEY_BASE64" => prop_oneof![
            Just("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned()),
            "[A-Za-z0-9+/=]{0,48}",
        ]
        .boxed(),
        _ => prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            Just("18446744073709551616".to_owned()),
            text::string(),
        ]
        .boxed(),
    }
}

fn environment() -> impl Strategy<Value = BTreeMap<String, String>> {
    let pairs: Vec<_> = VARIABLES
        .iter()
        .map(|name| prop::option::weighted(0.6, env_value(name)).prop_map(move |v| (*name, v)))
        .collect();
    pairs.prop_map(|pairs| {
        pairs
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect()
    })
}

#[test]
fn client_settings_from_environment() {
    check(
        "client_settings_from_environment",
        256,
        environment(),
        |env| {
            if let Ok(settings) = ClientSettings::from_lookup(|name| env.get(name).cloned()) {
                let _ = settings.effective_instance_id();
                let _ = format!("{settings:?}");
            }
            Ok(())
        },
    );
}

#[test]
fn mqtt_urls() {
    check("mqtt_urls", 512, mqtt_url(), |url| {
        if let Ok(endpoint) = MqttEndpoint::parse(&url) {
            prop_assert!(!endpoint.host.is_empty());
            let _ = format!("{endpoint:?}");
        }
        Ok(())
    });
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Tts {
    volume_percent: u8,
    #[serde(default)]
    api_key: Option<String>,
}

fn service() -> ServiceName {
    ServiceName::parse("tts-worker").unwrap()
}

/// A payload as received: noise, a damaged valid envelope, or a validly
/// signed envelope with a generated config and `issued_at` (including
/// times whose UTC form is out of range, the panic).
fn payload() -> BoxedStrategy<Vec<u8>> {
    let valid = Envelope::sign(
        &service(),
        Version::new(6).unwrap(),
        &Epoch::parse(EPOCH).unwrap(),
        json!({"volume_percent": 40, "api_key": "********"})
            .as_object()
            .cloned()
            .unwrap(),
        &key(),
    )
    .unwrap();
    let valid_bytes = valid.to_json_bytes().unwrap();
    let signed = (
        json::object_over(&["volume_percent", "api_key"]),
        prop_oneof![
            3 => text::rfc3339_like(),
            1 => Just("2026-01-01T00:00:30Z".to_owned()),
        ],
        prop_oneof![Just(6u64), Just(5), 1u64..(1 << 53)],
        prop_oneof![
            Just(EPOCH.to_owned()),
            Just("9e2d7c41-1f3b-4a5e-8c6d-0b1a2c3d4e5f".to_owned())
        ],
    )
        .prop_map(|(config, issued_at, version, epoch)| {
            let Ok(mut e) = Envelope::sign(
                &service(),
                Version::try_from(version).unwrap(),
                &Epoch::parse(&epoch).unwrap(),
                config,
                &key(),
            ) else {
                return Vec::new();
            };
            // Any issued_at, signed as the manager would sign it.
            e.issued_at = issued_at;
            e.signature = key().sign_base64(&e.signed_bytes().unwrap());
            e.to_json_bytes().unwrap()
        });
    prop_oneof![
        1 => bytes::any_bytes(256),
        2 => bytes::damaged(valid_bytes, 8),
        3 => signed,
    ]
    .boxed()
}

#[test]
fn client_pipeline() {
    let strategy = (
        prop::collection::vec(payload(), 1..4),
        text::unix_seconds(),
        any::<bool>(),
    );
    check(
        "client_pipeline",
        192,
        strategy,
        |(payloads, now, from_rest)| {
            let now = OffsetDateTime::from_unix_timestamp(now).unwrap();
            let applied = from_rest.then(|| AppliedState {
                epoch: Epoch::parse(EPOCH).unwrap(),
                version: Version::new(5).unwrap(),
                checksum: None,
            });
            let mut pipeline = UpdatePipeline::new(PipelineConfig {
                service: service(),
                trusted: TrustedKeys::from_keys([key().verifying_key()]),
                policy: FreshnessPolicy::default(),
                max_payload: 4096,
                initial: Arc::new(Tts {
                    volume_percent: 50,
                    api_key: Some("sk-real".into()),
                }),
                initial_raw: Map::from_iter([("volume_percent".to_owned(), Value::from(50))]),
                applied: applied.clone(),
                counters: Arc::new(Counters::default()),
            });
            let mut reporter = Reporter::new(
                service(),
                InstanceId::parse("robot-1").unwrap(),
                applied.as_ref(),
                now,
            );
            for p in payloads {
                match pipeline.handle(&p, now, None) {
                    Outcome::Applied { .. } => {
                        let state = pipeline.applied().cloned().unwrap();
                        let _ = reporter.applied(&state, now).to_json();
                    }
                    Outcome::Rejected(reason) => {
                        let _ = reporter.rejected(reason.label(), pipeline.last_version());
                    }
                    Outcome::Ignored(_) => {}
                }
            }
            Ok(())
        },
    );
}
