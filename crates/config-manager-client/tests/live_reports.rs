//! The client's applied-state reports against a real broker (the harness is
//! in `common`): applied, each rejection and offline on shutdown, start-up
//! from REST, the last will of a killed instance, and a broker restart.

// Helpers outside #[test] fns are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};

use config_manager_client::{AppliedStatus, Client, ClientSettings, InstanceId};
use config_manager_core::crypto::signing::SigningKey;
use config_manager_core::envelope::config_topic;

use common::*;

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
