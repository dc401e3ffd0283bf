//! The agent's process-test harness: the real `config-manager` binary, a
//! mosquitto broker on a free port, and the real `config-agent` binary
//! running a small Python program that reads its settings from the
//! environment at import, as the TARS services do. (A trimmed copy of
//! `crates/config-manager/tests/common/`: only what these tests use.)
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const WRITE_TOKEN: &str = "writer-token-0123456789";
pub const READ_TOKEN: &str = "reader-token-0123456789";
pub const DEMO_TOKEN: &str = "demo-scoped-token-0123456789";
pub const SERVICE: &str = "agent-demo";
pub const SECRET: &str = "sekret-value-0123456789";
pub const WAIT: Duration = Duration::from_secs(30);

/// The test service's schema: annotated and plain fields, every type.
pub const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "volume": {"type": "integer", "minimum": 0, "maximum": 200, "default": 100, "x-service-env": ["DEMO_VOLUME", "DEMO_VOLUME_ALIAS"]},
    "enabled": {"type": "boolean", "default": true, "x-service-env": ["DEMO_ENABLED"]},
    "ratio": {"type": "number", "default": 0.5},
    "words": {"type": "array", "items": {"type": "string"}, "default": ["thank you", "hi"]},
    "log_level": {"type": "string", "default": "INFO"},
    "api_key": {"type": "string", "default": "", "writeOnly": true, "x-secret": true, "x-service-env": ["DEMO_API_KEY"]}
  }
}"#;

/// The program the agent runs: reads its settings at import and appends
/// them as one JSON line per start to `$OUT`; exits 3 at once when the
/// volume is 13 (a crashing value); on SIGTERM exits with `$EXIT_ON_TERM`.
pub const PROGRAM: &str = r#"
import json, os, signal, sys, time
NAMES = ["DEMO_VOLUME", "DEMO_VOLUME_ALIAS", "DEMO_ENABLED", "RATIO", "WORDS", "LOG_LEVEL", "DEMO_API_KEY"]
SEEN = {n: os.environ.get(n) for n in NAMES}
SEEN["pid"] = os.getpid()
with open(os.environ["OUT"], "a") as f:
    f.write(json.dumps(SEEN) + "\n")
if SEEN["DEMO_VOLUME"] == "13":
    sys.exit(3)
VOLUME = int(SEEN["DEMO_VOLUME"] or "100")
ENABLED = bool(int(SEEN["DEMO_ENABLED"] or "1"))
RATIO = float(SEEN["RATIO"] or "0.5")
def term(_sig, _frame):
    sys.exit(int(os.environ.get("EXIT_ON_TERM", "0")))
signal.signal(signal.SIGTERM, term)
while True:
    time.sleep(3600)
"#;

/// The config-manager binary of this workspace's target directory
/// (`cargo test --workspace` builds it; built here when missing), or
/// `$CONFIG_MANAGER_BIN`.
fn manager_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CONFIG_MANAGER_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/config-manager
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = dir.join("config-manager");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "config-manager",
                "--bin",
                "config-manager",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "building config-manager failed");
    }
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

pub use config_manager_testkit::broker::{free_port, Broker};

/// The config-manager on a free port with the test service registered.
pub struct Manager {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Manager {
    pub async fn start(broker: &Broker) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("manager.log")).unwrap();
        let child = Command::new(manager_binary())
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CONFIG_ENV_FILE", dir.path().join(".env"))
            .env("CONFIG_DB_PATH", dir.path().join("data/config.db"))
            .env("CONFIG_LKG_CACHE_PATH", dir.path().join("data/lkg.json"))
            .env("CONFIG_MANAGER_PORT", port.to_string())
            .env("MQTT_URL", broker.url())
            .env(
                "CONFIG_API_TOKENS",
                format!(
                    "writer={WRITE_TOKEN}:config.write,reader={READ_TOKEN}:config.read,demo={DEMO_TOKEN}:config.read:{SERVICE}"
                ),
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let m = Self {
            dir,
            port,
            child: Some(child),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + WAIT;
        while m.http.get(m.url("/health")).send().await.is_err() {
            assert!(Instant::now() < deadline, "manager never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, body) = m
            .request("PUT", &format!("/services/{SERVICE}/schema"), SCHEMA.into())
            .await;
        assert!(status == 200 || status == 201, "{status} {body}");
        m
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/config{path}", self.base())
    }

    /// The manager's public key (PEM), from the `.env` it wrote.
    pub fn public_key(&self) -> String {
        dotenvy::from_path_iter(self.dir.path().join(".env"))
            .unwrap()
            .filter_map(Result::ok)
            .find(|(k, _)| k == "CONFIG_SIGNATURE_PUBLIC_KEY")
            .map(|(_, v)| v)
            .expect("CONFIG_SIGNATURE_PUBLIC_KEY in .env")
    }

    pub async fn request(&self, method: &str, path: &str, body: String) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = self
            .http
            .request(method, self.url(path))
            .header("X-API-Token", WRITE_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The current version of the test service.
    pub async fn version(&self) -> i64 {
        let (_, body) = self
            .request("GET", &format!("/services/{SERVICE}"), String::new())
            .await;
        body["version"].as_i64().unwrap()
    }

    /// PATCHes `changes` onto the current version; returns the new version.
    pub async fn patch(&self, changes: Value) -> i64 {
        let version = self.version().await;
        let (status, body) = self
            .request(
                "PATCH",
                &format!("/services/{SERVICE}"),
                serde_json::json!({"version": version, "config": changes}).to_string(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["version"].as_i64().unwrap()
    }

    pub async fn instances(&self) -> Value {
        self.request(
            "GET",
            &format!("/services/{SERVICE}/instances"),
            String::new(),
        )
        .await
        .1
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `config-agent run` process with its own cache directory and the
/// program's output file.
pub struct AgentProc {
    pub child: Child,
    pub dir: PathBuf,
    pub out: PathBuf,
    pub log: PathBuf,
}

/// What the agent needs to reach the manager and the broker.
pub struct AgentEnv<'a> {
    pub manager_url: Option<String>,
    pub mqtt_url: Option<String>,
    pub public_key: String,
    pub cache_dir: &'a Path,
    pub extra: Vec<(&'a str, String)>,
    pub args: Vec<&'a str>,
}

impl AgentProc {
    pub fn spawn(env: AgentEnv<'_>, work: &Path, name: &str) -> Self {
        let out = work.join(format!("{name}.out"));
        let log = work.join(format!("{name}.log"));
        let program = work.join("program.py");
        std::fs::write(&program, PROGRAM).unwrap();
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_config-agent"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", work)
            .env("CONFIG_SIGNATURE_PUBLIC_KEY", env.public_key)
            .env("CONFIG_CACHE_DIR", env.cache_dir)
            .env("CONFIG_API_TOKEN", DEMO_TOKEN)
            .env("CONFIG_INSTANCE_ID", name)
            .env("OUT", &out)
            .env("CONFIG_AGENT_LOG", "debug");
        if let Some(url) = env.manager_url {
            cmd.env("CONFIG_MANAGER_URL", url);
        }
        if let Some(url) = env.mqtt_url {
            cmd.env("MQTT_URL", url);
        }
        for (k, v) in env.extra {
            cmd.env(k, v);
        }
        cmd.args(["run", "--service", SERVICE])
            .args(env.args)
            .args(["--", "python3"])
            .arg(&program)
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file));
        let child = cmd.spawn().unwrap();
        Self {
            child,
            dir: work.to_path_buf(),
            out,
            log,
        }
    }

    /// Every start of the program so far, oldest first.
    pub fn starts(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the program has started `n` times; returns the starts.
    pub async fn wait_starts(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let starts = self.starts();
            if starts.len() >= n {
                return starts;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} starts: {starts:?}\n{}",
                starts.len(),
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the log contains `text`.
    pub async fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the agent to exit; its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The program runs in a process group of its own: end it too.
        for start in self.starts() {
            if let Some(pid) = start["pid"].as_u64() {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}
