//! Shared harness of the client's live tests: the shared mosquitto broker
//! (config-manager-testkit), a minimal HTTP server standing in for the
//! manager's REST endpoint, signed envelopes, on-disk copies and a watcher of
//! the applied-state reports.

// Helpers outside #[test] fns are not covered by clippy.toml's allow-unwrap-in-tests;
// each test file uses a part of the harness.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use config_manager_client::{
    AppliedReport, AppliedStatus, Client, ClientSettings, MqttEndpoint, Snapshot,
};
use config_manager_core::applied::parse_applied_topic;
use config_manager_core::crypto::signing::{SigningKey, TrustedKeys};
use config_manager_core::domain::{Epoch, ServiceName, Version};
use config_manager_core::envelope::{config_topic, Envelope};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

pub const EPOCH: &str = "5b0c3f0e-8a51-4c8e-9a43-7f6d2b1e0a01";

#[derive(Debug, Deserialize, PartialEq, Clone)]
pub struct Tts {
    pub volume_percent: u8,
    pub tts_provider: String,
}

pub fn defaults() -> Tts {
    Tts {
        volume_percent: 100,
        tts_provider: "piper".into(),
    }
}

/// A started client of [`Tts`] with [`defaults`] as its last resort.
pub async fn start_with_defaults(settings: ClientSettings) -> Client<Tts> {
    Client::<Tts>::builder(settings)
        .defaults(defaults())
        .start()
        .await
        .unwrap()
}

// Not every test file uses every item of the shared harness.
#[allow(unused_imports)]
pub use config_manager_testkit::broker::{free_port, Broker};

/// The client's view of the test broker.
pub trait BrokerEndpoint {
    fn endpoint(&self) -> MqttEndpoint;
}

impl BrokerEndpoint for Broker {
    fn endpoint(&self) -> MqttEndpoint {
        MqttEndpoint::parse(&self.url()).unwrap()
    }
}

/// Publishes one retained QoS 1 message and waits for the broker's PUBACK.
pub async fn publish(port: u16, topic: &str, payload: Vec<u8>) {
    let mut opts = MqttOptions::new(format!("test-pub-{}", rand_suffix()), "127.0.0.1", port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    client
        .publish(topic, QoS::AtLeastOnce, true, payload)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.unwrap() {
                break;
            }
        }
    })
    .await
    .expect("PUBACK within 10 s");
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
}

pub fn rand_suffix() -> u32 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

pub fn service() -> ServiceName {
    ServiceName::parse("tts-worker").unwrap()
}

pub fn config(volume: u64) -> Map<String, Value> {
    json!({"volume_percent": volume, "tts_provider": "piper"})
        .as_object()
        .unwrap()
        .clone()
}

pub fn signed(key: &SigningKey, version: u64, volume: u64) -> Vec<u8> {
    Envelope::sign(
        &service(),
        Version::try_from(version).unwrap(),
        &Epoch::parse(EPOCH).unwrap(),
        config(volume),
        key,
    )
    .unwrap()
    .to_json_bytes()
    .unwrap()
}

pub fn settings(key: &SigningKey) -> ClientSettings {
    ClientSettings::new(service(), TrustedKeys::from_keys([key.verifying_key()]))
}

/// Waits until the snapshot satisfies `pred`.
pub async fn wait_for(
    rx: &mut watch::Receiver<Snapshot<Tts>>,
    pred: impl Fn(&Snapshot<Tts>) -> bool,
) -> Snapshot<Tts> {
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| pred(s)))
        .await
        .expect("update within 10 s")
        .expect("client still running")
        .clone()
}

/// Waits until the client has counted `n` rejections.
pub async fn wait_rejected(client: &Client<Tts>, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.counters().rejected_total() < n {
        assert!(
            Instant::now() < deadline,
            "expected {n} rejections, counters: {:?}",
            client.counters()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn fake_manager(body: Value, token: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut len = 0;
                while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => len += n,
                    }
                }
                let request = String::from_utf8_lossy(&buf[..len]).to_lowercase();
                let (status, body) = if !request.starts_with("get /api/config/services/tts-worker ")
                {
                    ("404 Not Found", json!({"title": "not found"}))
                } else if !request.contains(&format!("x-api-token: {token}\r\n")) {
                    ("401 Unauthorized", json!({"title": "unauthorized"}))
                } else {
                    ("200 OK", body)
                };
                let body = body.to_string();
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// Settings for a start-up from REST: a fake manager serves version 5
/// (volume 55) while the broker holds an older signed version 4 (volume 44,
/// e.g. replayed there).
pub async fn rest_startup_settings(broker: &Broker, key: &SigningKey) -> ClientSettings {
    let addr = fake_manager(
        json!({"service": "tts-worker", "config": config(55), "version": 5, "updated_at": "2026-01-01T00:00:00.000Z", "config_epoch": EPOCH}),
        "tok-read",
    )
    .await;
    publish(broker.port, &config_topic(&service()), signed(key, 4, 44)).await;
    let mut s = settings(key);
    s.manager_url = Some(format!("http://{addr}"));
    s.api_token = Some(config_manager_client::ApiToken::new("tok-read"));
    s.mqtt = Some(broker.endpoint());
    s
}

pub fn write_copy(path: &Path, key: &SigningKey, volume: u64) {
    config_manager_client::copy::write(path, &signed(key, 8, volume)).unwrap();
}

pub const REPORTS: &str = "system/config/tts-worker/applied/+";

/// A subscriber on every applied-state topic of tts-worker, started before
/// the clients so it sees each report in order (and the retained ones).
pub struct ReportWatcher {
    pub rx: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

impl ReportWatcher {
    pub async fn start(port: u16) -> Self {
        let opts = MqttOptions::new(format!("test-sub-{}", rand_suffix()), "127.0.0.1", port);
        let (client, mut eventloop) = AsyncClient::new(opts, 10);
        client.subscribe(REPORTS, QoS::AtLeastOnce).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _client = client;
            let mut subscribed = Some(subscribed_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
            .await
            .expect("SUBACK within 10 s")
            .unwrap();
        Self { rx }
    }

    /// The next report, checked against the contract's parser (the one the
    /// manager uses) for the instance its topic names.
    pub async fn next(&mut self) -> AppliedReport {
        let (topic, payload) = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a report within 10 s")
            .expect("subscriber running");
        let (service, instance) = parse_applied_topic(&topic).expect("a report topic");
        AppliedReport::parse(&payload, &service, &instance).unwrap_or_else(|e| {
            panic!(
                "invalid report on {topic}: {e}: {}",
                String::from_utf8_lossy(&payload)
            )
        })
    }
}

pub fn assert_report(
    report: &AppliedReport,
    instance: &str,
    status: AppliedStatus,
    version: Option<u64>,
    reason: Option<&str>,
    rejected_version: Option<u64>,
) {
    assert_eq!(report.instance_id.as_str(), instance, "{report:?}");
    assert_eq!(report.status, status, "{report:?}");
    let version = version.map(|v| Version::try_from(v).unwrap());
    assert_eq!(report.version, version, "{report:?}");
    assert_eq!(report.reason.as_deref(), reason, "{report:?}");
    let rejected_version = rejected_version.map(|v| Version::try_from(v).unwrap());
    assert_eq!(report.rejected_version, rejected_version, "{report:?}");
    assert_eq!(report.client.name, "config-manager-client");
    assert_eq!(report.service, service());
    assert_eq!(
        report.config_epoch.as_ref().map(|e| e.as_str()),
        version.map(|_| EPOCH)
    );
}

/// An envelope for `version` whose signature was made by the trusted key over
/// another config: checksum right, signature wrong (`bad_signature`).
pub fn forged(key: &SigningKey, version: u64) -> Vec<u8> {
    let mut real: Value = serde_json::from_slice(&signed(key, version, 11)).unwrap();
    let other: Value = serde_json::from_slice(&signed(key, version, 12)).unwrap();
    real["signature"] = other["signature"].clone();
    serde_json::to_vec(&real).unwrap()
}
