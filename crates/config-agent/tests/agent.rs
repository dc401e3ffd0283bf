//! config-agent against real parts: the `config-manager` binary, a mosquitto
//! broker started here, and the agent running a Python program that reads
//! its settings from the environment at import (tests/common/mod.rs).

// Helpers outside #[test] fns are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{AgentEnv, AgentProc, Broker, Manager, SECRET, SERVICE, WAIT};

/// A secret changed while the agent runs.
const NEW_SECRET: &str = "rotated-secret-9876543210";
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Every applied-state report of the test service, as it arrives.
async fn watch_reports(port: u16) -> mpsc::UnboundedReceiver<Value> {
    let mut opts = MqttOptions::new(format!("watch-{}", std::process::id()), "127.0.0.1", port);
    opts.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    client
        .subscribe(
            format!("system/config/{SERVICE}/applied/+"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&p.payload) {
                        let _ = tx.send(v);
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {}
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    rx
}

async fn next_report(
    rx: &mut mpsc::UnboundedReceiver<Value>,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = tokio::time::timeout(left, rx.recv())
            .await
            .expect("report in time")
            .expect("watcher alive");
        if pred(&report) {
            return report;
        }
    }
}

async fn wait_instance(m: &Manager, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = m.instances().await;
        if let Some(i) = body["instances"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["instance_id"] == id))
        {
            if pred(i) {
                return i.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "instance never matched: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes one raw message (QoS 1, retained) and waits for the ack.
async fn publish(port: u16, topic: &str, payload: Vec<u8>) {
    let mut opts = MqttOptions::new(format!("pub-{}", std::process::id()), "127.0.0.1", port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    client
        .publish(topic, QoS::AtLeastOnce, true, payload)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.unwrap() {
            break;
        }
    }
    client.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_change_pin_forgery_crash_rollback_and_stop() {
    let broker = Broker::start();
    let m = Manager::start(&broker).await;
    // The secret, through the service-scoped token only.
    m.patch(json!({"api_key": SECRET})).await;
    let mut reports = watch_reports(broker.port).await;
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let mut agent = AgentProc::spawn(
        AgentEnv {
            manager_url: Some(m.base()),
            mqtt_url: Some(broker.url()),
            public_key: m.public_key(),
            cache_dir: &cache,
            extra: vec![
                ("CONFIG_PINNED_ENV", "LOG_LEVEL".into()),
                ("LOG_LEVEL", "DEBUG".into()),
                ("DEMO_VOLUME", "5".into()),
                ("EXIT_ON_TERM", "7".into()),
                ("CONFIG_AGENT_STOP_GRACE_MS", "3000".into()),
                ("CONFIG_AGENT_CRASH_WINDOW_MS", "5000".into()),
            ],
            args: vec![],
        },
        work.path(),
        "robot-1",
    );

    // Start values: the manager's values win over the inherited DEMO_VOLUME,
    // rendered as the services parse them; the pinned LOG_LEVEL is kept.
    let first = agent.wait_starts(1).await[0].clone();
    assert_eq!(first["DEMO_VOLUME"], "100");
    assert_eq!(first["DEMO_VOLUME_ALIAS"], "100");
    assert_eq!(first["DEMO_ENABLED"], "1");
    assert_eq!(first["RATIO"], "0.5");
    assert_eq!(first["WORDS"], "thank you,hi");
    assert_eq!(first["LOG_LEVEL"], "DEBUG");
    assert_eq!(first["DEMO_API_KEY"], SECRET);
    let applied = next_report(&mut reports, |r| r["status"] == "applied").await;
    assert_eq!(applied["client"]["name"], "config-agent");
    assert_eq!(applied["pinned"], json!({"log_level": "LOG_LEVEL"}));
    let view = wait_instance(&m, "robot-1", |i| i["state"] == "in_sync").await;
    assert_eq!(view["pinned"], json!({"log_level": "LOG_LEVEL"}));

    // A forged message (valid shape, bad signature) restarts nothing; the
    // next real change restarts the program with the new value.
    let (_, current) = m
        .request("GET", &format!("/services/{SERVICE}"), String::new())
        .await;
    let forged = json!({
        "version": current["version"].as_i64().unwrap() + 1,
        "service": SERVICE,
        "config": {"volume": 77, "enabled": true, "ratio": 0.5, "words": [], "log_level": "INFO"},
        "checksum": "0".repeat(64),
        "config_epoch": current["config_epoch"],
        "issued_at": "2030-01-01T00:00:00.000Z",
        "key_id": "forged",
        "signature": "AAAA",
    });
    publish(
        broker.port,
        &format!("system/config/{SERVICE}"),
        forged.to_string().into_bytes(),
    )
    .await;
    let v_changed = m
        .patch(json!({"volume": 120, "log_level": "WARNING", "enabled": false}))
        .await;
    let starts = agent.wait_starts(2).await;
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[1]["DEMO_VOLUME"], "120");
    assert_eq!(starts[1]["DEMO_ENABLED"], "0");
    assert_eq!(starts[1]["LOG_LEVEL"], "DEBUG", "pinned");
    assert_ne!(starts[1]["pid"], starts[0]["pid"]);
    next_report(&mut reports, |r| {
        r["status"] == "applied" && r["version"] == v_changed
    })
    .await;

    // A crashing value: rolled back to the last good environment, reported
    // `rejected`/`crashed`, and not retried.
    let v_crash = m.patch(json!({"volume": 13})).await;
    let starts = agent.wait_starts(4).await;
    assert_eq!(starts[2]["DEMO_VOLUME"], "13");
    assert_eq!(starts[3]["DEMO_VOLUME"], "120", "rolled back");
    let crashed = next_report(&mut reports, |r| r["status"] == "rejected").await;
    assert_eq!(crashed["reason"], "crashed");
    assert_eq!(crashed["rejected_version"], v_crash);
    assert_eq!(crashed["version"], v_changed);
    let view = wait_instance(&m, "robot-1", |i| i["reason"] == "crashed").await;
    assert_eq!(view["state"], "rejected");
    assert_eq!(view["rejected_version"], v_crash);
    // A newer version is tried again.
    let v_fixed = m.patch(json!({"volume": 140})).await;
    let starts = agent.wait_starts(5).await;
    assert_eq!(starts[4]["DEMO_VOLUME"], "140");
    next_report(&mut reports, |r| {
        r["status"] == "applied" && r["version"] == v_fixed
    })
    .await;
    assert_eq!(agent.starts().len(), 5, "{:?}", agent.starts());

    // A change of a secret alone (as the web UI saves it): the envelope
    // carries no secrets, so the agent reads the version's secrets over
    // REST and restarts the program with the new one.
    let v_secret = m.patch(json!({"api_key": NEW_SECRET})).await;
    let starts = agent.wait_starts(6).await;
    assert_eq!(starts[5]["DEMO_API_KEY"], NEW_SECRET);
    assert_eq!(starts[5]["DEMO_VOLUME"], "140");
    next_report(&mut reports, |r| {
        r["status"] == "applied" && r["version"] == v_secret
    })
    .await;

    // SIGTERM is forwarded; the agent exits with the program's status and
    // says offline.
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(), Some(7));
    next_report(&mut reports, |r| r["status"] == "offline").await;

    // Never a value in the agent's log.
    let log = agent.log_text();
    for value in [SECRET, NEW_SECRET, "thank you", "WARNING"] {
        assert!(!log.contains(value), "{value} in the log:\n{log}");
    }
    assert!(log.contains("DEMO_VOLUME"), "names are logged:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_down_uses_the_verified_copy_and_nothing_means_defaults() {
    let broker = Broker::start();
    let mut m = Manager::start(&broker).await;
    m.patch(json!({"volume": 150})).await;
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let key = m.public_key();
    let mut agent = AgentProc::spawn(
        AgentEnv {
            manager_url: Some(m.base()),
            mqtt_url: Some(broker.url()),
            public_key: key.clone(),
            cache_dir: &cache,
            extra: vec![],
            args: vec![],
        },
        work.path(),
        "first",
    );
    agent.wait_starts(1).await;
    // The copy arrives with the retained message of the version it runs.
    let copy = cache.join(format!("{SERVICE}.json"));
    let deadline = Instant::now() + WAIT;
    while !copy.exists() || !cache.join(format!("{SERVICE}.schema.json")).exists() {
        assert!(Instant::now() < deadline, "no copy\n{}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(), Some(0));

    // Unknown service while the manager is up: exit 2.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_config-agent"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CONFIG_SIGNATURE_PUBLIC_KEY", &key)
        .env("CONFIG_MANAGER_URL", m.base())
        .env("CONFIG_API_TOKEN", common::READ_TOKEN)
        .env("CONFIG_CACHE_DIR", &cache)
        .args(["run", "--service", "no-such-service", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("knows no service"));

    // Manager down: the verified copy, and the inherited secret stays.
    m.kill();
    let down = format!("http://127.0.0.1:{}", common::free_port());
    let agent = AgentProc::spawn(
        AgentEnv {
            manager_url: Some(down.clone()),
            mqtt_url: None,
            public_key: key.clone(),
            cache_dir: &cache,
            extra: vec![("DEMO_API_KEY", "inherited-key".into())],
            args: vec![],
        },
        work.path(),
        "second",
    );
    let start = agent.wait_starts(1).await[0].clone();
    assert_eq!(start["DEMO_VOLUME"], "150");
    assert_eq!(start["DEMO_API_KEY"], "inherited-key");
    agent.wait_log("verified on-disk copy").await;
    drop(agent);

    // An edited copy is refused; nothing else at all: defaults, said so.
    let text = std::fs::read_to_string(&copy)
        .unwrap()
        .replace("150", "151");
    std::fs::write(&copy, text).unwrap();
    let agent = AgentProc::spawn(
        AgentEnv {
            manager_url: Some(down),
            mqtt_url: None,
            public_key: key,
            cache_dir: &cache,
            extra: vec![],
            args: vec![],
        },
        work.path(),
        "third",
    );
    let start = agent.wait_starts(1).await[0].clone();
    assert_eq!(
        start["DEMO_VOLUME"], "100",
        "schema default (from the schema copy)"
    );
    agent.wait_log("no configuration available").await;
}

#[test]
fn bad_input_exits_2() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_config-agent"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CONFIG_SIGNATURE_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----")
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["run", "--service", "demo"], &[], "required"),
        (&["run", "--", "true"], &[], "--service"),
        (
            &["run", "--service", "Bad Name", "--", "true"],
            &[],
            "service",
        ),
        (
            &["run", "--service", "demo", "--", "no-such-program-xyz"],
            &[],
            "command not found",
        ),
        (
            &[
                "run",
                "--service",
                "demo",
                "--stop-signal",
                "NOPE",
                "--",
                "true",
            ],
            &[],
            "signal",
        ),
        (
            &["run", "--service", "demo", "--", "true"],
            &[("CONFIG_AGENT_STOP_GRACE_MS", "soon")],
            "stop-grace",
        ),
        (
            &["run", "--service", "demo", "--", "true"],
            &[("CONFIG_AGENT_RENDER_FORMAT", "yaml")],
            "render-format",
        ),
        (
            &["run", "--service", "demo", "--", "true"],
            &[("CONFIG_PINNED_ENV", "A-B")],
            "variable name",
        ),
        (
            &["run", "--service", "demo", "--", "true"],
            &[("MQTT_URL", "http://x")],
            "MQTT_URL",
        ),
        (
            &["run", "--service", "demo", "--", "true"],
            &[("CONFIG_SIGNATURE_PUBLIC_KEY", "junk")],
            "CONFIG_SIGNATURE_PUBLIC_KEY",
        ),
        (&["frobnicate"], &[], "unrecognized"),
    ];
    for (args, env, needle) in cases {
        let (code, stderr) = run(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    }
}
