//! Shared harness of the process tests: a real `config-manager` binary on a
//! free port with its own temporary directory, driven over HTTP.
//!
//! The requests the tests repeat have one helper each, so a test states
//! only what it changes and checks: config writes ([`Server::patch_config`],
//! [`Server::put_config`], and [`Server::patch_ok`] /
//! [`Server::patch_latest`] for a write that must succeed), the read-only
//! probe ([`Server::assert_writes_refused`], [`wait_fallback`],
//! [`break_database`]), rebuild, reveal, metrics, UI login and logout, and
//! the command line ([`cli`], [`text`], [`success_json`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const WRITE_TOKEN: &str = "writer-token-0123456789";
pub const READ_TOKEN: &str = "reader-token-0123456789";
pub const TTS_TOKEN: &str = "tts-scoped-token-0123456789";
/// The rebuild token of the services that enable `POST /rebuild`.
pub const REBUILD_TOKEN: &str = "rebuild-token-0123456789";

pub use config_manager_testkit::broker::free_port;

/// One running service with its directory.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub child: Option<Child>,
    pub extra_env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

impl Server {
    /// Starts a service with the standard test tokens.
    pub async fn start() -> Self {
        Self::start_with(vec![]).await
    }

    /// Starts a service with extra environment variables.
    pub async fn start_with(extra_env: Vec<(String, String)>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            dir,
            port: free_port(),
            child: None,
            extra_env,
            http: reqwest::Client::new(),
        };
        s.spawn().await;
        s
    }

    /// Starts a service that publishes to the broker at `mqtt_url`.
    pub async fn start_with_mqtt(mqtt_url: String) -> Self {
        Self::start_with(vec![("MQTT_URL".into(), mqtt_url)]).await
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn db_path(&self) -> PathBuf {
        self.path("data/config.db")
    }

    pub fn log_path(&self) -> PathBuf {
        self.path("server.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The base command with the test environment (no process env leaks in
    /// beyond PATH and HOME).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_config-manager"));
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CONFIG_ENV_FILE", self.path(".env"))
            .env("CONFIG_DB_PATH", self.db_path())
            .env("CONFIG_LKG_CACHE_PATH", self.path("data/lkg.json"))
            .env("CONFIG_MANAGER_PORT", self.port.to_string())
            .env(
                "CONFIG_API_TOKENS",
                format!(
                    "writer={WRITE_TOKEN}:config.write,reader={READ_TOKEN}:config.read,tts={TTS_TOKEN}:config.read:tts-worker"
                ),
            )
            .env("RUST_LOG", "info");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Spawns the binary and waits until health answers.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = self
            .command()
            .stdout(Stdio::from(log.try_clone().expect("log clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn config-manager");
        self.child = Some(child);
        self.wait_healthy().await;
    }

    /// Polls health until the service answers (not a sleep).
    pub async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("config-manager exited early with {status}:\n{}", self.log());
                }
            }
            if let Ok(r) = self.http.get(self.url("/health")).send().await {
                if r.status().is_success() || r.status().as_u16() == 503 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "service never answered:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/api/config{path}", self.port)
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().ok().and_then(|s| s.code())
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.header("X-API-Token", t);
        }
        into_parts(req.send().await.expect("request")).await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, self.url(path)).json(body);
        if let Some(t) = token {
            req = req.header("X-API-Token", t);
        }
        into_parts(req.send().await.expect("request")).await
    }

    /// A write-token request whose JSON body is sent as written (not
    /// re-serialized), e.g. to keep `60.0` or `-0` as the client typed them.
    pub async fn send_raw(&self, method: &str, path: &str, body: String) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let req = self
            .http
            .request(method, self.url(path))
            .header("X-API-Token", WRITE_TOKEN)
            .header("content-type", "application/json")
            .body(body);
        into_parts(req.send().await.expect("request")).await
    }

    /// `PUT /services/{name}/schema` with a raw JSON text and the write token.
    pub async fn put_schema(&self, name: &str, schema: &str) -> (u16, Value) {
        self.send_raw(
            "PUT",
            &format!("/services/{name}/schema"),
            schema.to_owned(),
        )
        .await
    }

    /// `POST path` with the write token and a JSON `body`.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send("POST", path, Some(WRITE_TOKEN), body).await
    }

    /// `PATCH /services/{service}` with the write token and `body` (a
    /// `{"config": …, "version": …}` document, with or without a reason).
    pub async fn patch_config(&self, service: &str, body: &Value) -> (u16, Value) {
        self.send(
            "PATCH",
            &format!("/services/{service}"),
            Some(WRITE_TOKEN),
            body,
        )
        .await
    }

    /// `PUT /services/{service}` with the write token and `body`.
    pub async fn put_config(&self, service: &str, body: &Value) -> (u16, Value) {
        self.send(
            "PUT",
            &format!("/services/{service}"),
            Some(WRITE_TOKEN),
            body,
        )
        .await
    }

    /// PATCHes `config` over `version` of `service`, which must succeed;
    /// returns the new version.
    pub async fn patch_ok(&self, service: &str, config: Value, version: i64) -> i64 {
        let (status, body) = self
            .patch_config(service, &json!({"config": config, "version": version}))
            .await;
        assert_eq!(status, 200, "PATCH {service} at version {version}: {body}");
        body["version"].as_i64().expect("version")
    }

    /// PATCHes `config` over the current version of `service` (read first),
    /// which must succeed; returns the new version.
    pub async fn patch_latest(&self, service: &str, config: Value) -> i64 {
        let version = self.version(service).await;
        self.patch_ok(service, config, version).await
    }

    /// A write is refused with 503 `read-only` (the service is not in normal
    /// mode; reads may still be served).
    pub async fn assert_writes_refused(&self) {
        let (status, body) = self
            .patch_config(
                "tts-worker",
                &json!({"config": {"volume_percent": 1}, "version": 1}),
            )
            .await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("read-only")),
            "{body}"
        );
    }

    /// `POST /rebuild` as the holder of `token`, with `rebuild_token` in the
    /// body.
    pub async fn rebuild(&self, token: &str, rebuild_token: &str) -> (u16, Value) {
        self.send(
            "POST",
            "/rebuild",
            Some(token),
            &json!({ "token": rebuild_token }),
        )
        .await
    }

    /// Reveals secret `key` of `service` with the write token, giving
    /// `reason`.
    pub async fn reveal(&self, service: &str, key: &str, reason: &str) -> (u16, Value) {
        self.send(
            "POST",
            &format!("/services/{service}/secrets/{key}/reveal"),
            Some(WRITE_TOKEN),
            &json!({ "reason": reason }),
        )
        .await
    }

    /// The body of a GET as the server wrote it (to check number formatting,
    /// which a parsed `Value` hides); the status must be 200.
    pub async fn get_text(&self, path: &str, token: &str) -> String {
        let resp = self
            .http
            .get(self.url(path))
            .header("X-API-Token", token)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.text().await.expect("body")
    }

    /// The config epoch and version of `service`.
    pub async fn desired(&self, service: &str) -> (String, i64) {
        let (status, body) = self
            .get(&format!("/services/{service}"), Some(WRITE_TOKEN))
            .await;
        assert_eq!(status, 200, "{body}");
        (
            body["config_epoch"].as_str().expect("epoch").to_owned(),
            body["version"].as_i64().expect("version"),
        )
    }

    /// Logs in to the web UI with `token`, which must succeed; returns the
    /// session cookie (`name=value`) and its CSRF token.
    pub async fn ui_login(&self, token: &str) -> (String, String) {
        let resp = self
            .http
            .post(format!("http://127.0.0.1:{}/ui/login", self.port))
            .json(&json!({ "token": token }))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), 200);
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_owned();
        let body: Value = resp.json().await.expect("session");
        let csrf = body["csrf_token"].as_str().expect("csrf token").to_owned();
        (cookie, csrf)
    }

    /// `POST /ui/logout` with the session `cookie` and, when given, a CSRF
    /// token.
    pub async fn ui_logout(&self, cookie: &str, csrf: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("http://127.0.0.1:{}/ui/logout", self.port))
            .header("Cookie", cookie);
        if let Some(csrf) = csrf {
            req = req.header("X-CSRF-Token", csrf);
        }
        req.send().await.expect("logout")
    }

    /// The text of `GET /metrics` (200, OpenMetrics).
    pub async fn metrics(&self) -> String {
        let resp = self
            .http
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .send()
            .await
            .expect("metrics");
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"]
            .to_str()
            .expect("content type")
            .to_owned();
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        resp.text().await.expect("metrics text")
    }

    /// Audit entries matching `query` (e.g. `action=session.login&outcome=ok`).
    pub async fn audit_entries(&self, query: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/audit?{query}&limit=1000"), Some(WRITE_TOKEN))
            .await;
        assert_eq!(status, 200, "{body}");
        body["entries"].as_array().cloned().unwrap_or_default()
    }

    /// Current version of a service.
    pub async fn version(&self, service: &str) -> i64 {
        let (_, body) = self
            .get(&format!("/services/{service}"), Some(WRITE_TOKEN))
            .await;
        body["version"].as_i64().expect("version")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls health until `pred` holds, for at most `secs` seconds (the failure
/// shows the last body and the log).
pub async fn wait_health_within(
    s: &Server,
    what: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (_, h) = s.get("/health", None).await;
        if pred(&h) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; health: {h}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls health until the service says read-only fallback (30 s at most);
/// returns that health.
pub async fn wait_fallback(s: &Server) -> Value {
    wait_health_within(s, "read-only fallback", 30, |h| {
        h["operational_mode"] == "read-only-fallback"
    })
    .await
}

/// Overwrites a file with junk of at least one page.
pub fn garble(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let len = meta.len().max(4096) as usize;
        let junk: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(path, junk).expect("garble");
    }
}

/// Overwrites the database and its WAL with junk.
pub fn garble_database(s: &Server) {
    garble(&s.db_path());
    garble(&s.db_path().with_extension("db-wal"));
}

/// Overwrites the database and its WAL with junk and waits until health
/// says read-only fallback; returns that health.
pub async fn break_database(s: &Server) -> Value {
    garble_database(s);
    wait_fallback(s).await
}

/// The value of `series` (its name and labels) in a metrics text.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// The record a restore left beside the database (`*.restore-*.json`).
pub fn restore_record(s: &Server) -> Value {
    let path = std::fs::read_dir(s.path("data"))
        .expect("data directory")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.to_string_lossy().contains(".restore-") && p.extension().is_some_and(|x| x == "json")
        })
        .expect("restore record");
    serde_json::from_slice(&std::fs::read(path).expect("read the record")).expect("JSON record")
}

/// Runs the command line with the service's environment.
pub fn cli(s: &Server, args: &[&str]) -> Output {
    s.command().args(args).output().expect("run config-manager")
}

/// What a command printed, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The command succeeded; returns its standard output as JSON.
pub fn success_json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

pub async fn into_parts(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Reads a `.env` file's raw text.
pub fn read_env_file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
