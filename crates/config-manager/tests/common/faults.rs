//! Helpers of the fault tests (`resilience.rs`, `resilience_startup.rs`,
//! `resilience_faults.rs`): the service under a wrapper (a lower file limit,
//! another user), health polling, fallback assertions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{Server, READ_TOKEN, REBUILD_TOKEN};

pub const TTS: &str = "/services/tts-worker";
pub const LKG_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Monitor every 100 ms, a fixed LKG key, a rebuild token, plus `extra`.
pub fn fast_monitor(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("CONFIG_MONITOR_INTERVAL_MS".to_owned(), "100".to_owned()),
        ("REBUILD_TOKEN".to_owned(), REBUILD_TOKEN.to_owned()),
        ("LKG_HMAC_KEY_BASE64".to_owned(), LKG_KEY.to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// Spawns the service through `wrapper` (e.g. `["prlimit", "--nofile=64:64",
/// "--"]`) with the harness's environment, and waits until health answers.
pub async fn spawn_wrapped(s: &mut Server, wrapper: &[&str]) {
    let inner = s.command();
    let mut cmd = Command::new(wrapper[0]);
    cmd.args(&wrapper[1..])
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(s.dir.path())
        .env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.log_path())
        .unwrap();
    cmd.stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    s.child = Some(cmd.spawn().expect("spawn wrapped config-manager"));
    s.wait_healthy().await;
}

/// Polls health until `pred` holds (at most 30 s).
pub async fn wait_health(s: &Server, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    crate::common::wait_health_within(s, what, 30, pred).await
}

/// Polls the log until it contains `needle`.
pub async fn wait_log(s: &Server, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "log never showed {needle:?}:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets tts-worker's volume (which must succeed); returns the new version.
pub async fn set_volume(s: &Server, volume: i64) -> i64 {
    s.patch_latest("tts-worker", json!({"volume_percent": volume}))
        .await
}

/// Removes the database and its `-wal`/`-shm`.
pub fn remove_database(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// Names of the files a rebuild moved aside in `dir`.
pub fn broken_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".broken-"))
        .collect()
}

/// `(device, inode)` of a file.
pub fn identity(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.dev(), m.ino())
}

/// GET tts-worker with the read token; asserts 200.
async fn read_tts(s: &Server) -> reqwest::Response {
    let resp = s
        .http
        .get(s.url(TTS))
        .header("X-API-Token", READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

/// Reads come from the cache with the last acknowledged value; writes get
/// 503 `read-only`.
pub async fn assert_fallback_serves_and_refuses(s: &Server, volume: i64) {
    let resp = read_tts(s).await;
    assert_eq!(resp.headers()["x-config-source"], "lkg-cache");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["config"]["volume_percent"], volume,
        "the last acknowledged write is served"
    );
    s.assert_writes_refused().await;
}

/// Health is 503 in read-only fallback with `database_status`; returns it.
pub async fn assert_started_in_fallback(s: &Server, database_status: &str) -> Value {
    let (code, h) = s.get("/health", None).await;
    assert_eq!(code, 503, "{h}");
    assert_eq!(h["operational_mode"], "read-only-fallback", "{h}");
    assert_eq!(h["database_status"], database_status, "{h}");
    assert_eq!(h["ok"], false);
    assert!(h["err"].is_string(), "{h}");
    h
}

/// The process is still running.
pub fn assert_alive(s: &mut Server) {
    let child = s.child.as_mut().expect("started");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the service exited:\n{}",
        s.log()
    );
}

/// The stored `volume_percent` of tts-worker, read from the database (the
/// source header says so), not from the cache.
pub async fn volume_from_database(s: &Server) -> Value {
    let resp = read_tts(s).await;
    assert_eq!(resp.headers()["x-config-source"], "database");
    let body: Value = resp.json().await.unwrap();
    body["config"]["volume_percent"].clone()
}

/// Another process (Python's sqlite3, as an operator's tool would) holding
/// an exclusive lock on `db` until [`release_lock`]; returns once it holds it.
pub fn lock_database(db: &Path) -> std::process::Child {
    let mut locker = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3,sys\nc=sqlite3.connect('{}',isolation_level=None,timeout=10)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked',flush=True)\nsys.stdin.readline()\nc.execute('ROLLBACK')",
            db.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(locker.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    locker
}

/// Ends the lock taken by [`lock_database`].
pub fn release_lock(mut locker: std::process::Child) {
    drop(locker.stdin.take());
    let _ = locker.wait();
}
