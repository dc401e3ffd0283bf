//! Load-test helper of `scripts/bench.sh` (issue 9): the measurements wrk
//! cannot make, against a config-manager the script already started.
//!
//! ```sh
//! bench_driver wait-healthy --url http://127.0.0.1:8081 --since-ns "$(date +%s%N)"
//! bench_driver put-latency  --url … --token … --service tts-worker --count 200
//! bench_driver delivery     --url … --token … --mqtt-url mqtt://127.0.0.1:1883 --env-file .env
//! bench_driver conflict     --url … --token … --rounds 20 --writers 10
//! bench_driver commit-floor --dir data/
//! ```
//!
//! Results are printed as `RESULT <name> <value>` lines (milliseconds unless
//! the name says otherwise) for the script to collect; everything else is
//! commentary. Every subcommand is bounded (counts and timeouts).

use std::convert::Infallible;
use std::error::Error;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use config_manager_client::{ApiToken, Client, ClientSettings, MqttEndpoint};
use config_manager_core::crypto::signing::{TrustedKeys, VerifyingKey};
use config_manager_core::domain::ServiceName;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// Base URL of the service (`http://127.0.0.1:PORT`).
    #[arg(long)]
    url: String,
    /// A write token.
    #[arg(long)]
    token: String,
    /// The service to write; it needs an integer `volume_percent`-like field
    /// named by `--field` with range 0..=199 at least.
    #[arg(long, default_value = "tts-worker")]
    service: String,
    #[arg(long, default_value = "volume_percent")]
    field: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Polls `GET /api/config/health` (raw HTTP/1.1, every 0.5 ms) until it
    /// answers 200; prints the time since `--since-ns` (CLOCK_REALTIME ns,
    /// `date +%s%N` taken just before the service was started).
    WaitHealthy {
        #[arg(long)]
        url: String,
        #[arg(long)]
        since_ns: u128,
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        /// Name of the RESULT line.
        #[arg(long, default_value = "cold_start_ms")]
        name: String,
    },
    /// Sequential PATCHes of one field, each with the version the previous
    /// one returned: p50/p90/p99/max of the acknowledged (committed) write.
    PutLatency {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 300)]
        count: usize,
        #[arg(long, default_value_t = 20)]
        warmup: usize,
    },
    /// A client-library subscriber (verifies signatures, checksum, freshness)
    /// for the service; sequential PATCHes; time until its on-change callback
    /// has applied each new value.
    Delivery {
        #[command(flatten)]
        target: Target,
        /// The broker the manager publishes to.
        #[arg(long)]
        mqtt_url: String,
        /// The manager's `.env` (for `CONFIG_SIGNATURE_PUBLIC_KEY`).
        #[arg(long)]
        env_file: PathBuf,
        #[arg(long, default_value_t = 300)]
        count: usize,
        #[arg(long, default_value_t = 20)]
        warmup: usize,
    },
    /// The floor under a durable write, on the disk the service uses: single
    /// row commits to a fresh SQLite file in WAL mode with `synchronous=FULL`
    /// (the store's settings), p50/p99.
    CommitFloor {
        /// Directory for the scratch database (the service's data directory).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 300)]
        count: usize,
    },
    /// Rounds of `--writers` concurrent PATCHes that all send the same
    /// (current) version: exactly one may succeed, the others must get 409.
    Conflict {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        #[arg(long, default_value_t = 10)]
        writers: usize,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    match Args::parse().command {
        Cmd::WaitHealthy {
            url,
            since_ns,
            timeout_s,
            name,
        } => wait_healthy(&url, since_ns, Duration::from_secs(timeout_s), &name),
        Cmd::PutLatency {
            target,
            count,
            warmup,
        } => put_latency(&target, count, warmup).await,
        Cmd::Delivery {
            target,
            mqtt_url,
            env_file,
            count,
            warmup,
        } => delivery(&target, &mqtt_url, &env_file, count, warmup).await,
        Cmd::CommitFloor { dir, count } => commit_floor(&dir, count),
        Cmd::Conflict {
            target,
            rounds,
            writers,
        } => conflict(&target, rounds, writers).await,
    }
}

fn wait_healthy(url: &str, since_ns: u128, timeout: Duration, name: &str) -> Result<(), BoxError> {
    let authority = url
        .strip_prefix("http://")
        .ok_or("--url must start with http://")?
        .trim_end_matches('/');
    let request = format!(
        "GET /api/config/health HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    );
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(mut stream) = TcpStream::connect(authority) {
            let mut head = [0u8; 12];
            let answered = stream.write_all(request.as_bytes()).is_ok()
                && stream.read_exact(&mut head).is_ok();
            if answered && head.starts_with(b"HTTP/1.1 200") {
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
                let ms = now.saturating_sub(since_ns) as f64 / 1e6;
                println!("RESULT {name} {ms:.1}");
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{url} did not answer healthy within {timeout:?}").into());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// The current version of the service (from a GET).
async fn current_version(http: &reqwest::Client, t: &Target) -> Result<i64, BoxError> {
    let body: Value = http
        .get(format!("{}/api/config/services/{}", t.url, t.service))
        .header("X-API-Token", &t.token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    body["version"]
        .as_i64()
        .ok_or_else(|| "no version in the GET answer".into())
}

/// One PATCH of `field = value` with `version`; returns the status and body.
async fn patch(
    http: &reqwest::Client,
    t: &Target,
    value: i64,
    version: i64,
) -> Result<(u16, Value), BoxError> {
    let resp = http
        .patch(format!("{}/api/config/services/{}", t.url, t.service))
        .header("X-API-Token", &t.token)
        .json(&json!({"config": {&t.field: value}, "version": version}))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

async fn put_latency(t: &Target, count: usize, warmup: usize) -> Result<(), BoxError> {
    let http = reqwest::Client::new();
    let mut version = current_version(&http, t).await?;
    let mut samples = Vec::with_capacity(count);
    for i in 0..warmup + count {
        // Consecutive values always differ, so each PATCH commits a version.
        let value = i64::try_from(i % 2 + 50)?;
        let sent = Instant::now();
        let (status, body) = patch(&http, t, value, version).await?;
        let took = sent.elapsed();
        if status != 200 {
            return Err(format!("PATCH answered {status}: {body}").into());
        }
        version = body["version"].as_i64().ok_or("no version in the reply")?;
        if i >= warmup {
            samples.push(took);
        }
    }
    report("put", &mut samples);
    Ok(())
}

async fn delivery(
    t: &Target,
    mqtt_url: &str,
    env_file: &std::path::Path,
    count: usize,
    warmup: usize,
) -> Result<(), BoxError> {
    let key = env_public_key(env_file)?;
    let mut settings = ClientSettings::new(
        ServiceName::parse(&t.service)?,
        TrustedKeys::from_keys([key]),
    );
    settings.manager_url = Some(t.url.clone());
    settings.api_token = Some(ApiToken::new(t.token.clone()));
    settings.mqtt = Some(MqttEndpoint::parse(mqtt_url)?);
    let field = t.field.clone();
    let (applied_tx, mut applied_rx) = mpsc::unbounded_channel::<(Instant, i64)>();
    let client = Client::<Map<String, Value>>::builder(settings)
        .on_change(move |config: &Map<String, Value>| {
            let value = config.get(&field).and_then(Value::as_i64).unwrap_or(-1);
            let _ = applied_tx.send((Instant::now(), value));
            Ok::<(), Infallible>(())
        })
        .start()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !client.is_mqtt_connected() {
        if Instant::now() > deadline {
            return Err("the client did not connect to the broker within 15 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The retained message of the current version arrives right after the
    // subscription; let it land before the first measured PATCH.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while applied_rx.try_recv().is_ok() {}

    let http = reqwest::Client::new();
    let mut version = current_version(&http, t).await?;
    let mut sent_to_applied = Vec::with_capacity(count);
    let mut returned_to_applied = Vec::with_capacity(count);
    let mut before_reply = 0usize;
    for i in 0..warmup + count {
        let value = i64::try_from(i % 2 + 60)?;
        let sent = Instant::now();
        let (status, body) = patch(&http, t, value, version).await?;
        let returned = Instant::now();
        if status != 200 {
            return Err(format!("PATCH answered {status}: {body}").into());
        }
        version = body["version"].as_i64().ok_or("no version in the reply")?;
        let applied = loop {
            let (at, seen) = tokio::time::timeout(Duration::from_secs(10), applied_rx.recv())
                .await
                .map_err(|_| format!("update {i} was not applied within 10 s (is MQTT_URL set and the publisher running?)"))?
                .ok_or("the client stopped")?;
            if seen == value {
                break at;
            }
        };
        if i >= warmup {
            if applied < returned {
                before_reply += 1;
            }
            sent_to_applied.push(applied.duration_since(sent));
            returned_to_applied.push(applied.saturating_duration_since(returned));
        }
    }
    let counters = client.counters();
    client.shutdown().await;
    report("delivery", &mut sent_to_applied);
    report("delivery_after_reply", &mut returned_to_applied);
    println!("RESULT delivery_before_reply_count {before_reply}");
    println!("# client counters: {counters:?}");
    Ok(())
}

fn commit_floor(dir: &std::path::Path, count: usize) -> Result<(), BoxError> {
    let path = dir.join("commit-floor.db");
    let conn = rusqlite::Connection::open(&path)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
    )?;
    let mut samples = Vec::with_capacity(count);
    for i in 0..count + 20 {
        let started = Instant::now();
        conn.execute("INSERT INTO t (v) VALUES ('x')", [])?;
        if i >= 20 {
            samples.push(started.elapsed());
        }
    }
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    report("commit_floor", &mut samples);
    Ok(())
}

async fn conflict(t: &Target, rounds: usize, writers: usize) -> Result<(), BoxError> {
    let http = reqwest::Client::new();
    let mut exact = 0usize;
    for round in 0..rounds {
        let version = current_version(&http, t).await?;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(writers));
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let (http, t, barrier) = (http.clone(), t.clone(), barrier.clone());
                // Every writer sends a different value, all from `version`.
                let value = i64::try_from((round * writers + w) % 200)?;
                Ok(tokio::spawn(async move {
                    barrier.wait().await;
                    patch(&http, &t, value, version).await.map(|(s, _)| s)
                }))
            })
            .collect::<Result<_, BoxError>>()?;
        let mut ok = 0usize;
        let mut conflicts = 0usize;
        let mut other = Vec::new();
        for task in tasks {
            match task.await?? {
                200 => ok += 1,
                409 => conflicts += 1,
                s => other.push(s),
            }
        }
        let good = ok == 1 && conflicts == writers - 1;
        exact += usize::from(good);
        println!(
            "# round {}: {ok}×200, {conflicts}×409, other {other:?}{}",
            round + 1,
            if good { "" } else { "  <-- WRONG" }
        );
    }
    println!("RESULT conflict_exact_rounds {exact}");
    println!("RESULT conflict_rounds {rounds}");
    Ok(())
}

/// Prints `RESULT <name>_p50_ms` … `_max_ms` and the sample count.
fn report(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let pct = |q: f64| -> f64 {
        if samples.is_empty() {
            return f64::NAN;
        }
        let index = ((samples.len() - 1) as f64 * q).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    println!("RESULT {name}_count {}", samples.len());
    for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        println!("RESULT {name}_{label}_ms {:.3}", pct(q));
    }
}

/// `CONFIG_SIGNATURE_PUBLIC_KEY` from the manager's `.env`.
fn env_public_key(env_file: &std::path::Path) -> Result<VerifyingKey, BoxError> {
    for item in dotenvy::from_path_iter(env_file)? {
        let (k, v) = item?;
        if k == "CONFIG_SIGNATURE_PUBLIC_KEY" {
            return Ok(VerifyingKey::from_spki_pem(&v)?);
        }
    }
    Err(format!("CONFIG_SIGNATURE_PUBLIC_KEY not in {}", env_file.display()).into())
}
