//! The client against real components (the harness is in `common`): a
//! late joiner gets the retained config and live updates and refuses forgeries,
//! start-up from the REST endpoint, and the on-disk copy when the manager is
//! down and after applied updates.

// Helpers outside #[test] fns are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use config_manager_client::{Client, ClientError, ConfigSource, MqttEndpoint};
use config_manager_core::crypto::signing::{SigningKey, TrustedKeys};
use config_manager_core::envelope::config_topic;

use common::*;

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
    assert_eq!(snap.applied.as_ref().unwrap().version.get(), 3);
    assert!(client.is_mqtt_connected());

    publish(broker.port, &topic, signed(&key, 4, 40)).await;
    let snap = wait_for(&mut rx, |s| {
        s.applied.as_ref().is_some_and(|a| a.version.get() == 4)
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
    assert_eq!(snap.applied.as_ref().unwrap().version.get(), 5);

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
    let client = start_with_defaults(s.clone()).await;
    let snap = client.snapshot();
    assert_eq!(snap.source, ConfigSource::OnDiskCopy);
    assert_eq!(snap.config.volume_percent, 77);
    assert_eq!(snap.applied.as_ref().unwrap().version.get(), 8);

    // Signed by a key the client does not trust: not used.
    let stranger = SigningKey::generate();
    let mut other = s.clone();
    other.trusted_keys = TrustedKeys::from_keys([stranger.verifying_key()]);
    let client = start_with_defaults(other).await;
    assert_eq!(client.snapshot().source, ConfigSource::Defaults);

    // One changed byte: the copy is not used, defaults are.
    let text = std::fs::read_to_string(&path).unwrap().replace("77", "78");
    std::fs::write(&path, text).unwrap();
    let client = start_with_defaults(s.clone()).await;
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
    let client = start_with_defaults(s.clone()).await;
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
    assert_eq!(snap.applied.unwrap().version.get(), 3);
}

// ---- Applied-state reports (contracts/README.md, "Applied state") ----
