//! What the latency examples (`e2e_latency`, `applied_latency`) share:
//! percentile rows, free ports, waiting for the manager, its public key.
//! Included with `#[path]`; not an example of its own (no `main`).

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use config_manager_core::crypto::signing::VerifyingKey;
use serde_json::Value;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
