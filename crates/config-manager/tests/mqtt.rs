//! The MQTT publisher against real components: the `config-manager` binary, a
//! mosquitto broker started here on a free port, subscribers, the client
//! library, and an independent Python verifier.

// Helpers outside #[test] fns are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/mqtt.rs"]
mod mqtt_support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{free_port, Server, READ_TOKEN};
use config_manager_client::{ApiToken, Client, ClientSettings, ConfigSource, MqttEndpoint};
use config_manager_core::crypto::signing::VerifyingKey;
use config_manager_core::domain::{ServiceName, Version};
use config_manager_core::envelope::{Envelope, DEFAULT_MAX_ENVELOPE_BYTES};
use config_manager_core::health::HEALTH_TOPIC;
use mqtt_support::{env_public_key, trusted, Broker, Message, Subscriber};
use rumqttc::QoS;
use serde_json::{json, Map, Value};

const TTS_TOPIC: &str = "system/config/tts-worker";
const WAIT: Duration = Duration::from_secs(20);

fn validator(schema_text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(schema_text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("contract schema compiles")
}

fn assert_valid(schema_text: &str, instance: &Value) {
    let v = validator(schema_text);
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{instance}\n{errors:#?}");
}

const ENVELOPE_SCHEMA: &str = include_str!("../../../contracts/mqtt-config-update.schema.json");
const HEALTH_SCHEMA: &str = include_str!("../../../contracts/mqtt-health-status.schema.json");

/// Parses and verifies a config message with the server's public key, and
/// checks it against the contract schema.
fn verified(msg: &Message, key: &VerifyingKey) -> Envelope {
    assert_valid(ENVELOPE_SCHEMA, &msg.json());
    let envelope = Envelope::parse(&msg.payload, DEFAULT_MAX_ENVELOPE_BYTES).expect("parses");
    envelope
        .verify(&trusted(key))
        .expect("signature verifies with the key from .env");
    assert_eq!(format!("system/config/{}", envelope.service), msg.topic);
    envelope
}

fn version_of(msg: &Message) -> u64 {
    msg.json()["version"].as_u64().unwrap_or(0)
}

/// Whether the latest message of each topic in `wants` has that version.
fn has_versions(latest: &HashMap<String, Message>, wants: &[(&str, u64)]) -> bool {
    wants
        .iter()
        .all(|(topic, v)| latest.get(*topic).is_some_and(|m| version_of(m) == *v))
}

async fn start_server(mqtt_url: &str, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![("MQTT_URL".to_owned(), mqtt_url.to_owned())];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Server::start_with(env).await
}

/// Polls REST health until `mqtt_connected` is `want`.
async fn wait_mqtt_connected(s: &Server, want: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let (_, health) = s.get("/health", None).await;
        if health["mqtt_connected"] == want {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "mqtt_connected never became {want}: {health}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `config` over the current version; the new version as the
/// messages carry it.
async fn write(s: &Server, service: &str, config: Value) -> u64 {
    u64::try_from(s.patch_latest(service, config).await).expect("version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_publishes_a_signed_retained_message_and_never_a_secret() {
    let broker = Broker::start();
    let mut live = Subscriber::connect(broker.port, "system/config/#").await;
    let s = start_server(&broker.url(), &[("MQTT_REISSUE_SECS", "1")]).await;
    let key = env_public_key(&s.path(".env"));

    // On start every service is published.
    let first = live
        .next_matching(WAIT, "start-up tts-worker", |m| m.topic == TTS_TOPIC)
        .await;
    let (_, rest) = s.get("/services/tts-worker", Some(READ_TOKEN)).await;
    let start = verified(&first, &key);
    assert_eq!(start.version.get(), rest["version"].as_i64().unwrap());

    // PUT → a QoS 1 message with the new version, valid and signed.
    let (status, body) = s
        .put_config("tts-worker", &json!({"config": {"volume_percent": 55, "tts_aggregate_timeout_sec": 2.5}, "version": start.version}))
        .await;
    assert_eq!(status, 200, "{body}");
    let new_version = body["version"].as_u64().unwrap();
    let msg = live
        .next_matching(WAIT, "after PUT", |m| {
            m.topic == TTS_TOPIC && version_of(m) == new_version
        })
        .await;
    assert_eq!(msg.qos, QoS::AtLeastOnce);
    let envelope = verified(&msg, &key);
    assert_eq!(envelope.config["volume_percent"], 55);
    assert_eq!(envelope.config["tts_aggregate_timeout_sec"], 2.5);
    assert_eq!(envelope.config_epoch.as_str(), body["config_epoch"]);
    assert_eq!(envelope.key_id, *key.key_id());

    // A subscriber that connects later gets the latest as a retained message.
    let mut late = Subscriber::connect(broker.port, TTS_TOPIC).await;
    let retained = late.next_matching(WAIT, "retained", |m| m.retain).await;
    assert_eq!(retained.qos, QoS::AtLeastOnce);
    let new = Version::try_from(new_version).unwrap();
    assert_eq!(verified(&retained, &key).version, new);
    // ... and the periodic re-issue re-signs the same version later.
    let reissued = late
        .next_matching(WAIT, "re-issue", |m| {
            Envelope::parse(&m.payload, DEFAULT_MAX_ENVELOPE_BYTES)
                .is_ok_and(|e| e.version == new && e.issued_at != envelope.issued_at)
        })
        .await;
    assert!(verified(&reissued, &key).issued_at > envelope.issued_at);

    // A secret set over the API never appears in a payload.
    let secret = "el-secret-value-9f8e7d6c5b4a";
    let secret_version = write(&s, "tts-worker", json!({"eleven_api_key": secret})).await;
    let msg = live
        .next_matching(WAIT, "after the secret write", |m| {
            m.topic == TTS_TOPIC && version_of(m) == secret_version
        })
        .await;
    let envelope = verified(&msg, &key);
    assert!(
        !envelope.config.contains_key("eleven_api_key"),
        "secrets are omitted"
    );
    // The REST view shows it masked, so it is really stored.
    let (_, rest) = s.get("/services/tts-worker", Some(READ_TOKEN)).await;
    assert_eq!(rest["config"]["eleven_api_key"], "********");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut seen = live.drain();
    seen.push(msg);
    let mut late = Subscriber::connect(broker.port, "system/#").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    seen.extend(late.drain());
    assert!(seen.len() > 6);
    for m in &seen {
        assert!(
            !m.payload
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "secret in a payload on {}",
            m.topic
        );
    }
    assert!(!s.log().contains(secret));
    live.close().await;
    late.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_retained_and_marks_a_stopped_or_killed_manager_offline() {
    let broker = Broker::start();
    let mut s = start_server(&broker.url(), &[]).await;
    let rest = wait_mqtt_connected(&s, true).await;
    assert_eq!(rest["mqtt_configured"], true);

    let mut sub = Subscriber::connect(broker.port, HEALTH_TOPIC).await;
    let msg = sub
        .next_matching(WAIT, "retained health", |m| m.retain)
        .await;
    assert_eq!(msg.qos, QoS::AtLeastOnce);
    let health = msg.json();
    assert_valid(HEALTH_SCHEMA, &health);
    assert_eq!(health["status"], "online");
    assert_eq!(health["ok"], true);
    assert_eq!(health["mqtt_connected"], true);
    assert_eq!(health["mqtt_configured"], true);
    assert_eq!(health["config_epoch"], rest["config_epoch"]);
    assert_eq!(health["operational_mode"], rest["operational_mode"]);

    // Graceful stop: the manager publishes its offline form itself.
    assert_eq!(s.terminate(), Some(0), "{}", s.log());
    let msg = sub
        .next_matching(WAIT, "offline after SIGTERM", |m| {
            m.json()["status"] == "offline"
        })
        .await;
    let health = msg.json();
    assert_valid(HEALTH_SCHEMA, &health);
    assert_eq!(health["event"], "config-manager stopped");
    assert_eq!(health["ok"], false);
    assert_eq!(health["mqtt_connected"], false);

    // Back online, then SIGKILL: the broker sends the last-will.
    s.spawn().await;
    sub.next_matching(WAIT, "online after restart", |m| {
        m.json()["status"] == "online"
    })
    .await;
    wait_mqtt_connected(&s, true).await;
    s.kill9();
    let msg = sub
        .next_matching(WAIT, "last-will after SIGKILL", |m| {
            m.json()["status"] == "offline"
        })
        .await;
    let will = msg.json();
    assert_valid(HEALTH_SCHEMA, &will);
    assert!(
        will["event"]
            .as_str()
            .is_some_and(|e| e.contains("last will")),
        "{will}"
    );
    // Late subscribers see the manager as offline.
    let mut late = Subscriber::connect(broker.port, HEALTH_TOPIC).await;
    let retained = late
        .next_matching(WAIT, "retained will", |m| m.retain)
        .await;
    assert_eq!(retained.json()["status"], "offline");
    sub.close().await;
    late.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_state_changes() {
    let broker = Broker::start();
    let s = start_server(&broker.url(), &[("CONFIG_MONITOR_INTERVAL_MS", "100")]).await;
    wait_mqtt_connected(&s, true).await;
    let mut sub = Subscriber::connect(broker.port, HEALTH_TOPIC).await;
    let msg = sub
        .next_matching(WAIT, "retained health", |m| m.retain)
        .await;
    assert_eq!(msg.json()["operational_mode"], "normal");

    // The database file disappears: the monitor switches to fallback, and
    // the retained health says so without waiting for a periodic publish.
    std::fs::remove_file(s.db_path()).unwrap();
    let msg = sub
        .next_matching(WAIT, "fallback health", |m| {
            m.json()["operational_mode"] == "read-only-fallback"
        })
        .await;
    let health = msg.json();
    assert_valid(HEALTH_SCHEMA, &health);
    assert_eq!(health["ok"], false);
    assert_eq!(health["status"], "online");
    let (_, rest) = s.get("/health", None).await;
    assert_eq!(rest["operational_mode"], "read-only-fallback");
    sub.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_never_blocks_writes_and_reconnect_republishes_the_latest() {
    // The manager starts while no broker is listening.
    let port = free_port();
    let url = format!("mqtt://127.0.0.1:{port}");
    let s = start_server(&url, &[]).await;
    let (code, health) = s.get("/health", None).await;
    assert_eq!(
        code, 200,
        "a missing broker does not make the manager unhealthy"
    );
    assert_eq!(health["mqtt_configured"], true);
    assert_eq!(health["mqtt_connected"], false);
    write(&s, "router", json!({"router_wake_ack_text": "Yes?"})).await;

    let mut broker = Broker::start_on(port);
    wait_mqtt_connected(&s, true).await;
    let key = env_public_key(&s.path(".env"));

    // A service using the client library, started from REST.
    let mut settings =
        ClientSettings::new(ServiceName::parse("tts-worker").unwrap(), trusted(&key));
    settings.manager_url = Some(format!("http://127.0.0.1:{}", s.port));
    settings.api_token = Some(ApiToken::new(READ_TOKEN));
    settings.mqtt = Some(MqttEndpoint::parse(&url).unwrap());
    let client = Client::<Map<String, Value>>::builder(settings)
        .start()
        .await
        .unwrap();
    assert_eq!(client.snapshot().source, ConfigSource::Rest);

    // The broker goes away; writes keep succeeding, quickly.
    broker.stop();
    let health = wait_mqtt_connected(&s, false).await;
    assert_eq!(health["ok"], true);
    let mut slowest = Duration::ZERO;
    let mut last_tts = 0;
    let mut last_router = 0;
    for i in 0..20u64 {
        let started = Instant::now();
        last_tts = write(&s, "tts-worker", json!({"volume_percent": 60 + i})).await;
        last_router = write(&s, "router", json!({"router_stream_min_chars": 10 + i})).await;
        slowest = slowest.max(started.elapsed() / 2);
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a write took {slowest:?} with the broker down"
    );
    let (_, health) = s.get("/health", None).await;
    assert_eq!(health["mqtt_connected"], false);

    // The broker comes back empty: the manager republishes everything.
    broker.restart();
    wait_mqtt_connected(&s, true).await;
    let wants = [(TTS_TOPIC, last_tts), ("system/config/router", last_router)];
    // First wait until the republish is through (live or retained) ...
    // (`+`: the config topics only; the client's applied-state report lives
    // one level below, on system/config/tts-worker/applied/<instance>.)
    let mut sub = Subscriber::connect(port, "system/config/+").await;
    sub.latest_until(WAIT, "the republish", |latest| {
        latest.len() >= 6 && has_versions(latest, &wants)
    })
    .await;
    sub.close().await;
    // ... then a new subscriber finds all of it retained.
    let mut sub = Subscriber::connect(port, "system/config/+").await;
    let retained = sub
        .latest_until(WAIT, "every service, retained, latest", |latest| {
            latest.len() >= 6 && latest.values().all(|m| m.retain) && has_versions(latest, &wants)
        })
        .await;
    for msg in retained.values() {
        verified(msg, &key);
    }

    // The service ends on the latest config.
    let mut rx = client.subscribe();
    let snapshot = tokio::time::timeout(
        Duration::from_secs(60),
        rx.wait_for(|snap| {
            snap.applied
                .as_ref()
                .is_some_and(|a| a.version == Version::try_from(last_tts).unwrap())
        }),
    )
    .await
    .expect("the client applied the latest version after the outage")
    .unwrap()
    .clone();
    assert_eq!(snapshot.source, ConfigSource::Mqtt);
    assert_eq!(snapshot.config["volume_percent"], 79);
    client.shutdown().await;
    sub.close().await;
}

/// More services than the publisher signs in one batch: every one is
/// published, retained and verifiable after a connect.
#[tokio::test]
async fn every_service_of_many_is_published_on_connect() {
    const EXTRA: usize = 150;
    let schemas = tempfile::tempdir().unwrap();
    for i in 0..EXTRA {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {"level": {"type": "integer", "default": i, "description": "Level"}},
        });
        std::fs::write(
            schemas.path().join(format!("fleet-{i:03}.json")),
            serde_json::to_vec(&schema).unwrap(),
        )
        .unwrap();
    }
    let broker = Broker::start();
    let s = start_server(
        &broker.url(),
        &[("CONFIG_SCHEMA_DIR", &schemas.path().display().to_string())],
    )
    .await;
    wait_mqtt_connected(&s, true).await;
    let key = env_public_key(&s.path(".env"));
    let all = EXTRA + 6;
    // First until everything went out (live or retained), then a new
    // subscriber finds all of it retained.
    let mut sub = Subscriber::connect(broker.port, "system/config/+").await;
    sub.latest_until(WAIT, "every service", |latest| latest.len() >= all)
        .await;
    sub.close().await;
    let mut sub = Subscriber::connect(broker.port, "system/config/+").await;
    let retained = sub
        .latest_until(WAIT, "every service, retained", |latest| {
            latest.len() >= all && latest.values().all(|m| m.retain)
        })
        .await;
    sub.close().await;
    assert_eq!(retained.len(), all);
    for i in 0..EXTRA {
        let msg = &retained[&format!("system/config/fleet-{i:03}")];
        let envelope = verified(msg, &key);
        assert_eq!(envelope.config["level"], i, "{:?}", msg.topic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_private_ca() {
    let broker = Broker::start_with_tls();
    let tls = broker.tls.as_ref().unwrap();
    let url = format!("mqtts://127.0.0.1:{}", tls.port);
    let ca = tls.ca_file.display().to_string();
    let s = start_server(&url, &[("MQTT_CA_FILE", &ca)]).await;
    wait_mqtt_connected(&s, true).await;
    let key = env_public_key(&s.path(".env"));
    // What the manager sent over TLS, read back on the plain listener.
    // Retained if the publish reached the broker before this subscription,
    // live (retain flag cleared) if it was still on its way: on a loaded host
    // the TLS connection's first publishes can lose that race, so either counts.
    let mut sub = Subscriber::connect(broker.port, TTS_TOPIC).await;
    let msg = sub
        .next_matching(WAIT, "tts-worker's config sent over TLS", |m| {
            m.topic == TTS_TOPIC
        })
        .await;
    verified(&msg, &key);
    sub.close().await;

    // Without the CA the certificate is refused: the manager stays up and
    // says it is not connected.
    let s2 = start_server(&url, &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, health) = s2.get("/health", None).await;
    assert_eq!(code, 200);
    assert_eq!(health["mqtt_connected"], false);
    assert!(s2.log().contains("MQTT broker unreachable"), "{}", s2.log());
}

#[tokio::test]
async fn without_mqtt_url_health_says_not_configured() {
    let s = Server::start().await;
    let (code, health) = s.get("/health", None).await;
    assert_eq!(code, 200);
    assert_eq!(health["mqtt_configured"], false);
    assert_eq!(health["mqtt_connected"], false);
    assert_valid(HEALTH_SCHEMA, &health);
}

/// The Python verifier in `tests/cross_language.py`, run with the venv that
/// `scripts/test.sh` creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_verifies_real_published_messages() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-test/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `scripts/test.sh` (it creates the venv), or \
         `python3 -m venv .venv-test && .venv-test/bin/pip install paho-mqtt cryptography rfc8785` \
         in the workspace root",
        python.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cross_language.py");

    let broker = Broker::start();
    let s = start_server(&broker.url(), &[]).await;
    wait_mqtt_connected(&s, true).await;
    // Values that exercise canonical JSON: a float, non-ASCII text, escapes.
    let tts = write(
        &s,
        "tts-worker",
        json!({"tts_aggregate_timeout_sec": 0.1, "piper_voice": "de_DE-thorsten \"höflich\" ✓ \\ \u{1F916}", "volume_percent": 120}),
    )
    .await;
    let router = write(&s, "router", json!({"router_wake_window_sec": 12.75})).await;
    // Both updates are on the broker before Python subscribes, so it sees
    // them as retained messages.
    let mut sub = Subscriber::connect(broker.port, "system/config/#").await;
    let wants = [(TTS_TOPIC, tts), ("system/config/router", router)];
    sub.latest_until(WAIT, "both updates", |latest| has_versions(latest, &wants))
        .await;
    sub.close().await;
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg("--port")
        .arg(broker.port.to_string())
        .arg("--env-file")
        .arg(s.path(".env"))
        .arg("--expect")
        .arg(format!("tts-worker={tts}"))
        .arg("--expect")
        .arg(format!("router={router}"))
        .arg("--min-services")
        .arg("6")
        .output()
        .await
        .expect("run the Python verifier");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Python verification failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("verified"), "{stdout}");
}
