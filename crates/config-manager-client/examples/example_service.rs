//! A TARS-style service that takes its configuration from the config-manager
//! and prints every change it applies.
//!
//! ```sh
//! SERVICE_NAME=tts-worker \
//! CONFIG_MANAGER_URL=http://127.0.0.1:8081 \
//! CONFIG_API_TOKEN=... \
//! MQTT_URL=mqtt://127.0.0.1:1883 \
//! CONFIG_SIGNATURE_PUBLIC_KEY=/path/to/signing.pub.pem \
//! cargo run -p config-manager-client --example example_service
//! ```
//!
//! Optional: `CONFIG_LKG_CACHE_PATH` + `LKG_HMAC_KEY_BASE64` for the
//! last-known-good fallback, `MQTT_CA_FILE` for `mqtts://`, `CONFIG_INSTANCE_ID`
//! (default: host name + service) for its applied-state reports,
//! `CONFIG_REPORT_APPLIED=0` to publish none, `RUST_LOG` for log detail. It
//! prints each applied-state report it publishes, runs until Ctrl-C (or
//! SIGTERM), then prints its counters and publishes `offline`.

use std::convert::Infallible;

use config_manager_client::{Client, ClientSettings};
use serde_json::{Map, Value};

/// Any service's config works as a JSON object; a real service would use its
/// own `#[derive(Deserialize)]` struct here and get type checking for free.
type ServiceConfig = Map<String, Value>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let settings = ClientSettings::from_env()?;
    let service = settings.service.clone();
    let client = Client::<ServiceConfig>::builder(settings)
        .defaults(ServiceConfig::new())
        .on_change(|config: &ServiceConfig| {
            // Printed before the change takes effect; returning Err would keep
            // the previous config.
            println!("change: {}", Value::Object(config.clone()));
            Ok::<(), Infallible>(())
        })
        .start()
        .await?;

    let start = client.snapshot();
    println!(
        "{service}: started from {:?} (version {}): {}",
        start.source,
        start
            .applied
            .as_ref()
            .map_or_else(|| "none".to_owned(), |a| a.version.to_string()),
        Value::Object((*start.config).clone())
    );

    let mut reports = client.subscribe_reports();
    let mut reports_open = true;
    if let Some(report) = client.last_report() {
        println!("{service}: report {}", report.to_json());
    }
    let mut updates = client.subscribe();
    loop {
        tokio::select! {
            // Closed at once without MQTT: nothing is published then.
            changed = reports.changed(), if reports_open => {
                if changed.is_err() {
                    reports_open = false;
                    continue;
                }
                if let Some(report) = reports.borrow_and_update().clone() {
                    println!("{service}: report {}", report.to_json());
                }
            }
            changed = updates.changed() => {
                if changed.is_err() {
                    break;
                }
                let snap = updates.borrow_and_update().clone();
                if let Some(applied) = &snap.applied {
                    println!("{service}: applied version {} of epoch {}", applied.version, applied.epoch);
                }
            }
            _ = shutdown_signal() => break,
        }
    }
    println!("{service}: counters {:?}", client.counters());
    client.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
