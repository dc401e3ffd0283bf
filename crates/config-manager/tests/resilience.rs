//! Fault injection against the running binary: the database is overwritten,
//! truncated, deleted or locked, the LKG file tampered with, the schemas
//! changed. Each test asserts what clients see: reads keep answering, writes
//! get 503, health is right, and recovery or a rebuild loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    break_database, garble, garble_database, wait_fallback, Server, READ_TOKEN, REBUILD_TOKEN,
    WRITE_TOKEN,
};
use faults::*;
use serde_json::{json, Value};

/// A reader hammering GET until stopped; counts answers that were not 200.
struct ReaderLoop {
    failures: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl ReaderLoop {
    fn start(s: &Arc<Server>) -> Self {
        let failures = Arc::new(AtomicUsize::new(0));
        let total = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (f, t, st, s) = (failures.clone(), total.clone(), stop.clone(), s.clone());
        let task = tokio::spawn(async move {
            while !st.load(Ordering::Relaxed) {
                let (status, body) = s.get(TTS, Some(READ_TOKEN)).await;
                t.fetch_add(1, Ordering::Relaxed);
                if status != 200 || body["config"]["volume_percent"].is_null() {
                    f.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed read: {status} {body}");
                }
            }
        });
        Self {
            failures,
            total,
            stop,
            task,
        }
    }

    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (
            self.failures.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test]
async fn garbage_database_falls_back_without_failed_reads_then_rebuild_keeps_data() {
    let s = Arc::new(Server::start_with(fast_monitor(&[])).await);
    set_volume(&s, 42).await;
    let (_, before) = s.get("/health", None).await;
    let old_epoch = before["config_epoch"].as_str().unwrap().to_owned();
    assert_eq!(before["lkg_cache_valid"], true);

    let readers = ReaderLoop::start(&s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fault_at = Instant::now();
    let h = break_database(&s).await;
    let switch_time = fault_at.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (failed, total) = readers.finish().await;
    assert_eq!(
        failed, 0,
        "{failed} of {total} reads failed during the switch"
    );
    eprintln!("fault -> fallback in {switch_time:?}; {total} reads, 0 failed");
    assert_eq!(h["database_status"], "corrupted");
    assert_eq!(h["ok"], false);
    assert!(h["err"].as_str().is_some());
    assert_fallback_serves_and_refuses(&s, 42).await;

    // Rebuild by token: new epoch, data kept, broken file kept.
    let (status, body) = s.rebuild(WRITE_TOKEN, REBUILD_TOKEN).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["tombstone"]["seed_source"], "lkg");
    assert_eq!(body["tombstone"]["old_epoch"], old_epoch.as_str());
    let h = wait_health(&s, "normal", |h| h["operational_mode"] == "normal").await;
    assert_ne!(h["config_epoch"], old_epoch.as_str());
    assert_eq!(h["database_status"], "healthy");
    let (_, got) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(got["config"]["volume_percent"], 42);
    assert_eq!(got["config_epoch"], h["config_epoch"]);
    assert!(
        !broken_files(&s.path("data")).is_empty(),
        "broken file moved aside, not deleted"
    );
    let tombstone = body["tombstone"]["tombstone_path"].as_str().unwrap();
    let t: Value = serde_json::from_slice(&std::fs::read(tombstone).unwrap()).unwrap();
    assert_eq!(t["new_epoch"], h["config_epoch"]);
    assert_eq!(t["reason"], "manual rebuild requested over the API");
    // Writes work again, and history/audit record the rebuild.
    set_volume(&s, 43).await;
    let (_, audit) = s.get("/audit?action=database.", Some(WRITE_TOKEN)).await;
    assert_eq!(audit["entries"][0]["action"], "database.rebuild");
    let (_, hist) = s.get("/history?service=tts-worker", Some(READ_TOKEN)).await;
    assert!(hist["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["change_type"] == "rebuild"));
}

#[tokio::test]
async fn truncated_database_with_auto_rebuild_recovers_by_itself() {
    let s = Server::start_with(fast_monitor(&[("ALLOW_AUTO_REBUILD", "1")])).await;
    set_volume(&s, 17).await;
    let (_, before) = s.get("/health", None).await;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(s.db_path())
        .unwrap();
    f.set_len(1000).unwrap();
    drop(f);
    garble(&s.db_path().with_extension("db-wal"));
    let h = wait_health(&s, "rebuilt", |h| {
        h["operational_mode"] == "normal" && h["config_epoch"] != before["config_epoch"]
    })
    .await;
    assert_eq!(h["database_status"], "healthy");
    let (_, got) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(got["config"]["volume_percent"], 17);
    assert!(!broken_files(&s.path("data")).is_empty());
    assert!(s.log().contains("database rebuilt"));
}

#[tokio::test]
async fn deleted_database_enters_fallback_and_comes_back_when_restored() {
    let s = Server::start_with(fast_monitor(&[])).await;
    set_volume(&s, 64).await;
    // Keep a consistent copy to "restore" later (as an operator would).
    let backup = s.path("backup.db");
    let copy = rusqlite_backup(&s.db_path(), &backup);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", s.db_path().display()));
    }
    let h = wait_fallback(&s).await;
    assert_eq!(h["database_status"], "missing");
    assert_fallback_serves_and_refuses(&s, 64).await;
    // A write during the outage never reaches the deleted file.
    assert!(copy);
    std::fs::copy(&backup, s.db_path()).unwrap();
    let h = wait_health(&s, "recovered", |h| h["operational_mode"] == "normal").await;
    assert_eq!(h["database_status"], "healthy");
    let (status, got) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(got["config"]["volume_percent"], 64);
    set_volume(&s, 65).await;
}

/// Copies a live SQLite database consistently with the sqlite3 CLI-free
/// approach: python's sqlite3 backup API.
fn rusqlite_backup(from: &Path, to: &Path) -> bool {
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3;s=sqlite3.connect('{}');d=sqlite3.connect('{}');s.backup(d);d.execute('PRAGMA journal_mode=WAL');d.close()",
            from.display(),
            to.display()
        ))
        .status()
        .unwrap();
    status.success()
}

#[tokio::test]
async fn database_locked_by_another_process_then_released() {
    let s = Server::start_with(fast_monitor(&[])).await;
    set_volume(&s, 21).await;
    let locker = lock_database(&s.db_path());
    let h = wait_health(&s, "locked", |h| h["database_status"] == "locked").await;
    assert_eq!(h["operational_mode"], "read-only-fallback");
    assert_fallback_serves_and_refuses(&s, 21).await;
    release_lock(locker);
    wait_health(&s, "unlocked", |h| h["operational_mode"] == "normal").await;
    assert_eq!(set_volume(&s, 22).await, s.version("tts-worker").await);
}

#[tokio::test]
async fn tampered_lkg_is_reported_never_used_and_rewritten() {
    let s = Server::start_with(fast_monitor(&[])).await;
    set_volume(&s, 30).await;
    let lkg_path = s.path("data/lkg.json");
    let original = std::fs::read(&lkg_path).unwrap();
    // One byte added inside a value of the snapshot (the write of 30 is in
    // the journal beside it).
    let text = String::from_utf8(original.clone()).unwrap();
    let tampered = text.replacen("\"volume_percent\": ", "\"volume_percent\": 1", 1);
    assert_ne!(tampered, text);
    std::fs::write(&lkg_path, tampered).unwrap();
    wait_log(&s, "last-known-good cache failed verification").await;
    // Rewritten from the database: valid again, with the true value.
    wait_health(&s, "lkg valid", |h| h["lkg_cache_valid"] == true).await;
    let rewritten = String::from_utf8(std::fs::read(&lkg_path).unwrap()).unwrap();
    assert!(rewritten.contains("\"volume_percent\": 30"));

    // Signature removed, then the database breaks: the cache is not used.
    let v: Value = serde_json::from_str(&rewritten).unwrap();
    let mut unsigned = v.clone();
    unsigned.as_object_mut().unwrap().remove("hmac");
    std::fs::write(&lkg_path, serde_json::to_vec(&unsigned).unwrap()).unwrap();
    let h = break_database(&s).await;
    assert_eq!(h["lkg_cache_valid"], false, "{h}");
    let (status, body) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(status, 503, "an unverified cache is never served: {body}");
}

/// The LKG journal beside the test server's cache file.
fn journal(s: &Server) -> std::path::PathBuf {
    config_manager_core::lkg::journal_path(&s.path("data/lkg.json"))
}

#[tokio::test]
async fn tampered_lkg_journal_is_never_served() {
    let mut s = Server::start_with(fast_monitor(&[])).await;
    set_volume(&s, 30).await;
    // The write was journaled (the snapshot was written at start-up).
    let text = std::fs::read_to_string(journal(&s)).unwrap();
    let tampered = text.replacen("\"volume_percent\":30", "\"volume_percent\":31", 1);
    assert_ne!(tampered, text, "the write is in the journal: {text}");
    std::fs::write(journal(&s), &tampered).unwrap();
    wait_log(&s, "last-known-good cache failed verification").await;
    // Rewritten from the database: a new snapshot with the true value.
    wait_health(&s, "lkg valid", |h| h["lkg_cache_valid"] == true).await;
    let snapshot = std::fs::read_to_string(s.path("data/lkg.json")).unwrap();
    assert!(snapshot.contains("\"volume_percent\": 30"), "{snapshot}");

    // Journaled again, altered again while the service is down, and the
    // database broken: at start-up the altered entry is never served, and
    // nothing else of that cache either. (Stopped first, so the monitor
    // cannot repair the journal from the database before it breaks.)
    set_volume(&s, 40).await;
    s.kill9();
    let text = std::fs::read_to_string(journal(&s)).unwrap();
    let tampered = text.replacen("\"volume_percent\":40", "\"volume_percent\":41", 1);
    assert_ne!(tampered, text);
    std::fs::write(journal(&s), &tampered).unwrap();
    garble_database(&s);
    s.spawn().await;
    let h = wait_fallback(&s).await;
    assert_eq!(h["lkg_cache_valid"], false, "{h}");
    assert!(
        h["err"]
            .as_str()
            .unwrap_or_default()
            .contains("journal record"),
        "the reason names the journal: {h}"
    );
    let (status, body) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(status, 503, "an altered journal is never served: {body}");
    assert_eq!(
        body["type"], "urn:config-manager:problem:no-fallback",
        "{body}"
    );
}

#[tokio::test]
async fn crash_between_commit_and_lkg_append_is_repaired_at_start_up() {
    let mut s =
        Server::start_with(fast_monitor(&[("CONFIG_TEST_FAILPOINT", "after-commit")])).await;
    let version = s.version("tts-worker").await;
    // The process dies after the commit, before the journal append and the
    // answer: the client sees no 200.
    let answer = s
        .http
        .patch(s.url(TTS))
        .header("X-API-Token", WRITE_TOKEN)
        .json(&json!({"config": {"volume_percent": 33}, "version": version}))
        .send()
        .await;
    assert!(
        answer.as_ref().map_or(true, |r| r.status() != 200),
        "no acknowledgement from a killed process: {answer:?}"
    );
    let status = s.child.as_mut().unwrap().wait().unwrap();
    assert!(!status.success(), "killed at the failpoint: {status}");
    s.child = None;
    let journaled = std::fs::read_to_string(journal(&s)).unwrap_or_default();
    assert!(
        !journaled.contains("\"volume_percent\":33"),
        "died before the append: {journaled}"
    );

    // Restart without the failpoint: the cache is repaired from the database
    // before anything is served from it.
    s.extra_env.retain(|(k, _)| k != "CONFIG_TEST_FAILPOINT");
    s.spawn().await;
    let (status, body) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["config"]["volume_percent"], 33, "the commit survived");
    break_database(&s).await;
    let (status, body) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["config"]["volume_percent"], 33,
        "the cache holds the committed change: {body}"
    );
}

#[tokio::test]
async fn lkg_from_another_epoch_is_not_used() {
    // Two services sharing the LKG key: the second one's valid cache is put in
    // place of the first one's.
    let a = Server::start_with(fast_monitor(&[])).await;
    let b = Server::start_with(fast_monitor(&[])).await;
    set_volume(&a, 11).await;
    set_volume(&b, 99).await;
    // Swap the file in atomically, so the monitor never reads a half-copied file.
    std::fs::copy(b.path("data/lkg.json"), a.path("data/lkg.tmp")).unwrap();
    std::fs::rename(a.path("data/lkg.tmp"), a.path("data/lkg.json")).unwrap();
    wait_log(&a, "from epoch").await;
    wait_health(&a, "lkg valid", |h| h["lkg_cache_valid"] == true).await;
    break_database(&a).await;
    let (status, body) = a.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["config"]["volume_percent"], 11,
        "served its own data, not the foreign cache"
    );
}

fn write_schema(dir: &Path, max: u64, extra_field: bool) {
    let mut props = json!({
        "speed": {"type": "integer", "default": 5, "minimum": 0, "maximum": max, "description": "Speed", "x-complexity": "simple"},
    });
    if extra_field {
        props["mode"] = json!({"type": "string", "default": "calm", "enum": ["calm", "fast"], "description": "Mode", "x-complexity": "advanced"});
    }
    let schema = json!({"type": "object", "additionalProperties": false, "properties": props});
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("arm-controller.json"),
        serde_json::to_vec(&schema).unwrap(),
    )
    .unwrap();
}

/// A service restarted over a schema directory holding arm-controller's
/// schema (maximum 100, no extra field); the service and the directory.
async fn start_with_arm_schema() -> (Server, PathBuf) {
    let mut s = Server::start_with(vec![]).await;
    let dir = s.path("schemas");
    write_schema(&dir, 100, false);
    s.extra_env
        .push(("CONFIG_SCHEMA_DIR".into(), dir.display().to_string()));
    s.terminate();
    s.spawn().await;
    (s, dir)
}

#[tokio::test]
async fn compatible_schema_change_is_applied_and_recorded() {
    let (mut s, dir) = start_with_arm_schema().await;
    let (_, c) = s.get("/services/arm-controller", Some(READ_TOKEN)).await;
    assert_eq!(c["config"]["speed"], 5);
    let v = c["version"].as_i64().unwrap();
    s.patch_ok("arm-controller", json!({"speed": 80}), v).await;
    // New field with a default: applied, recorded in history.
    write_schema(&dir, 100, true);
    s.terminate();
    s.spawn().await;
    let (_, h) = s.get("/health", None).await;
    assert_eq!(h["operational_mode"], "normal", "{h}");
    let (_, c) = s.get("/services/arm-controller", Some(READ_TOKEN)).await;
    assert_eq!(c["config"]["speed"], 80);
    assert_eq!(c["config"]["mode"], "calm");
    let (_, hist) = s
        .get("/history?service=arm-controller&key=mode", Some(READ_TOKEN))
        .await;
    assert_eq!(hist["entries"][0]["change_type"], "schema");
}

#[tokio::test]
async fn incompatible_schema_change_is_read_only_with_a_report_or_reset_with_auto_rebuild() {
    let (mut s, dir) = start_with_arm_schema().await;
    s.patch_latest("arm-controller", json!({"speed": 80})).await;
    // Tighten the maximum below the stored value.
    write_schema(&dir, 50, false);
    s.terminate();
    s.spawn().await;
    let (status, h) = s.get("/health", None).await;
    assert_eq!(status, 503);
    assert_eq!(h["database_status"], "schema-mismatch");
    assert_eq!(h["operational_mode"], "read-only-fallback");
    let err = h["err"].as_str().unwrap();
    assert!(
        err.contains("arm-controller") && err.contains("/speed"),
        "{err}"
    );
    let (status, c) = s.get("/services/arm-controller", Some(READ_TOKEN)).await;
    assert_eq!(status, 200, "reads keep working");
    assert_eq!(c["config"]["speed"], 80);
    s.assert_writes_refused().await;
    // With ALLOW_AUTO_REBUILD=1 only the failing field is reset.
    s.extra_env.push(("ALLOW_AUTO_REBUILD".into(), "1".into()));
    s.terminate();
    s.spawn().await;
    let (status, h) = s.get("/health", None).await;
    assert_eq!(status, 200, "{h}");
    let (_, c) = s.get("/services/arm-controller", Some(READ_TOKEN)).await;
    assert_eq!(c["config"]["speed"], 5);
    let (_, hist) = s
        .get(
            "/history?service=arm-controller&key=speed",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(hist["entries"][0]["change_type"], "schema");
    assert_eq!(hist["entries"][0]["old_value"], 80);
}

/// Overwrites the first 8 KiB of `path` in place (the same file, as a stray
/// `dd` would), leaving the rest as it was.
fn overwrite_first_8k(path: &Path) {
    use std::os::unix::fs::FileExt;
    let junk: Vec<u8> = (0..8192usize).map(|i| (i * 7919 % 251) as u8).collect();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&junk, 0).unwrap();
    f.sync_all().unwrap();
}

/// Issue 23, finding 5: overwriting only the first 8 KiB of the database and
/// of its WAL under a running, writing service. SQLite reads page 1 from the
/// WAL and trusts its in-memory WAL index, so before the fix nothing noticed
/// for over 60 s and saves were still acknowledged. Now the headers are
/// checked before every commit and on every monitor tick: the service goes
/// read-only, every save acknowledged before that is served after a restart
/// (from the last-known-good journal, the database no longer opens) and
/// kept by a rebuild, and no refused save shows up anywhere.
#[tokio::test]
async fn overwriting_the_start_of_database_and_wal_is_caught_and_no_acknowledged_save_is_lost() {
    let mut s = Server::start_with(fast_monitor(&[])).await;
    const KEYS: [&str; 3] = ["piper_voice", "eleven_voice_id", "eleven_model_id"];
    let mut acked: std::collections::BTreeMap<&str, String> = Default::default();
    let mut version = s.version("tts-worker").await;
    let mut corrupted = false;
    let mut refused = 0;
    for i in 0..2000 {
        if i == 40 {
            overwrite_first_8k(&s.db_path());
            overwrite_first_8k(&s.db_path().with_extension("db-wal"));
            corrupted = true;
        }
        let key = KEYS[i % KEYS.len()];
        let value = format!("save-{i}");
        let (status, body) = s
            .patch_config(
                "tts-worker",
                &json!({"config": {key: value}, "version": version}),
            )
            .await;
        if status == 200 {
            version = body["version"].as_i64().unwrap();
            acked.insert(key, value);
        } else {
            assert!(corrupted, "a save failed before the fault: {status} {body}");
            refused += 1;
            let (_, h) = s.get("/health", None).await;
            if h["operational_mode"] == "read-only-fallback" {
                break;
            }
        }
    }
    assert!(refused > 0, "every save was acknowledged after the fault");
    let h = wait_fallback(&s).await;
    assert_eq!(h["database_status"], "corrupted", "{h}");
    // The log line is written by the logger's own thread: on a loaded host
    // it can land after health already shows the switch.
    wait_log(&s, "damaged").await;

    // A graceful restart (the shutdown checkpoint must not copy the damaged
    // WAL into the database), then the last-known-good copy is served.
    assert_eq!(s.terminate(), Some(0), "{}", s.log());
    s.spawn().await;
    assert_started_in_fallback(&s, "corrupted").await;
    let check = |got: &Value, from: &str| {
        for (key, value) in &acked {
            assert_eq!(got["config"][key], json!(value), "{key} from {from}");
        }
        assert_eq!(
            got["version"], version,
            "{from}: the last acknowledged version"
        );
    };
    let (_, got) = s.get(TTS, Some(READ_TOKEN)).await;
    check(&got, "the cache after a restart");

    // A rebuild seeds a new database from that copy: nothing acknowledged lost.
    let (status, body) = s.rebuild(WRITE_TOKEN, REBUILD_TOKEN).await;
    assert_eq!(status, 202, "{body}");
    wait_health(&s, "normal", |h| h["operational_mode"] == "normal").await;
    let (_, got) = s.get(TTS, Some(READ_TOKEN)).await;
    for (key, value) in &acked {
        assert_eq!(got["config"][key], json!(value), "{key} after the rebuild");
    }
}

/// The same damage with no write coming: the monitor's tick finds it (at
/// the default interval, 1 s; the bound below is only the test's patience).
#[tokio::test]
async fn the_monitor_finds_an_overwritten_database_header_without_any_write() {
    let s = Server::start_with(vec![("LKG_HMAC_KEY_BASE64".to_owned(), LKG_KEY.to_owned())]).await;
    for v in 1..=20 {
        set_volume(&s, v).await;
    }
    overwrite_first_8k(&s.db_path());
    overwrite_first_8k(&s.db_path().with_extension("db-wal"));
    let h = wait_fallback(&s).await;
    assert_eq!(h["database_status"], "corrupted", "{h}");
    assert_fallback_serves_and_refuses(&s, 20).await;
}
