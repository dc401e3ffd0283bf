//! What the latency examples (`e2e_latency`, `applied_latency`) share:
//! a broker and a manager on free loopback ports, percentile rows, the
//! manager's public key. Included with `#[path]`; not an example of its
//! own (no `main`). Each example uses a part of it.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use config_manager_core::crypto::signing::VerifyingKey;
use config_manager_core::domain::Version;
use serde_json::Value;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
pub const TOKEN: &str = "bench-writer-token-0123456789";

/// A child process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// mosquitto and the manager, running until dropped.
pub struct Stack {
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// `<url>/api/config`
    pub base: String,
    pub mqtt_url: String,
    pub http: reqwest::Client,
    /// The manager's signing key.
    pub key: VerifyingKey,
    _server: Proc,
    _broker: Proc,
}

/// Starts mosquitto (with `set_tcp_nodelay`, as docs/mqtt.md recommends;
/// `BENCH_MOSQUITTO_DEFAULTS=1` leaves mosquitto on its defaults, as on TARS'
/// robots) and the manager `bin` with a writer token, and waits until the
/// manager is connected to the broker.
pub async fn start_stack(bin: &Path) -> Result<Stack, BoxError> {
    if !Path::new(MOSQUITTO).exists() {
        return Err(format!("{MOSQUITTO} not found: apt-get install -y mosquitto").into());
    }
    let dir = tempfile::tempdir()?;
    let mqtt_port = free_port()?;
    let conf = dir.path().join("mosquitto.conf");
    let defaults = std::env::var("BENCH_MOSQUITTO_DEFAULTS").is_ok_and(|v| v == "1");
    let nodelay = if defaults {
        eprintln!("mosquitto on its default settings (no set_tcp_nodelay)");
        ""
    } else {
        "set_tcp_nodelay true\n"
    };
    std::fs::write(
        &conf,
        format!(
            "listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n{nodelay}"
        ),
    )?;
    let broker = Proc(
        Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_port(mqtt_port).await?;
    let http_port = free_port()?;
    let mqtt_url = format!("mqtt://127.0.0.1:{mqtt_port}");
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let server = Proc(
        Command::new(bin)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CONFIG_ENV_FILE", dir.path().join(".env"))
            .env("CONFIG_DB_PATH", dir.path().join("data/config.db"))
            .env("CONFIG_LKG_CACHE_PATH", dir.path().join("data/lkg.json"))
            .env("CONFIG_MANAGER_PORT", http_port.to_string())
            .env("CONFIG_API_TOKENS", format!("bench={TOKEN}:config.write"))
            .env("MQTT_URL", &mqtt_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?,
    );
    let url = format!("http://127.0.0.1:{http_port}");
    let base = format!("{url}/api/config");
    let http = reqwest::Client::new();
    wait_mqtt_connected(&http, &base).await?;
    let key = env_public_key(&dir.path().join(".env"))?;
    Ok(Stack {
        dir,
        url,
        base,
        mqtt_url,
        http,
        key,
        _server: server,
        _broker: broker,
    })
}

pub fn row(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let pct = |q: f64| -> String {
        if samples.is_empty() {
            return "-".into();
        }
        let index = ((samples.len() - 1) as f64 * q).round() as usize;
        format!("{:.2} ms", samples[index].as_secs_f64() * 1000.0)
    };
    println!(
        "| {name} | {} | {} | {} | {} |",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub async fn wait_port(port: u16) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("nothing listens on port {port}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Polls health until the manager answers and is connected to the broker.
pub async fn wait_mqtt_connected(http: &reqwest::Client, base: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = http.get(format!("{base}/health")).send().await {
            if let Ok(health) = resp.json::<Value>().await {
                if health["mqtt_connected"] == true {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            return Err("the manager did not come up connected to the broker".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `CONFIG_SIGNATURE_PUBLIC_KEY` from the server's `.env`.
pub fn env_public_key(env_file: &Path) -> Result<VerifyingKey, BoxError> {
    for item in dotenvy::from_path_iter(env_file)? {
        let (k, v) = item?;
        if k == "CONFIG_SIGNATURE_PUBLIC_KEY" {
            return Ok(VerifyingKey::from_spki_pem(&v)?);
        }
    }
    Err("CONFIG_SIGNATURE_PUBLIC_KEY not in .env".into())
}

/// PATCHes tts-worker's `volume_percent` at `version`; returns the new
/// version and when the reply arrived (before its body was read).
pub async fn patch_volume(
    http: &reqwest::Client,
    base: &str,
    volume: i64,
    version: Version,
) -> Result<(Version, Instant), BoxError> {
    let resp = http
        .patch(format!("{base}/services/tts-worker"))
        .header("X-API-Token", TOKEN)
        .json(&serde_json::json!({"config": {"volume_percent": volume}, "version": version}))
        .send()
        .await?;
    let returned = Instant::now();
    let status = resp.status();
    let body: Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("PATCH failed with {status}: {body}").into());
    }
    let version = serde_json::from_value(body["version"].clone())
        .map_err(|e| format!("no version in the reply: {e}"))?;
    Ok((version, returned))
}
