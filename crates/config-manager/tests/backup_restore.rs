//! Restores from backups against the real components (see `backup.rs`): a
//! point in time between two writes, a burst of large writes restored
//! intact, the epoch metadata check, and local snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/backup.rs"]
mod backup_support;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use backup_support::{
    backup_env, epoch_file, history, put_blobs, read_json, remove_database, set_volume, volume,
    wait_backup_after, wait_health, S3,
};
use common::{cli, restore_record, text, Server, WRITE_TOKEN};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[tokio::test]
async fn restore_to_a_timestamp_between_two_writes_gives_the_earlier_state() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start(tmp.path()).await;
    let mut s = Server::start_with(backup_env(&s3, "pitr/config.db", &[])).await;
    let t = set_volume(&s, 11).await;
    wait_backup_after(&s, t).await;
    let first_history = history(&s).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let between = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = set_volume(&s, 22).await;
    wait_backup_after(&s, t).await;
    assert_eq!(s.terminate(), Some(0));

    let out = cli(&s, &["restore", "--timestamp", &between]);
    assert!(out.status.success(), "{}", text(&out));
    let aside: Vec<_> = std::fs::read_dir(s.path("data"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".pre-restore-"))
        .collect();
    assert!(
        !aside.is_empty(),
        "the replaced database is moved aside, not deleted"
    );
    s.spawn().await;
    assert_eq!(volume(&s).await, 11);
    assert_eq!(
        history(&s).await,
        first_history,
        "the later change is not there"
    );
    assert_eq!(s.terminate(), Some(0));
}

/// Large commits in a burst take the WAL past SQLite's automatic checkpoint
/// threshold; with that checkpoint racing Litestream 0.5.17, restores failed
/// their integrity check (see `store/replication.rs`). The manager leaves
/// checkpoints to Litestream; the restore's integrity check proves it.
#[tokio::test]
async fn a_burst_of_large_writes_restores_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start(tmp.path()).await;
    let s = Server::start_with(backup_env(
        &s3,
        "burst/config.db",
        &[
            ("CONFIG_ALLOW_UNKNOWN_SERVICES", "1"),
            ("CONFIG_MAX_BODY_BYTES", "1048576"),
        ],
    ))
    .await;
    wait_health(&s, "backup healthy", 30, |h| {
        h["litestream_status"] == "healthy"
    })
    .await;
    put_blobs(&s, (0..8).map(|i| format!("burst-{i}")), 'y').await;
    wait_backup_after(&s, OffsetDateTime::now_utc()).await;
    let mut s = s;
    assert_eq!(s.terminate(), Some(0));
    let out_db = tmp.path().join("burst.db");
    let out = cli(&s, &["restore", "--output", out_db.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn restore_refuses_missing_or_mismatched_epoch_metadata_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start(tmp.path()).await;
    let mut s = Server::start_with(backup_env(&s3, "epoch/config.db", &[])).await;
    let t = set_volume(&s, 66).await;
    let h = wait_backup_after(&s, t).await;
    let epoch = h["config_epoch"].as_str().unwrap().to_owned();
    assert_eq!(s.terminate(), Some(0));
    let meta_path = epoch_file(&s);
    let meta = read_json(&meta_path);
    assert_eq!(meta["config_epoch"], epoch.as_str());
    let db_before = std::fs::read(s.db_path()).unwrap();

    // Missing.
    std::fs::remove_file(&meta_path).unwrap();
    let out_db = tmp.path().join("out.db");
    let out = cli(&s, &["restore", "--output", out_db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no epoch metadata"),
        "{}",
        text(&out)
    );
    assert!(!out_db.exists());

    // Another epoch.
    let mut other = meta.clone();
    other["config_epoch"] = json!("00000000-0000-4000-8000-000000000000");
    std::fs::write(&meta_path, serde_json::to_vec(&other).unwrap()).unwrap();
    let out = cli(&s, &["restore"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("epoch mismatch"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(s.db_path()).unwrap(),
        db_before,
        "a refused restore changes nothing"
    );

    // Forced: restored, the risk recorded.
    let out = cli(&s, &["restore", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("restored despite"),
        "{}",
        text(&out)
    );
    let record = restore_record(&s);
    assert_eq!(record["forced"], true);
    assert!(
        record["risks"][0]
            .as_str()
            .unwrap()
            .contains("epoch mismatch"),
        "{record}"
    );
    assert_eq!(
        read_json(&meta_path)["config_epoch"],
        epoch.as_str(),
        "metadata rewritten for the restored database"
    );

    s.spawn().await;
    assert_eq!(volume(&s).await, 66);
    let (_, audit) = s.get("/audit?limit=200", Some(WRITE_TOKEN)).await;
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "database.restore")
        .unwrap_or_else(|| panic!("no restore audit entry: {audit}"));
    assert_eq!(entry["outcome"], "forced");
    assert_eq!(entry["actor"], "cli-restore");
    assert_eq!(s.terminate(), Some(0));
}

#[tokio::test]
async fn local_snapshots_are_checked_rotated_and_restorable() {
    let mut s = Server::start_with(vec![
        ("BACKUP_SNAPSHOT_DIR".into(), "snaps".into()),
        ("BACKUP_SNAPSHOT_INTERVAL_SECS".into(), "1".into()),
        ("BACKUP_SNAPSHOT_KEEP".into(), "3".into()),
    ])
    .await;
    let t = set_volume(&s, 88).await;
    let h = wait_backup_after(&s, t).await;
    assert_eq!(
        h["litestream_status"], "healthy",
        "snapshots report in health without S3"
    );
    // Rotation: after more snapshots, only the newest three are kept, each
    // with its epoch metadata.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let snaps_dir = s.path("snaps");
    let names: Vec<String> = std::fs::read_dir(&snaps_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let dbs: Vec<&String> = names.iter().filter(|n| n.ends_with(".db")).collect();
    assert_eq!(dbs.len(), 3, "{names:?}");
    for db in &dbs {
        assert!(names.contains(&format!("{db}.epoch.json")), "{names:?}");
    }
    assert_eq!(s.terminate(), Some(0));

    remove_database(&s);
    let out = cli(&s, &["restore", "--snapshot", "latest"]);
    assert!(out.status.success(), "{}", text(&out));
    s.spawn().await;
    assert_eq!(volume(&s).await, 88);
    assert_eq!(s.terminate(), Some(0));

    // A snapshot without its metadata is refused.
    let mut newest: Vec<PathBuf> = std::fs::read_dir(&snaps_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "db"))
        .collect();
    newest.sort();
    let newest = newest.pop().unwrap();
    std::fs::remove_file(format!("{}.epoch.json", newest.display())).unwrap();
    let out_db = s.path("from-snapshot.db");
    let out = cli(
        &s,
        &[
            "restore",
            "--snapshot",
            newest.to_str().unwrap(),
            "--output",
            out_db.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no epoch metadata"),
        "{}",
        text(&out)
    );
}
