//! Desired vs applied end to end, with the real client libraries: the
//! `config-manager` binary, a mosquitto broker, a Rust `Client` in this
//! process, a Rust `Client` in a child process (this test binary run again,
//! see `rust_child_service`) and a Python `ConfigLibrary` in a child process
//! (`tests/applied_child.py`, run with `.venv-client/bin/python`; `scripts/test.sh
//! python` creates it). What the manager shows is read over REST.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/mqtt.rs"]
mod mqtt_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, READ_TOKEN, WRITE_TOKEN};
use config_manager_client::{ApiToken, Client, ClientSettings, MqttEndpoint};
use config_manager_core::applied::InstanceId;
use config_manager_core::crypto::signing::SigningKey;
use config_manager_core::domain::{Epoch, ServiceName, Version};
use config_manager_core::envelope::Envelope;
use mqtt_support::{env_public_key, trusted, Broker};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Deserialize;
use serde_json::{json, Map, Value};

const WAIT: Duration = Duration::from_secs(45);
const CHILD_ENV: &str = "APPLIED_TEST_CHILD";

/// tts-worker as a service's own model: a volume above 150 is refused by
/// the service (the manager's schema allows 200), so an update can be valid
/// for the manager and still be rejected by the instance.
#[derive(Debug, Clone, Deserialize)]
struct Tts {
    #[serde(default = "default_volume")]
    volume_percent: Volume,
}

fn default_volume() -> Volume {
    Volume(100)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "i64")]
struct Volume(i64);

impl TryFrom<i64> for Volume {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if v > 150 {
            Err(format!("volume {v} is above this service's 150"))
        } else {
            Ok(Volume(v))
        }
    }
}

fn settings(s: &Server, broker: &Broker, instance: &str) -> ClientSettings {
    let key = env_public_key(&s.path(".env"));
    let mut settings =
        ClientSettings::new(ServiceName::parse("tts-worker").unwrap(), trusted(&key));
    settings.manager_url = Some(format!("http://127.0.0.1:{}", s.port));
    settings.api_token = Some(ApiToken::new(READ_TOKEN));
    settings.mqtt = Some(MqttEndpoint::parse(&broker.url()).unwrap());
    settings.instance_id = Some(InstanceId::parse(instance).unwrap());
    settings
}

/// Not a test of its own: the Rust service the end-to-end test starts as a
/// child process (this binary, run again with `CHILD_ENV` set), so it can be
/// SIGKILLed. Without the variable it returns at once.
#[tokio::test]
#[ignore = "run by real_clients_report_applied_rejected_and_offline as a child process"]
async fn rust_child_service() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let key = config_manager_core::crypto::signing::VerifyingKey::from_spki_pem(
        spec["key"].as_str().unwrap(),
    )
    .unwrap();
    let mut settings =
        ClientSettings::new(ServiceName::parse("tts-worker").unwrap(), trusted(&key));
    settings.manager_url = Some(spec["manager"].as_str().unwrap().to_owned());
    settings.api_token = Some(ApiToken::new(READ_TOKEN));
    settings.mqtt = Some(MqttEndpoint::parse(spec["mqtt"].as_str().unwrap()).unwrap());
    settings.instance_id = Some(InstanceId::parse(spec["instance"].as_str().unwrap()).unwrap());
    let _client = Client::<Map<String, Value>>::builder(settings)
        .start()
        .await
        .unwrap();
    println!("ready");
    std::future::pending::<()>().await;
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_rust_child(s: &Server, broker: &Broker, instance: &str) -> Proc {
    let key = env_public_key(&s.path(".env")).to_spki_pem().unwrap();
    let spec = json!({
        "key": key,
        "manager": format!("http://127.0.0.1:{}", s.port),
        "mqtt": broker.url(),
        "instance": instance,
    });
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["rust_child_service", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ENV, spec.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-client/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `scripts/test.sh python` once (it creates the venv with the client)",
        python.display()
    );
    python
}

fn spawn_python_child(s: &Server, broker: &Broker, instance: &str) -> Proc {
    let key = env_public_key(&s.path(".env")).to_spki_pem().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/applied_child.py");
    let child = Command::new(python())
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CONFIG_INSTANCE_ID", instance)
        .env("MQTT_URL", broker.url())
        .env("CONFIG_MANAGER_URL", format!("http://127.0.0.1:{}", s.port))
        .env("CONFIG_API_TOKEN", READ_TOKEN)
        .env("CONFIG_SIGNATURE_PUBLIC_KEY", key)
        .env(
            "CONFIG_CACHE_PATH",
            s.path(&format!("{instance}.cache.json")),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(s.path(&format!("{instance}.log"))).unwrap(),
        ))
        .spawn()
        .unwrap();
    Proc(child)
}

async fn instances(s: &Server) -> Value {
    let (status, body) = s
        .get("/services/tts-worker/instances", Some(READ_TOKEN))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `(state, version, reason)` of each instance id.
fn states(body: &Value) -> Vec<(String, String, Value, Value)> {
    body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["instance_id"].as_str().unwrap().to_owned(),
                i["state"].as_str().unwrap().to_owned(),
                i["version"].clone(),
                i["reason"].clone(),
            )
        })
        .collect()
}

async fn wait_until(s: &Server, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = instances(s).await;
        if pred(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {:#?}\nmanager log:\n{}\npython log:\n{}",
            states(&body),
            s.log(),
            std::fs::read_to_string(s.path("py-c.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn find<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance_id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {body:#}"))
}

fn all(body: &Value, ids: &[&str], state: &str, version: i64) -> bool {
    ids.iter().all(|id| {
        body["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["instance_id"] == *id && i["state"] == state && i["version"] == version)
    })
}

/// Publishes a config signed with a key no service trusts (not retained:
/// the manager's retained message stays).
async fn publish_forged(s: &Server, broker: &Broker, version: u64) {
    let (_, current) = s.get("/services/tts-worker", Some(WRITE_TOKEN)).await;
    let mut config = current["config"].as_object().unwrap().clone();
    config.remove("eleven_api_key");
    let epoch = Epoch::parse(current["config_epoch"].as_str().unwrap()).unwrap();
    let forged = Envelope::sign(
        &ServiceName::parse("tts-worker").unwrap(),
        Version::try_from(version).unwrap(),
        &epoch,
        config,
        &SigningKey::generate(),
    )
    .unwrap();
    let id = format!("forger-{}", uuid::Uuid::new_v4().simple());
    let (client, mut eventloop) =
        AsyncClient::new(MqttOptions::new(id, "127.0.0.1", broker.port), 8);
    client
        .publish(
            "system/config/tts-worker",
            QoS::AtLeastOnce,
            false,
            forged.to_json_bytes().unwrap(),
        )
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.unwrap() {
            break;
        }
    }
}

#[tokio::test]
async fn real_clients_report_applied_rejected_and_offline() {
    let broker = Broker::start();
    let s = Server::start_with_mqtt(broker.url()).await;
    let v1 = s.version("tts-worker").await;
    let ids = ["rust-a", "rust-b", "py-c"];

    // Start-up load: each reports `applied` with the current version.
    let rust_a = Client::<Tts>::builder(settings(&s, &broker, "rust-a"))
        .start()
        .await
        .unwrap();
    let mut rust_b = spawn_rust_child(&s, &broker, "rust-b");
    let mut py_c = spawn_python_child(&s, &broker, "py-c");
    let body = wait_until(&s, "all three in sync at start-up", |b| {
        all(b, &ids, "in_sync", v1)
    })
    .await;
    assert_eq!(
        find(&body, "rust-a")["client"]["name"],
        "config-manager-client"
    );
    assert_eq!(find(&body, "py-c")["client"]["name"], "tars-config-client");
    assert_eq!(body["summary"]["state"], "in_sync");

    // An update every instance applies.
    let v2 = s
        .patch_latest("tts-worker", json!({"volume_percent": 120}))
        .await;
    wait_until(&s, "all three apply v2", |b| all(b, &ids, "in_sync", v2)).await;
    assert_eq!(rust_a.current().volume_percent.0, 120);

    // Valid for the manager, invalid for the services' own models (Rust A
    // and Python C refuse a volume over 150; Rust B takes any object).
    let v3 = s
        .patch_latest("tts-worker", json!({"volume_percent": 180}))
        .await;
    let body = wait_until(&s, "model-invalid update", |b| {
        all(b, &["rust-a", "py-c"], "rejected", v2) && all(b, &["rust-b"], "in_sync", v3)
    })
    .await;
    for id in ["rust-a", "py-c"] {
        let i = find(&body, id);
        assert_eq!(i["reason"], "invalid_config", "{i}");
        assert_eq!(i["rejected_version"], v3, "{i}");
    }
    let (_, list) = s.get("/services", Some(READ_TOKEN)).await;
    assert_eq!(list["applied"]["tts-worker"]["state"], "rejected");
    assert_eq!(list["applied"]["tts-worker"]["in_sync"], 1);

    // A forged message (a key nobody trusts): every instance refuses it.
    publish_forged(&s, &broker, u64::try_from(v3).unwrap() + 1).await;
    let body = wait_until(&s, "forged message rejected by rust-b", |b| {
        find(b, "rust-b")["state"] == "rejected"
    })
    .await;
    let reason = find(&body, "rust-b")["reason"].as_str().unwrap().to_owned();
    assert!(
        ["unknown_key", "bad_signature"].contains(&reason.as_str()),
        "{reason}"
    );
    assert_eq!(find(&body, "rust-b")["version"], v3);

    // Killed without a clean stop: the broker publishes their last-will.
    rust_b.kill9();
    py_c.kill9();
    wait_until(&s, "killed instances offline", |b| {
        find(b, "rust-b")["state"] == "offline" && find(b, "py-c")["state"] == "offline"
    })
    .await;
    // A clean stop reports offline too.
    rust_a.shutdown().await;
    let body = wait_until(&s, "rust-a offline after shutdown", |b| {
        find(b, "rust-a")["state"] == "offline"
    })
    .await;
    assert_eq!(body["summary"]["state"], "offline");
    assert_eq!(body["summary"]["reachable"], 0);
}
