//! The client against real components: a mosquitto broker started here on a
//! free loopback port, a minimal HTTP server standing in for the manager's REST
//! endpoint, and real on-disk copies of verified envelopes.

// Helpers outside #[test] fns are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use config_manager_client::{
    AppliedReport, AppliedStatus, Client, ClientError, ClientSettings, ConfigSource, InstanceId,
    MqttEndpoint, Snapshot,
};
use config_manager_core::applied::parse_applied_topic;
use config_manager_core::crypto::signing::{SigningKey, TrustedKeys};
use config_manager_core::domain::{Epoch, ServiceName};
use config_manager_core::envelope::{config_topic, Envelope};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const EPOCH: &str = "5b0c3f0e-8a51-4c8e-9a43-7f6d2b1e0a01";

#[derive(Debug, Deserialize, PartialEq, Clone)]
struct Tts {
    volume_percent: u8,
    tts_provider: String,
}

fn defaults() -> Tts {
    Tts {
        volume_percent: 100,
        tts_provider: "piper".into(),
    }
}

/// A mosquitto child process on a free port, killed on drop.
struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Self {
        Self::start_on(free_port())
    }

    /// A broker on `port` (a restart: no persistence, so nothing retained).
    fn start_on(port: u16) -> Self {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} not found: install the broker with `apt-get install -y mosquitto`"
        );
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"),
        )
        .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not accept on port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn endpoint(&self) -> MqttEndpoint {
        MqttEndpoint::parse(&format!("mqtt://127.0.0.1:{}", self.port)).unwrap()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Publishes one retained QoS 1 message and waits for the broker's PUBACK.
async fn publish(port: u16, topic: &str, payload: Vec<u8>) {
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

fn rand_suffix() -> u32 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

fn service() -> ServiceName {
    ServiceName::parse("tts-worker").unwrap()
}

fn config(volume: u64) -> Map<String, Value> {
    json!({"volume_percent": volume, "tts_provider": "piper"})
        .as_object()
        .unwrap()
        .clone()
}

fn signed(key: &SigningKey, version: u64, volume: u64) -> Vec<u8> {
    Envelope::sign(
        &service(),
        version,
        &Epoch(EPOCH.into()),
        config(volume),
        key,
    )
    .unwrap()
    .to_json_bytes()
    .unwrap()
}

fn settings(key: &SigningKey) -> ClientSettings {
    ClientSettings::new(service(), TrustedKeys::from_keys([key.verifying_key()]))
}

/// Waits until the snapshot satisfies `pred`.
async fn wait_for(
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
async fn wait_rejected(client: &Client<Tts>, n: u64) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_retained_config_then_live_updates_and_refuses_forgeries() {
    let broker = Broker::start();
    let key = SigningKey::generate();
    let topic = config_topic(&service());
    // Published before the client exists: only the retained copy reaches it.
    publish(broker.port, &topic, signed(&key, 3, 30)).await;

    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let mut s = settings(&key);
    s.mqtt = Some(broker.endpoint());
    let client = Client::<Tts>::builder(s)
        .defaults(defaults())
        .on_change(move |c: &Tts| {
            seen.fetch_add(1, Ordering::SeqCst);
            println!("applied volume {}", c.volume_percent);
            Ok::<(), String>(())
        })
        .start()
        .await
        .unwrap();
    assert_eq!(client.snapshot().source, ConfigSource::Defaults);
    let mut rx = client.subscribe();

    let snap = wait_for(&mut rx, |s| s.source == ConfigSource::Mqtt).await;
    assert_eq!(snap.config.volume_percent, 30);
    assert_eq!(snap.applied.as_ref().unwrap().version, 3);
    assert!(client.is_mqtt_connected());

    publish(broker.port, &topic, signed(&key, 4, 40)).await;
    let snap = wait_for(&mut rx, |s| {
        s.applied.as_ref().is_some_and(|a| a.version == 4)
    })
    .await;
    assert_eq!(snap.config.volume_percent, 40);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Forged, replayed and garbage messages: each rejected, config unchanged.
    let intruder = SigningKey::generate();
    publish(broker.port, &topic, signed(&intruder, 5, 99)).await;
    publish(broker.port, &topic, signed(&key, 3, 30)).await;
    publish(broker.port, &topic, b"{not json".to_vec()).await;
    wait_rejected(&client, 3).await;
    let counters = client.counters();
    assert_eq!(counters.rejected("unknown_key"), 1);
    assert_eq!(counters.rejected("replay"), 1);
    assert_eq!(counters.rejected("not_json"), 1);
    assert_eq!(counters.applied, 2);
    assert_eq!(client.current().volume_percent, 40);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    client.shutdown().await;
}

/// A one-route HTTP server that answers like the manager's
/// `GET /api/config/services/tts-worker`, checking the token.
async fn fake_manager(body: Value, token: &'static str) -> SocketAddr {
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
async fn rest_startup_settings(broker: &Broker, key: &SigningKey) -> ClientSettings {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_startup_sets_the_reference_version() {
    let broker = Broker::start();
    let key = SigningKey::generate();
    let s = rest_startup_settings(&broker, &key).await;
    let manager_url = s.manager_url.clone();
    let client = Client::<Tts>::builder(s).start().await.unwrap();
    let snap = client.snapshot();
    assert_eq!(snap.source, ConfigSource::Rest);
    assert_eq!(snap.config.volume_percent, 55);
    assert_eq!(snap.applied.as_ref().unwrap().version, 5);

    // The retained v4 is older than what REST gave: rejected as a replay.
    wait_rejected(&client, 1).await;
    assert_eq!(client.counters().rejected("replay"), 1);
    assert_eq!(client.current().volume_percent, 55);

    let mut rx = client.subscribe();
    publish(broker.port, &config_topic(&service()), signed(&key, 6, 66)).await;
    let snap = wait_for(&mut rx, |s| s.source == ConfigSource::Mqtt).await;
    assert_eq!(snap.config.volume_percent, 66);
    client.shutdown().await;

    // A wrong token is a failed REST load; without LKG or defaults, no start.
    let mut s = settings(&key);
    s.manager_url = manager_url;
    s.api_token = Some(config_manager_client::ApiToken::new("wrong"));
    let err = Client::<Tts>::builder(s).start().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::NoInitialConfig(m) if m.contains("401")),
        "{err}"
    );
}

/// Writes the client's own copy: version 8 of tts-worker signed by `key`.
fn write_copy(path: &Path, key: &SigningKey, volume: u64) {
    config_manager_client::copy::write(path, &signed(key, 8, volume)).unwrap();
}

#[tokio::test]
async fn on_disk_copy_when_the_manager_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tts-worker.json");
    let key = SigningKey::generate();
    write_copy(&path, &key, 77);
    let down = format!("http://127.0.0.1:{}", free_port());

    let mut s = settings(&key);
    s.manager_url = Some(down.clone());
    s.rest_timeout = Duration::from_secs(2);
    s.cache_path = Some(path.clone());
    let client = Client::<Tts>::builder(s.clone())
        .defaults(defaults())
        .start()
        .await
        .unwrap();
    let snap = client.snapshot();
    assert_eq!(snap.source, ConfigSource::OnDiskCopy);
    assert_eq!(snap.config.volume_percent, 77);
    assert_eq!(snap.applied.as_ref().unwrap().version, 8);

    // Signed by a key the client does not trust: not used.
    let stranger = SigningKey::generate();
    let mut other = s.clone();
    other.trusted_keys = TrustedKeys::from_keys([stranger.verifying_key()]);
    let client = Client::<Tts>::builder(other)
        .defaults(defaults())
        .start()
        .await
        .unwrap();
    assert_eq!(client.snapshot().source, ConfigSource::Defaults);

    // One changed byte: the copy is not used, defaults are.
    let text = std::fs::read_to_string(&path).unwrap().replace("77", "78");
    std::fs::write(&path, text).unwrap();
    let client = Client::<Tts>::builder(s.clone())
        .defaults(defaults())
        .start()
        .await
        .unwrap();
    assert_eq!(client.snapshot().source, ConfigSource::Defaults);
    assert_eq!(*client.current(), defaults());

    // Without defaults the start fails and says why for each source.
    let err = Client::<Tts>::builder(s).start().await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("REST") && message.contains("copy") && message.contains("checksum"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_follows_applied_updates_and_serves_the_next_start() {
    let broker = Broker::start();
    let key = SigningKey::generate();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copies/tts-worker.json");
    let mut s = settings(&key);
    s.mqtt = Some(MqttEndpoint::parse(&format!("mqtt://127.0.0.1:{}", broker.port)).unwrap());
    s.cache_path = Some(path.clone());
    let client = Client::<Tts>::builder(s.clone())
        .defaults(defaults())
        .start()
        .await
        .unwrap();
    let mut rx = client.subscribe();
    publish(broker.port, &config_topic(&service()), signed(&key, 3, 42)).await;
    wait_for(&mut rx, |s| s.config.volume_percent == 42).await;
    // A forged one is not written.
    publish(broker.port, &config_topic(&service()), forged(&key, 4)).await;
    wait_rejected(&client, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "no copy written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    client.shutdown().await;

    // Next start, no manager and no broker message yet: the copy.
    let mut again = settings(&key);
    again.cache_path = Some(path);
    let client = Client::<Tts>::builder(again).start().await.unwrap();
    let snap = client.snapshot();
    assert_eq!(snap.source, ConfigSource::OnDiskCopy);
    assert_eq!(snap.config.volume_percent, 42);
    assert_eq!(snap.applied.unwrap().version, 3);
}

// ---- Applied-state reports (contracts/README.md, "Applied state") ----

const REPORTS: &str = "system/config/tts-worker/applied/+";

/// A subscriber on every applied-state topic of tts-worker, started before
/// the clients so it sees each report in order (and the retained ones).
struct ReportWatcher {
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

impl ReportWatcher {
    async fn start(port: u16) -> Self {
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
    async fn next(&mut self) -> AppliedReport {
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

fn assert_report(
    report: &AppliedReport,
    instance: &str,
    status: AppliedStatus,
    version: Option<u64>,
    reason: Option<&str>,
    rejected_version: Option<u64>,
) {
    assert_eq!(report.instance_id.as_str(), instance, "{report:?}");
    assert_eq!(report.status, status, "{report:?}");
    assert_eq!(report.version, version, "{report:?}");
    assert_eq!(report.reason.as_deref(), reason, "{report:?}");
    assert_eq!(report.rejected_version, rejected_version, "{report:?}");
    assert_eq!(report.client.name, "config-manager-client");
    assert_eq!(report.service, service());
    assert_eq!(
        report.config_epoch.as_ref().map(|e| e.0.as_str()),
        version.map(|_| EPOCH)
    );
}

/// An envelope for `version` whose signature was made by the trusted key over
/// another config: checksum right, signature wrong (`bad_signature`).
fn forged(key: &SigningKey, version: u64) -> Vec<u8> {
    let mut real: Value = serde_json::from_slice(&signed(key, version, 11)).unwrap();
    let other: Value = serde_json::from_slice(&signed(key, version, 12)).unwrap();
    real["signature"] = other["signature"].clone();
    serde_json::to_vec(&real).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_applied_and_each_rejection_then_offline_on_shutdown() {
    let broker = Broker::start();
    let mut watcher = ReportWatcher::start(broker.port).await;
    let key = SigningKey::generate();
    let topic = config_topic(&service());
    publish(broker.port, &topic, signed(&key, 3, 30)).await;

    let mut s = settings(&key);
    s.mqtt = Some(broker.endpoint());
    s.instance_id = Some(InstanceId::parse("it-1").unwrap());
    let client = Client::<Tts>::builder(s)
        .defaults(defaults())
        .on_change(|c: &Tts| {
            if c.volume_percent == 13 {
                Err("unlucky volume".to_owned())
            } else {
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    // Started on defaults: nothing to report until the retained v3 applies.
    assert_eq!(client.last_report(), None);
    let report = watcher.next().await;
    assert_report(&report, "it-1", AppliedStatus::Applied, Some(3), None, None);
    assert!(report.applied_at.is_some());

    publish(broker.port, &topic, signed(&key, 4, 40)).await;
    let applied_v4 = watcher.next().await;
    assert_report(
        &applied_v4,
        "it-1",
        AppliedStatus::Applied,
        Some(4),
        None,
        None,
    );
    assert_eq!(client.last_report(), Some(applied_v4.clone()));

    // Each refusal: rejected with the client's label, still running v4.
    let cases: [(Vec<u8>, &str, Option<u64>); 6] = [
        (forged(&key, 5), "bad_signature", Some(5)),
        (
            signed(&SigningKey::generate(), 5, 50),
            "unknown_key",
            Some(5),
        ),
        (signed(&key, 3, 30), "replay", Some(3)),
        // volume_percent is a u8 in the service's model.
        (signed(&key, 6, 300), "invalid_config", Some(6)),
        (signed(&key, 7, 13), "callback_failed", Some(7)),
        (b"{not json".to_vec(), "not_json", None),
    ];
    for (payload, label, rejected_version) in cases {
        publish(broker.port, &topic, payload).await;
        let report = watcher.next().await;
        assert_report(
            &report,
            "it-1",
            AppliedStatus::Rejected,
            Some(4),
            Some(label),
            rejected_version,
        );
        assert_eq!(report.applied_at, applied_v4.applied_at, "kept v4's time");
    }
    assert_eq!(client.current().volume_percent, 40);

    publish(broker.port, &topic, signed(&key, 8, 80)).await;
    let report = watcher.next().await;
    assert_report(&report, "it-1", AppliedStatus::Applied, Some(8), None, None);
    let counters = client.counters();
    assert_eq!(
        (counters.reports_published, counters.report_failures),
        (9, 0)
    );

    client.shutdown().await;
    let offline = watcher.next().await;
    assert_report(
        &offline,
        "it-1",
        AppliedStatus::Offline,
        Some(8),
        None,
        None,
    );
    assert_eq!(offline.applied_at, report.applied_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_start_up_is_reported_and_reporting_can_be_turned_off() {
    let broker = Broker::start();
    let mut watcher = ReportWatcher::start(broker.port).await;
    let key = SigningKey::generate();
    let s = rest_startup_settings(&broker, &key).await;

    // Reporting off: the client works (the retained v4 is refused as a
    // replay) but publishes nothing, and sets no will.
    let mut off = s.clone();
    off.report_applied = false;
    off.instance_id = Some(InstanceId::parse("silent").unwrap());
    let client = Client::<Tts>::builder(off).start().await.unwrap();
    wait_rejected(&client, 1).await;
    assert_eq!(
        client.last_report().map(|r| r.status),
        Some(AppliedStatus::Rejected)
    );
    assert_eq!(client.counters().reports_published, 0);
    client.shutdown().await;

    // The default instance id: host name + service.
    let client = Client::<Tts>::builder(s.clone()).start().await.unwrap();
    let default_id =
        InstanceId::default_for(&config_manager_client::settings::host_name(), &service());
    let first = watcher.next().await;
    assert_report(
        &first,
        default_id.as_str(),
        AppliedStatus::Applied,
        Some(5),
        None,
        None,
    );
    let second = watcher.next().await;
    assert_report(
        &second,
        default_id.as_str(),
        AppliedStatus::Rejected,
        Some(5),
        Some("replay"),
        Some(4),
    );
    client.shutdown().await;
    let offline = watcher.next().await;
    assert_report(
        &offline,
        default_id.as_str(),
        AppliedStatus::Offline,
        Some(5),
        None,
        None,
    );
}

/// The child half of `killed_instance_goes_offline_through_its_last_will`:
/// a client configured from the environment that runs until killed.
#[tokio::test]
#[ignore = "run as a child process by killed_instance_goes_offline_through_its_last_will"]
async fn child_client_process() {
    if std::env::var_os("CHILD_CLIENT").is_none() {
        return;
    }
    let settings = ClientSettings::from_env().unwrap();
    let client = Client::<Tts>::builder(settings)
        .defaults(defaults())
        .start()
        .await
        .unwrap();
    std::future::pending::<()>().await;
    drop(client);
}

/// A client process (`child_client_process`) that starts from its on-disk copy
/// (version 8) with the given instance id; killed on drop.
struct ChildClient {
    child: Child,
    _dir: tempfile::TempDir,
}

impl ChildClient {
    fn spawn(port: u16, key: &SigningKey, instance: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("tts-worker.json");
        write_copy(&copy, key, 77);
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_client_process",
                "--ignored",
                "--nocapture",
            ])
            .env("CHILD_CLIENT", "1")
            .env("SERVICE_NAME", "tts-worker")
            .env(
                "CONFIG_SIGNATURE_PUBLIC_KEY",
                key.verifying_key().to_spki_pem().unwrap(),
            )
            .env("MQTT_URL", format!("mqtt://127.0.0.1:{port}"))
            .env("CONFIG_CACHE_PATH", &copy)
            .env("CONFIG_INSTANCE_ID", instance)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, _dir: dir }
    }

    /// SIGKILL: no chance to say goodbye.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ChildClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_goes_offline_through_its_last_will() {
    let broker = Broker::start();
    let mut watcher = ReportWatcher::start(broker.port).await;
    let key = SigningKey::generate();
    let topic = config_topic(&service());
    let mut child = ChildClient::spawn(broker.port, &key, "doomed-1");
    let started = watcher.next().await;
    assert_report(
        &started,
        "doomed-1",
        AppliedStatus::Applied,
        Some(8),
        None,
        None,
    );
    publish(broker.port, &topic, signed(&key, 9, 90)).await;
    let report = watcher.next().await;
    assert_report(
        &report,
        "doomed-1",
        AppliedStatus::Applied,
        Some(9),
        None,
        None,
    );

    // The broker publishes the will. MQTT fixes a will at CONNECT, so it
    // names what ran then (version 8).
    child.kill();
    let will = watcher.next().await;
    assert_report(
        &will,
        "doomed-1",
        AppliedStatus::Offline,
        Some(8),
        None,
        None,
    );
    assert_eq!(will.applied_at, started.applied_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_report_is_back_and_the_will_is_current() {
    let broker = Broker::start();
    let port = broker.port;
    let mut watcher = ReportWatcher::start(port).await;
    let key = SigningKey::generate();
    let mut child = ChildClient::spawn(port, &key, "survivor-1");
    let started = watcher.next().await;
    assert_report(
        &started,
        "survivor-1",
        AppliedStatus::Applied,
        Some(8),
        None,
        None,
    );
    publish(port, &config_topic(&service()), signed(&key, 9, 90)).await;
    let v9 = watcher.next().await;
    assert_report(
        &v9,
        "survivor-1",
        AppliedStatus::Applied,
        Some(9),
        None,
        None,
    );

    // A restart without persistence forgets every retained report; the
    // client reconnects and says again what it runs.
    drop(broker);
    let _broker = Broker::start_on(port);
    let mut watcher = ReportWatcher::start(port).await;
    let again = watcher.next().await;
    assert_eq!(
        again, v9,
        "the same report, republished after the reconnect"
    );

    // Its new CONNECT carried a will naming version 9.
    child.kill();
    let will = watcher.next().await;
    assert_report(
        &will,
        "survivor-1",
        AppliedStatus::Offline,
        Some(9),
        None,
        None,
    );
    assert_eq!(will.applied_at, v9.applied_at);
}
