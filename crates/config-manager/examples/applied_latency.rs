//! PATCH → "applied by every instance" as the REST summary shows it
//! (issue 19's figure): 2 Rust clients (`config-manager-client`, in this
//! process) and 2 Python clients (`tars-config-client`, child processes
//! running `tests/applied_child.py` with `.venv-client/bin/python`) report
//! their applied state; each round PATCHes `volume_percent` and polls
//! `GET /api/config/services` until `applied.tts-worker` says `in_sync` with
//! 4 of 4 instances. Rounds are sequential.
//!
//! ```sh
//! cargo build --profile dist -p config-manager --bin config-manager --example applied_latency
//! target/dist/examples/applied_latency --updates 200
//! ```
//!
//! The path measured: HTTP, SQLite commit, LKG write, sign, broker, four
//! clients verify and apply, each publishes its report, the manager's
//! subscriber takes it, and a summary read sees all four (the poll runs
//! every `--poll-ms`, so the figures include up to that much wait).
//! Figures are in `docs/performance.md`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use config_manager_client::{ApiToken, Client, ClientSettings, MqttEndpoint};
use config_manager_core::applied::InstanceId;
use config_manager_core::crypto::signing::TrustedKeys;
use config_manager_core::domain::{ServiceName, Version};
use serde_json::{Map, Value};

#[path = "bench_support/mod.rs"]
mod bench_support;
use bench_support::{patch_volume, row, start_stack, BoxError, Proc, Stack, TOKEN};

#[derive(Parser)]
struct Args {
    /// Measured updates (after the warm-up).
    #[arg(long, default_value_t = 200)]
    updates: usize,
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Pause between summary polls, in milliseconds.
    #[arg(long, default_value_t = 1)]
    poll_ms: u64,
    /// The config-manager binary; default: next to this example.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// The Python with the client installed; default: .venv-client/bin/python
    /// of this checkout.
    #[arg(long)]
    python: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = match args.bin {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("config-manager"))
            .ok_or("cannot locate the config-manager binary; pass --bin")?,
    };
    let python = args
        .python
        .unwrap_or_else(|| root.join(".venv-client/bin/python"));
    for (what, path) in [("config-manager", &bin), ("python", &python)] {
        if !path.exists() {
            return Err(format!("{what}: {} not found", path.display()).into());
        }
    }
    let stack = start_stack(&bin).await?;
    let Stack {
        dir,
        url,
        base,
        mqtt_url,
        http,
        key,
        ..
    } = &stack;

    let mut rust = Vec::new();
    for id in ["bench-rust-1", "bench-rust-2"] {
        let mut settings = ClientSettings::new(
            ServiceName::parse("tts-worker")?,
            TrustedKeys::from_keys([key.clone()]),
        );
        settings.manager_url = Some(url.clone());
        settings.api_token = Some(ApiToken::new(TOKEN));
        settings.mqtt = Some(MqttEndpoint::parse(mqtt_url)?);
        settings.instance_id = Some(InstanceId::parse(id)?);
        rust.push(
            Client::<Map<String, Value>>::builder(settings)
                .start()
                .await?,
        );
    }
    let script = root.join("crates/config-manager/tests/applied_child.py");
    let mut pythons = Vec::new();
    for id in ["bench-py-1", "bench-py-2"] {
        pythons.push(Proc(
            Command::new(&python)
                .arg(&script)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("CONFIG_INSTANCE_ID", id)
                .env("MQTT_URL", mqtt_url)
                .env("CONFIG_MANAGER_URL", url.clone())
                .env("CONFIG_API_TOKEN", TOKEN)
                .env("CONFIG_SIGNATURE_PUBLIC_KEY", key.to_spki_pem()?)
                .env("CONFIG_CACHE_PATH", dir.path().join(format!("{id}.json")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        ));
    }
    let poll = Duration::from_millis(args.poll_ms);
    let mut version = current_version(http, base).await?;
    // Every instance reports the start-up version first.
    wait_all_applied(http, base, poll, Duration::from_secs(60)).await?;

    let total = args.warmup + args.updates;
    let mut sent_to_all = Vec::with_capacity(args.updates);
    let mut returned_to_all = Vec::with_capacity(args.updates);
    let mut polls = 0usize;
    let started = Instant::now();
    for i in 0..total {
        // 50..=149: valid for the Python model (at most 150), always a change.
        let volume = 50 + i64::try_from(i % 100)?;
        let sent = Instant::now();
        let (next, returned) = patch_volume(http, base, volume, version).await?;
        version = next;
        polls += wait_all_applied(http, base, poll, Duration::from_secs(20)).await?;
        let seen = Instant::now();
        if i >= args.warmup {
            sent_to_all.push(seen.duration_since(sent));
            returned_to_all.push(seen.duration_since(returned));
        }
    }
    let elapsed = started.elapsed();
    for c in rust {
        c.shutdown().await;
    }
    drop(pythons);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "applied latency, 2 Rust + 2 Python instances, {} updates (+{} warm-up), {:.1} rounds/s, poll every {} ms ({:.1} polls per round), load average {}, binary {}",
        args.updates,
        args.warmup,
        total as f64 / elapsed.as_secs_f64(),
        args.poll_ms,
        polls as f64 / total as f64,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        bin.display()
    );
    println!("| path | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    row(
        "PATCH sent → summary \"applied by 4 of 4\"",
        &mut sent_to_all,
    );
    row(
        "PATCH answered → summary \"applied by 4 of 4\"",
        &mut returned_to_all,
    );
    Ok(())
}

async fn current_version(http: &reqwest::Client, base: &str) -> Result<Version, BoxError> {
    let body: Value = http
        .get(format!("{base}/services/tts-worker"))
        .header("X-API-Token", TOKEN)
        .send()
        .await?
        .json()
        .await?;
    serde_json::from_value(body["version"].clone()).map_err(|e| format!("no version: {e}").into())
}

/// Polls the list until tts-worker's summary is in sync with 4 of 4
/// instances; returns the number of polls.
async fn wait_all_applied(
    http: &reqwest::Client,
    base: &str,
    poll: Duration,
    limit: Duration,
) -> Result<usize, BoxError> {
    let deadline = Instant::now() + limit;
    let mut polls = 0;
    loop {
        polls += 1;
        let body: Value = http
            .get(format!("{base}/services"))
            .header("X-API-Token", TOKEN)
            .send()
            .await?
            .json()
            .await?;
        let s = &body["applied"]["tts-worker"];
        if s["state"] == "in_sync" && s["in_sync"] == 4 {
            return Ok(polls);
        }
        if Instant::now() > deadline {
            return Err(format!("not applied by every instance: {s}").into());
        }
        tokio::time::sleep(poll).await;
    }
}
