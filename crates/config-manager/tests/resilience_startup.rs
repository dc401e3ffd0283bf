//! Start-up with a database that is corrupted, missing, locked, of another
//! epoch, or without any usable cache (issue 17), and `restore --new-epoch`.
//! The real binary runs on real files; each test asserts what clients see
//! (health, reads with their source, refused writes, MQTT) and that the
//! service comes back by itself once a valid database is in place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/mqtt.rs"]
mod mqtt_support;

use std::path::PathBuf;
use std::time::Duration;

use common::{cli, garble, restore_record, text, Server, READ_TOKEN};
use config_manager_core::envelope::freshness::{
    check_freshness, AppliedState, Decision, FreshnessPolicy,
};
use config_manager_core::envelope::{Envelope, DEFAULT_MAX_ENVELOPE_BYTES};
use config_manager_core::health::HEALTH_TOPIC;
use faults::*;
use mqtt_support::{env_public_key, trusted, Broker, Subscriber};
use serde_json::Value;

/// Starts a service, writes `volume`, stops it cleanly (the WAL is
/// checkpointed into the file) and keeps a copy of the database; returns
/// the server, the copy and the epoch.
async fn prepared(extra: &[(&str, &str)], volume: i64) -> (Server, PathBuf, String) {
    let mut s = Server::start_with(fast_monitor(extra)).await;
    set_volume(&s, volume).await;
    let (_, h) = s.get("/health", None).await;
    let epoch = h["config_epoch"].as_str().unwrap().to_owned();
    assert_eq!(s.terminate(), Some(0));
    let copy = s.path("good-copy.db");
    std::fs::copy(s.db_path(), &copy).unwrap();
    (s, copy, epoch)
}

#[tokio::test]
async fn corrupted_database_at_startup_serves_the_cache_then_recovers_when_restored() {
    let (mut s, copy, epoch) = prepared(&[], 41).await;
    remove_database(&s.db_path());
    std::fs::write(s.db_path(), vec![0x5a; 8192]).unwrap();

    s.spawn().await;
    let h = assert_started_in_fallback(&s, "corrupted").await;
    assert_eq!(h["lkg_cache_valid"], true, "{h}");
    assert_eq!(h["config_epoch"], epoch.as_str(), "{h}");
    assert!(h["err"].as_str().unwrap().contains("integrity"), "{h}");
    assert_fallback_serves_and_refuses(&s, 41).await;
    // Stays up, and does not touch the broken file (no rebuild asked for).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_alive(&mut s);
    assert!(broken_files(&s.path("data")).is_empty());

    // The operator puts a good copy back: the monitor adopts it.
    std::fs::copy(&copy, s.db_path()).unwrap();
    let h = wait_health(&s, "recovered", |h| h["operational_mode"] == "normal").await;
    assert_eq!(h["database_status"], "healthy");
    assert_eq!(h["config_epoch"], epoch.as_str());
    assert_eq!(volume_from_database(&s).await, 41);
    set_volume(&s, 42).await;
    assert_eq!(volume_from_database(&s).await, 42);
}

#[tokio::test]
async fn missing_database_at_startup_is_not_recreated_empty_and_recovers_when_restored() {
    let (mut s, copy, epoch) = prepared(&[], 43).await;
    remove_database(&s.db_path());

    s.spawn().await;
    let h = assert_started_in_fallback(&s, "missing").await;
    assert!(h["err"].as_str().unwrap().contains("restore"), "{h}");
    assert_fallback_serves_and_refuses(&s, 43).await;
    assert!(
        !s.db_path().exists(),
        "no empty database was created in place of the missing one"
    );

    std::fs::copy(&copy, s.db_path()).unwrap();
    let h = wait_health(&s, "recovered", |h| h["operational_mode"] == "normal").await;
    assert_eq!(h["config_epoch"], epoch.as_str());
    assert_eq!(volume_from_database(&s).await, 43);
}

#[tokio::test]
async fn locked_database_at_startup_falls_back_then_recovers_when_released() {
    let (mut s, _copy, _epoch) = prepared(&[], 44).await;
    let locker = lock_database(&s.db_path());
    s.spawn().await;
    let h = assert_started_in_fallback(&s, "locked").await;
    assert!(h["err"].as_str().unwrap().contains("locked"), "{h}");
    assert_fallback_serves_and_refuses(&s, 44).await;
    release_lock(locker);
    wait_health(&s, "unlocked", |h| h["operational_mode"] == "normal").await;
    assert_eq!(volume_from_database(&s).await, 44);
    set_volume(&s, 45).await;
}

#[tokio::test]
async fn without_a_valid_cache_startup_answers_no_fallback_and_stays_up() {
    let (mut s, copy, epoch) = prepared(&[], 46).await;
    garble(&s.db_path());
    garble(&s.path("data/lkg.json"));
    let bad_cache = std::fs::read(s.path("data/lkg.json")).unwrap();

    s.spawn().await;
    let h = assert_started_in_fallback(&s, "corrupted").await;
    assert_eq!(h["lkg_cache_valid"], false);
    let err = h["err"].as_str().unwrap();
    assert!(err.contains("no usable cache"), "{err}");
    assert!(
        !err.contains(s.dir.path().to_str().unwrap()),
        "no paths in err: {err}"
    );
    // Reads: 503 no-fallback, never defaults as if they were stored.
    let (status, body) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["type"].as_str().unwrap().ends_with("no-fallback"),
        "{body}"
    );
    s.assert_writes_refused().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_alive(&mut s);
    assert_eq!(
        std::fs::read(s.path("data/lkg.json")).unwrap(),
        bad_cache,
        "nothing rewrote the cache without a database"
    );

    // The garbled cache was not "refreshed" from nothing; a good database
    // brings everything back, cache included.
    std::fs::copy(&copy, s.db_path()).unwrap();
    let h = wait_health(&s, "recovered", |h| h["operational_mode"] == "normal").await;
    assert_eq!(h["config_epoch"], epoch.as_str());
    assert_eq!(volume_from_database(&s).await, 46);
    wait_health(&s, "cache rewritten", |h| h["lkg_cache_valid"] == true).await;
}

#[tokio::test]
async fn database_of_another_epoch_at_startup_is_not_adopted_until_restored() {
    // Two devices; b's database is copied over a's (a swapped file).
    let (mut a, _a_copy, a_epoch) = prepared(&[("ALLOW_AUTO_REBUILD", "1")], 47).await;
    let (_b, b_copy, b_epoch) = prepared(&[], 48).await;
    assert_ne!(a_epoch, b_epoch);
    remove_database(&a.db_path());
    std::fs::copy(&b_copy, a.db_path()).unwrap();
    let swapped_identity = identity(&a.db_path());

    a.spawn().await;
    let h = assert_started_in_fallback(&a, "missing").await;
    let err = h["err"].as_str().unwrap();
    assert!(
        err.contains(&b_epoch) && err.contains(&a_epoch) && err.contains("config-manager restore"),
        "{err}"
    );
    assert_eq!(h["config_epoch"], a_epoch.as_str());
    // a's own last acknowledged value is served, from a's cache.
    assert_fallback_serves_and_refuses(&a, 47).await;
    // Even with ALLOW_AUTO_REBUILD=1 the healthy (foreign) file stays put.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(broken_files(&a.path("data")).is_empty());
    assert_eq!(identity(&a.db_path()), swapped_identity);
    let (_, h) = a.get("/health", None).await;
    assert_eq!(h["operational_mode"], "read-only-fallback");

    // Accepting it is a restore (the way the err names).
    assert_eq!(a.terminate(), Some(0));
    let staged = a.path("swapped.db");
    std::fs::copy(a.db_path(), &staged).unwrap();
    let out = cli(
        &a,
        &["restore", "--snapshot", staged.to_str().unwrap(), "--force"],
    );
    assert!(out.status.success(), "{}", text(&out));
    a.spawn().await;
    let h = wait_health(&a, "normal", |h| h["operational_mode"] == "normal").await;
    assert_eq!(h["config_epoch"], b_epoch.as_str());
    assert_eq!(volume_from_database(&a).await, 48);
}

#[tokio::test]
async fn corrupted_database_at_startup_with_auto_rebuild_is_rebuilt_from_the_cache() {
    let (mut s, _copy, epoch) = prepared(&[("ALLOW_AUTO_REBUILD", "1")], 49).await;
    remove_database(&s.db_path());
    std::fs::write(s.db_path(), vec![0x5a; 8192]).unwrap();
    s.spawn().await;
    let h = wait_health(&s, "rebuilt", |h| h["operational_mode"] == "normal").await;
    assert_ne!(
        h["config_epoch"],
        epoch.as_str(),
        "a rebuild starts a new epoch"
    );
    assert_eq!(volume_from_database(&s).await, 49, "seeded from the cache");
    assert_eq!(broken_files(&s.path("data")).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_fallback_publishes_every_config_from_the_cache_and_health() {
    let first = Broker::start();
    let (mut s, _copy, epoch) = prepared(&[("MQTT_URL", &first.url())], 50).await;
    std::fs::write(s.db_path(), vec![0x5a; 8192]).unwrap();
    // A new broker, so nothing retained from the first run counts.
    let broker = Broker::start();
    for (k, v) in s.extra_env.iter_mut() {
        if k == "MQTT_URL" {
            *v = broker.url();
        }
    }
    let mut configs = Subscriber::connect(broker.port, "system/config/#").await;
    let mut health = Subscriber::connect(broker.port, HEALTH_TOPIC).await;
    s.spawn().await;
    assert_started_in_fallback(&s, "corrupted").await;

    let key = env_public_key(&s.path(".env"));
    // Every service in the cache (as the fallback lists them) is published.
    let (status, list) = s.get("/services", Some(READ_TOKEN)).await;
    assert_eq!(status, 200, "{list}");
    let topics: Vec<String> = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| format!("system/config/{}", n.as_str().unwrap()))
        .collect();
    assert!(topics.len() > 1, "{list}");
    configs
        .latest_until(Duration::from_secs(30), "every service", |latest| {
            topics.iter().all(|t| latest.contains_key(t))
        })
        .await;
    // Published retained: a subscriber arriving now still gets every one.
    let mut late = Subscriber::connect(broker.port, "system/config/#").await;
    let retained = late
        .latest_until(
            Duration::from_secs(30),
            "every service retained",
            |latest| {
                topics
                    .iter()
                    .all(|t| latest.get(t).is_some_and(|m| m.retain))
            },
        )
        .await;
    late.close().await;
    for topic in &topics {
        let envelope =
            Envelope::parse(&retained[topic].payload, DEFAULT_MAX_ENVELOPE_BYTES).unwrap();
        envelope.verify(&trusted(&key)).expect("signed");
        assert_eq!(envelope.config_epoch.as_str(), epoch, "{topic}");
    }
    let msg = &retained["system/config/tts-worker"];
    let envelope = Envelope::parse(&msg.payload, DEFAULT_MAX_ENVELOPE_BYTES).unwrap();
    assert_eq!(envelope.config["volume_percent"], 50);
    let h = health
        .next_matching(Duration::from_secs(30), "fallback health", |m| {
            m.json()["operational_mode"] == "read-only-fallback"
        })
        .await
        .json();
    assert_eq!(h["database_status"], "corrupted");
    assert_eq!(h["status"], "online");
    configs.close().await;
    health.close().await;
}

/// `restore --new-epoch` of an older snapshot: the restored database gets a
/// fresh epoch (the backup's is recorded as the previous one), and a service
/// that applied a newer version of the old epoch accepts the republished,
/// lower version (by the contract's freshness rule) instead of rejecting it
/// as a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_with_new_epoch_gives_the_restored_database_a_fresh_epoch() {
    let broker = Broker::start();
    let mut s = Server::start_with(fast_monitor(&[
        ("BACKUP_SNAPSHOT_DIR", "snaps"),
        ("BACKUP_SNAPSHOT_INTERVAL_SECS", "1"),
        ("MQTT_URL", &broker.url()),
    ]))
    .await;
    let mut sub = Subscriber::connect(broker.port, "system/config/tts-worker").await;
    let v51 = set_volume(&s, 51).await;
    let written = time::OffsetDateTime::now_utc();
    let (_, h) = s.get("/health", None).await;
    let old_epoch = h["config_epoch"].as_str().unwrap().to_owned();
    // A snapshot holding the write (taken after it), then a newer version.
    wait_health(&s, "a snapshot after the write", |h| {
        h["last_backup"].as_str().is_some_and(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .is_ok_and(|t| t >= written)
        })
    })
    .await;
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(s.path("snaps"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "db"))
        .collect();
    snaps.sort();
    let snapshot = s.path("older.db");
    let newest = snaps.pop().unwrap();
    std::fs::copy(&newest, &snapshot).unwrap();
    std::fs::copy(
        format!("{}.epoch.json", newest.display()),
        format!("{}.epoch.json", snapshot.display()),
    )
    .unwrap();
    let v52 = set_volume(&s, 52).await;
    assert!(v52 > v51);
    // What a service has applied: version v52 of the old epoch.
    let applied = sub
        .next_matching(Duration::from_secs(30), "version 52", |m| {
            m.json()["version"].as_i64() == Some(v52)
        })
        .await;
    let applied = Envelope::parse(&applied.payload, DEFAULT_MAX_ENVELOPE_BYTES).unwrap();
    let applied = AppliedState::of(&applied);
    assert_eq!(s.terminate(), Some(0));

    let snapshot = snapshot.to_str().unwrap();
    let out = cli(&s, &["restore", "--snapshot", snapshot, "--new-epoch"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("new epoch"), "{}", text(&out));
    let meta: Value =
        serde_json::from_slice(&std::fs::read(s.path("data/config.db.epoch.json")).unwrap())
            .unwrap();
    let new_epoch = meta["config_epoch"].as_str().unwrap().to_owned();
    assert_ne!(new_epoch, old_epoch);

    s.spawn().await;
    let h = wait_health(&s, "normal", |h| h["operational_mode"] == "normal").await;
    assert_eq!(h["config_epoch"], new_epoch.as_str());
    let (_, got) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(got["config"]["volume_percent"], 51, "{got}");
    assert_eq!(got["version"].as_i64(), Some(v51));
    // The republished, lower version is applied by a running service.
    let msg = sub
        .next_matching(Duration::from_secs(30), "the new epoch", |m| {
            m.json()["config_epoch"] == new_epoch.as_str()
        })
        .await;
    let envelope = Envelope::parse(&msg.payload, DEFAULT_MAX_ENVELOPE_BYTES).unwrap();
    envelope
        .verify(&trusted(&env_public_key(&s.path(".env"))))
        .expect("signed");
    assert!(envelope.version < applied.version);
    assert_eq!(
        check_freshness(
            Some(&applied),
            &envelope,
            time::OffsetDateTime::now_utc(),
            &FreshnessPolicy::default()
        ),
        Decision::Apply
    );
    // The restore record names the backup's epoch as the previous one.
    let record = restore_record(&s);
    assert_eq!(record["backup_epoch"], old_epoch.as_str());
    assert_eq!(record["config_epoch"], new_epoch.as_str());
    // Writes continue in the new epoch.
    set_volume(&s, 53).await;
    sub.close().await;
}
