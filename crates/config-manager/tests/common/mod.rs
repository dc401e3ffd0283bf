//! Shared harness of the process tests: a real `config-manager` binary on a
//! free port with its own temporary directory, driven over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const WRITE_TOKEN: &str = "writer-token-0123456789";
pub const READ_TOKEN: &str = "reader-token-0123456789";
pub const TTS_TOKEN: &str = "tts-scoped-token-0123456789";

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

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
