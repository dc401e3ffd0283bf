//! End-to-end latency of a configuration change: from the REST write to a
//! service, using the client library, applying the verified MQTT update.
//!
//! It starts its own mosquitto (free loopback port) and a `config-manager`
//! (temporary directory, first-run keys), then drives a `Client` for
//! `tts-worker` that trusts the public key from that server's `.env`. Each
//! round PATCHes `volume_percent` and waits until the client's on-change
//! callback has seen the new value; rounds are sequential, so each measures
//! one update through the whole path (HTTP, SQLite commit, LKG write, read,
//! sign, broker, verify, freshness check, callback).
//!
//! ```sh
//! cargo build --profile dist -p config-manager --bin config-manager --example e2e_latency
//! target/dist/examples/e2e_latency --updates 500
//! ```
//!
//! Run it against the benchmark build: the binary is looked up next to the
//! example (`target/dist/config-manager`) unless `--bin` names one.
//! Figures are in `docs/mqtt.md`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use config_manager_client::{ApiToken, Client, ClientSettings, MqttEndpoint};
use config_manager_core::crypto::signing::TrustedKeys;
use config_manager_core::domain::ServiceName;
use serde_json::{Map, Value};

#[path = "bench_support/mod.rs"]
mod bench_support;
use bench_support::{patch_volume, row, start_stack, BoxError, Stack, TOKEN};
use tokio::sync::mpsc;

/// Measures PUT → applied-by-a-verifying-subscriber latency.
#[derive(Parser)]
struct Args {
    /// Measured updates (after the warm-up).
    #[arg(long, default_value_t = 500)]
    updates: usize,
    /// Unmeasured updates first (connections, caches, JIT-free but warm).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// The config-manager binary; default: next to this example.
    #[arg(long)]
    bin: Option<PathBuf>,
}

/// A child process killed when dropped.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let bin = match args.bin {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("config-manager"))
            .ok_or("cannot locate the config-manager binary; pass --bin")?,
    };
    if !bin.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --profile dist -p config-manager` or pass --bin",
            bin.display()
        )
        .into());
    }
    let stack = start_stack(&bin).await?;
    let Stack {
        url,
        base,
        mqtt_url,
        http,
        key,
        ..
    } = &stack;
    let mut settings = ClientSettings::new(
        ServiceName::parse("tts-worker")?,
        TrustedKeys::from_keys([key.clone()]),
    );
    settings.manager_url = Some(url.clone());
    settings.api_token = Some(ApiToken::new(TOKEN));
    settings.mqtt = Some(MqttEndpoint::parse(mqtt_url)?);
    let (applied_tx, mut applied_rx) = mpsc::unbounded_channel::<(Instant, i64)>();
    let client = Client::<Map<String, Value>>::builder(settings)
        .on_change(move |config: &Map<String, Value>| {
            let volume = config
                .get("volume_percent")
                .and_then(Value::as_i64)
                .unwrap_or(-1);
            let _ = applied_tx.send((Instant::now(), volume));
            Ok::<(), Infallible>(())
        })
        .start()
        .await?;
    let mut version = client
        .snapshot()
        .applied
        .map(|a| a.version)
        .ok_or("the client did not start from REST")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !client.is_mqtt_connected() {
        if Instant::now() > deadline {
            return Err("the client did not connect to the broker".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let total = args.warmup + args.updates;
    let mut returned_to_applied = Vec::with_capacity(args.updates);
    let mut sent_to_applied = Vec::with_capacity(args.updates);
    let mut put_round_trip = Vec::with_capacity(args.updates);
    let mut applied_before_return = 0usize;
    let started = Instant::now();
    for i in 0..total {
        // Consecutive values always differ, so every round is a real change.
        let volume = i64::try_from(i % 200)?;
        let sent = Instant::now();
        let (next, returned) = patch_volume(http, base, volume, version).await?;
        version = next;
        let applied = loop {
            let (at, seen) = tokio::time::timeout(Duration::from_secs(10), applied_rx.recv())
                .await
                .map_err(|_| format!("update {i} (volume {volume}) not applied within 10 s"))?
                .ok_or("client stopped")?;
            if seen == volume {
                break at;
            }
        };
        if i >= args.warmup {
            if applied < returned {
                applied_before_return += 1;
            }
            returned_to_applied.push(applied.saturating_duration_since(returned));
            sent_to_applied.push(applied.duration_since(sent));
            put_round_trip.push(returned.duration_since(sent));
        }
    }
    let elapsed = started.elapsed();
    let counters = client.counters();
    client.shutdown().await;

    println!(
        "e2e latency, {} updates (+{} warm-up), {:.0} updates/s sequential, binary {}",
        args.updates,
        args.warmup,
        total as f64 / elapsed.as_secs_f64(),
        bin.display()
    );
    println!("| path | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    row("PUT returned → applied", &mut returned_to_applied);
    row("PUT sent → applied", &mut sent_to_applied);
    row("PUT round trip", &mut put_round_trip);
    println!(
        "applied before the PUT reply arrived: {applied_before_return} of {} (counted as 0 above)",
        args.updates
    );
    println!("client counters: {counters:?}");
    Ok(())
}
