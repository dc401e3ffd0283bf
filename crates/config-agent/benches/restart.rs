//! The agent's figures (docs/performance.md, "config-agent"): the agent's
//! own share of a restart (verified update handed over by the client →
//! new program spawned, minus the old program's stop time, as the agent logs
//! it in `agent_share_us`), its idle RSS and its binary size. Real manager,
//! broker and Python program (tests/common); bounded: 30 updates.
//!
//! `CONFIG_MANAGER_BIN=target/debug/config-manager cargo bench -p config-agent --bench restart`

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{AgentEnv, AgentProc, Broker, Manager};
use serde_json::json;

const ROUNDS: usize = 30;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let broker = Broker::start();
    let m = Manager::start(&broker).await;
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let agent = AgentProc::spawn(
        AgentEnv {
            manager_url: Some(m.base()),
            mqtt_url: Some(broker.url()),
            public_key: m.public_key(),
            cache_dir: &cache,
            extra: vec![("CONFIG_AGENT_LOG", "info".into())],
            args: vec![],
        },
        work.path(),
        "bench",
    );
    agent.wait_starts(1).await;
    // Idle: connected, program running, nothing happening.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = rss_kib(agent.child.id());
    for i in 0..ROUNDS {
        m.patch(json!({"volume": 20 + i})).await;
        agent.wait_starts(i + 2).await;
    }
    let mut shares: Vec<u64> = agent
        .log_text()
        .lines()
        .filter_map(|l| l.split("agent_share_us=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect();
    shares.sort_unstable();
    assert_eq!(shares.len(), ROUNDS, "{}", agent.log_text());
    let pct = |p: usize| shares[(shares.len() - 1) * p / 100];
    let size = std::fs::metadata(env!("CARGO_BIN_EXE_config-agent"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "config-agent: update → program started, agent's share over {ROUNDS} restarts: p50 {} µs, p90 {} µs, max {} µs",
        pct(50),
        pct(90),
        pct(100)
    );
    println!("config-agent: idle RSS {idle_rss} KiB");
    println!(
        "config-agent: binary {} ({size} bytes)",
        env!("CARGO_BIN_EXE_config-agent")
    );
}
