//! Desired vs applied (issue 19), manager side, against real parts: the
//! `config-manager` binary, a mosquitto broker started here, and raw MQTT
//! publishes of applied-state reports (so hostile and malformed input can be
//! sent exactly). The end-to-end tests with the real client libraries are in
//! `applied_clients.rs`.

// Helpers outside #[test] fns are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/mqtt.rs"]
mod mqtt_support;

use std::time::{Duration, Instant};

use common::{metric, Server, READ_TOKEN, TTS_TOKEN, WRITE_TOKEN};
use mqtt_support::{Broker, Subscriber};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const TTS: &str = "tts-worker";
const REPORT_SCHEMA: &str = include_str!("../../../contracts/mqtt-applied-state.schema.json");

fn topic(service: &str, instance: &str) -> String {
    format!("system/config/{service}/applied/{instance}")
}

/// A report as a client would publish it.
fn report(instance: &str, status: &str, epoch: &str, version: Option<i64>) -> Value {
    let mut v = json!({
        "service": TTS,
        "instance_id": instance,
        "config_epoch": version.map(|_| epoch),
        "version": version,
        "status": status,
        "reason": null,
        "rejected_version": null,
        "applied_at": version.map(|_| "2026-01-15T09:30:00.120Z"),
        "client": {"name": "raw-test", "version": "1.0.0"},
    });
    if status == "rejected" {
        v["reason"] = json!("bad_signature");
        v["rejected_version"] = json!(version.unwrap_or(1) + 1);
    }
    v
}

/// Publishes every `(topic, payload, retain)` with QoS 1 and returns once
/// the broker acknowledged all of them.
async fn publish_all(port: u16, messages: Vec<(String, Vec<u8>, bool)>) {
    let id = format!("raw-pub-{}", uuid::Uuid::new_v4().simple());
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_clean_session(true);
    opts.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let total = messages.len();
    let sender = tokio::spawn(async move {
        for (t, p, retain) in messages {
            client
                .publish(t, QoS::AtLeastOnce, retain, p)
                .await
                .expect("queue publish");
        }
        client
    });
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked < total {
        assert!(Instant::now() < deadline, "{acked}/{total} acknowledged");
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => panic!("publisher connection failed: {e}"),
        }
    }
    let client = sender.await.unwrap();
    client.disconnect().await.unwrap();
    loop {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn json_bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

async fn start(broker: &Broker, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![("MQTT_URL".to_owned(), broker.url())];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Server::start_with(env).await
}

async fn instances(s: &Server, service: &str) -> Value {
    let (status, body) = s
        .get(&format!("/services/{service}/instances"), Some(READ_TOKEN))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls the instances endpoint until `pred` holds.
async fn wait_instances(s: &Server, service: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = instances(s, service).await;
        if pred(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "never matched: {body:#}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn instance<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance_id"] == id)
        .unwrap_or_else(|| panic!("no instance {id} in {body:#}"))
}

fn count(body: &Value) -> usize {
    body["instances"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn reports_show_desired_vs_applied_in_rest_and_metrics() {
    let broker = Broker::start();
    let s = start(&broker, &[]).await;
    let (epoch, v1) = s.desired(TTS).await;
    let v = s.patch_ok(TTS, json!({"volume_percent": 101}), v1).await;
    assert!(v >= 2);
    // The example of the contract is valid against its schema, and what
    // this test sends is too.
    let validator =
        jsonschema::validator_for(&serde_json::from_str(REPORT_SCHEMA).unwrap()).unwrap();
    // Optional members (decision 4 of issue 24): `pinned` with any status,
    // `fields` and the `crashed` label with a rejection.
    let mut pinned = report("a", "applied", &epoch, Some(v));
    pinned["pinned"] = json!({"volume_percent": "TTS_VOLUME_PERCENT"});
    let mut crashed = report("b", "rejected", &epoch, Some(v));
    crashed["reason"] = json!("crashed");
    crashed["fields"] = json!(["volume_percent"]);
    crashed["client"]["name"] = json!("config-agent");
    let sent = [
        ("a", pinned),
        ("b", crashed),
        ("c", report("c", "offline", &epoch, Some(v))),
        ("d", report("d", "applied", &epoch, Some(v - 1))),
        (
            "e",
            report(
                "e",
                "applied",
                "00000000-0000-4000-8000-000000000000",
                Some(v),
            ),
        ),
    ];
    for (_, r) in &sent {
        assert!(validator.is_valid(r), "{r}");
    }
    publish_all(
        broker.port,
        sent.iter()
            .map(|(id, r)| (topic(TTS, id), json_bytes(r), true))
            .collect(),
    )
    .await;
    let body = wait_instances(&s, TTS, |b| count(b) == 5).await;
    assert_eq!(body["desired"]["version"], v);
    assert_eq!(body["desired"]["config_epoch"], epoch.as_str());
    let state = |id: &str| instance(&body, id)["state"].as_str().unwrap().to_owned();
    assert_eq!(state("a"), "in_sync");
    assert_eq!(state("b"), "rejected");
    assert_eq!(instance(&body, "b")["reason"], "crashed");
    assert_eq!(instance(&body, "b")["fields"], json!(["volume_percent"]));
    assert_eq!(instance(&body, "b")["client"]["name"], "config-agent");
    assert_eq!(
        instance(&body, "a")["pinned"],
        json!({"volume_percent": "TTS_VOLUME_PERCENT"})
    );
    assert_eq!(instance(&body, "a")["fields"], json!([]));
    assert_eq!(instance(&body, "c")["pinned"], json!({}));
    assert_eq!(instance(&body, "b")["rejected_version"], v + 1);
    assert_eq!(state("c"), "offline");
    assert_eq!(state("d"), "pending");
    assert_eq!(instance(&body, "d")["drift"], "behind");
    assert!(instance(&body, "d")["pending_seconds"].as_u64().is_some());
    assert_eq!(state("e"), "pending");
    assert_eq!(instance(&body, "e")["drift"], "other_epoch");
    assert_eq!(instance(&body, "d")["client"]["name"], "raw-test");
    assert_eq!(
        body["summary"],
        json!({"state": "rejected", "instances": 5, "in_sync": 1, "pending": 2,
               "rejected": 1, "offline": 1, "reachable": 4,
               "pending_seconds": body["summary"]["pending_seconds"]})
    );

    // The list carries the summary per service, and "no_reports" for others.
    let (status, list) = s.get("/services", Some(READ_TOKEN)).await;
    assert_eq!(status, 200);
    assert!(list["services"].as_array().unwrap().contains(&json!(TTS)));
    assert_eq!(list["applied"][TTS]["state"], "rejected");
    assert_eq!(list["applied"]["stt-worker"]["state"], "no_reports");

    // A write makes the in-sync instance pending until it reports the new
    // version; the rejected one turns in sync when it applies it.
    let v2 = s.patch_ok(TTS, json!({"volume_percent": 102}), v).await;
    let body = instances(&s, TTS).await;
    assert_eq!(instance(&body, "a")["state"], "pending");
    assert_eq!(instance(&body, "a")["drift"], "behind");
    publish_all(
        broker.port,
        vec![
            (
                topic(TTS, "a"),
                json_bytes(&report("a", "applied", &epoch, Some(v2))),
                true,
            ),
            (
                topic(TTS, "b"),
                json_bytes(&report("b", "applied", &epoch, Some(v2))),
                true,
            ),
            // The retired ones clear their retained report.
            (topic(TTS, "d"), Vec::new(), true),
            (topic(TTS, "e"), Vec::new(), true),
        ],
    )
    .await;
    let body = wait_instances(&s, TTS, |b| count(b) == 3 && b["summary"]["in_sync"] == 2).await;
    assert_eq!(body["summary"]["state"], "offline");
    assert_eq!(body["summary"]["reachable"], 2);

    // Metrics: gauges by state (cached desired versions, refreshed within a
    // second of the write), no instance ids as labels.
    let deadline = Instant::now() + WAIT;
    loop {
        let text = s.metrics().await;
        if metric(&text, "config_manager_applied_instances{state=\"in_sync\"}") == 2.0 {
            assert_eq!(
                metric(&text, "config_manager_applied_instances{state=\"offline\"}"),
                1.0
            );
            assert_eq!(
                metric(
                    &text,
                    "config_manager_applied_instances{state=\"rejected\"}"
                ),
                0.0
            );
            assert!(metric(&text, "config_manager_applied_reports_received_total") >= 9.0);
            assert!(!text.contains("instance=\""), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Scopes: the tts-scoped token reads its service's instances only.
    let (status, _) = s
        .get("/services/tts-worker/instances", Some(TTS_TOKEN))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .get("/services/stt-worker/instances", Some(TTS_TOKEN))
        .await;
    assert_eq!(status, 403);
    let (status, _) = s.get("/services/tts-worker/instances", None).await;
    assert_eq!(status, 401);
    let (status, _) = s
        .get("/services/no-such-service/instances", Some(READ_TOKEN))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_reports_are_dropped_counted_and_never_shown() {
    let broker = Broker::start();
    let s = start(&broker, &[]).await;
    let (epoch, v) = s.desired(TTS).await;
    let good = report("good", "applied", &epoch, Some(v));
    let mut mismatch = report("other", "applied", &epoch, Some(v));
    mismatch["instance_id"] = json!("not-the-topic");
    let mut ghost = report("x", "applied", &epoch, Some(v));
    ghost["service"] = json!("ghost-service");
    let mut secret_reason = report("leak", "rejected", &epoch, Some(v));
    secret_reason["reason"] = json!("password is hunter2");
    let oversized = {
        let mut r = report("big", "applied", &epoch, Some(v));
        r["client"]["name"] = json!("x".repeat(20_000));
        json_bytes(&r)
    };
    publish_all(
        broker.port,
        vec![
            (topic(TTS, "junk"), b"{not json".to_vec(), true),
            (topic(TTS, "big"), oversized, true),
            (topic(TTS, "other"), json_bytes(&mismatch), true),
            (topic("ghost-service", "x"), json_bytes(&ghost), true),
            (topic(TTS, "leak"), json_bytes(&secret_reason), true),
            (topic(TTS, "-bad-id"), json_bytes(&good), true),
            (topic(TTS, "wrong"), json_bytes(&json!([1, 2])), false),
            // Last, so that once it shows every message before it was handled.
            (topic(TTS, "good"), json_bytes(&good), true),
        ],
    )
    .await;
    let body = wait_instances(&s, TTS, |b| count(b) >= 1).await;
    assert_eq!(count(&body), 1, "{body:#}");
    assert_eq!(instance(&body, "good")["state"], "in_sync");
    let text = s.metrics().await;
    let dropped = |reason: &str| {
        metric(
            &text,
            &format!("config_manager_applied_reports_dropped_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(dropped("invalid"), 3.0, "{text}"); // junk, secret reason, array
    assert_eq!(dropped("too_large"), 1.0);
    assert_eq!(dropped("topic_mismatch"), 1.0);
    assert_eq!(dropped("unknown_service"), 1.0);
    assert_eq!(dropped("bad_topic"), 1.0);
    // Nothing of the payloads reached the log.
    let log = s.log();
    assert!(!log.contains("hunter2"), "{log}");
    assert!(!log.contains("ghost-service"), "{log}");
}

#[tokio::test]
async fn state_survives_a_manager_restart_and_forget_clears_it() {
    let mut broker = Broker::start();
    let mut s = start(&broker, &[]).await;
    let (epoch, v) = s.desired(TTS).await;
    publish_all(
        broker.port,
        vec![
            (
                topic(TTS, "keep"),
                json_bytes(&report("keep", "applied", &epoch, Some(v))),
                true,
            ),
            (
                topic(TTS, "retired"),
                json_bytes(&report("retired", "offline", &epoch, Some(v))),
                true,
            ),
        ],
    )
    .await;
    wait_instances(&s, TTS, |b| count(b) == 2).await;
    // Persisted (in batches, within a second): poll the database itself.
    let db = s.db_path();
    let deadline = Instant::now() + WAIT;
    loop {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM applied_state", [], |r| r.get(0))
            .unwrap();
        if rows == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{rows} rows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A crash, and the broker loses its retained messages: what the manager
    // shows after the restart can only come from its database.
    s.kill9();
    broker.restart();
    s.spawn().await;
    let body = instances(&s, TTS).await;
    assert_eq!(count(&body), 2, "{body:#}");
    assert_eq!(instance(&body, "keep")["state"], "in_sync");
    assert_eq!(instance(&body, "retired")["state"], "offline");

    // Forget: write role only, bad ids refused, audited, retained cleared.
    let forget = "/services/tts-worker/instances/retired";
    let (status, _) = s.send("DELETE", forget, Some(READ_TOKEN), &json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = s
        .send(
            "DELETE",
            "/services/tts-worker/instances/-x",
            Some(WRITE_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(status, 400);
    // Someone republishes the retired report; the forget clears it again.
    publish_all(
        broker.port,
        vec![(
            topic(TTS, "retired"),
            json_bytes(&report("retired", "offline", &epoch, Some(v))),
            true,
        )],
    )
    .await;
    let (status, body) = s
        .send("DELETE", forget, Some(WRITE_TOKEN), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = s
        .send(
            "DELETE",
            "/services/tts-worker/instances/never-seen",
            Some(WRITE_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let body = wait_instances(&s, TTS, |b| count(b) == 1).await;
    assert_eq!(body["instances"][0]["instance_id"], "keep");
    let audit = s.audit_entries("action=instance.forget").await;
    assert!(
        audit
            .iter()
            .any(|e| e["target"] == "tts-worker/retired" && e["actor"] == "writer"),
        "{audit:#?}"
    );
    // Forgetting what was never there (the 404) leaves no audit row.
    assert!(
        !audit.iter().any(|e| e["target"] == "tts-worker/never-seen"),
        "{audit:#?}"
    );
    // The broker no longer retains the forgotten report (a new subscriber
    // gets only the kept one).
    wait_retained_cleared(broker.port, "retired").await;
}

/// Waits until a new subscriber to tts-worker's applied topics no longer
/// gets a retained report of `instance`.
async fn wait_retained_cleared(port: u16, instance: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut sub = Subscriber::connect(port, "system/config/tts-worker/applied/+").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let topics: Vec<String> = sub.drain().into_iter().map(|m| m.topic).collect();
        sub.close().await;
        if !topics.iter().any(|t| t.ends_with(&format!("/{instance}"))) {
            return;
        }
        assert!(Instant::now() < deadline, "{topics:?}");
    }
}

#[tokio::test]
async fn at_the_cap_a_new_instance_replaces_the_longest_offline_one() {
    let broker = Broker::start();
    let s = start(
        &broker,
        &[("CONFIG_APPLIED_MAX_INSTANCES_PER_SERVICE", "2")],
    )
    .await;
    let (epoch, v) = s.desired(TTS).await;
    let send = |id: &str, status: &str| {
        (
            topic(TTS, id),
            json_bytes(&report(id, status, &epoch, Some(v))),
            true,
        )
    };
    publish_all(broker.port, vec![send("gone", "offline")]).await;
    wait_instances(&s, TTS, |b| count(b) == 1).await;
    publish_all(broker.port, vec![send("live", "applied")]).await;
    wait_instances(&s, TTS, |b| count(b) == 2).await;

    // The service is full; the new instance takes the offline one's place.
    publish_all(broker.port, vec![send("new", "applied")]).await;
    let body = wait_instances(&s, TTS, |b| {
        b["instances"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["instance_id"] == "new"))
    })
    .await;
    let ids: Vec<&str> = body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["live", "new"], "{body:#}");
    wait_metric(&s, "config_manager_applied_instances_evicted_total", 1.0).await;
    // Its retained report is cleared, so a restart does not bring it back.
    wait_retained_cleared(broker.port, "gone").await;

    // Nothing offline any more: the next new instance is dropped.
    publish_all(broker.port, vec![send("newer", "applied")]).await;
    wait_metric(
        &s,
        "config_manager_applied_reports_dropped_total{reason=\"instance_limit\"}",
        1.0,
    )
    .await;
    assert_eq!(count(&instances(&s, TTS).await), 2);
    assert_eq!(
        metric(
            &s.metrics().await,
            "config_manager_applied_instances_evicted_total"
        ),
        1.0
    );
}

/// Waits until a metric series reaches `value`.
async fn wait_metric(s: &Server, series: &str, value: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = s.metrics().await;
        if metric(&text, series) >= value {
            return;
        }
        assert!(Instant::now() < deadline, "{series} < {value}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resident memory of a process, from /proc (kB).
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_flood_of_reports_is_bounded_and_the_manager_stays_responsive() {
    let broker = Broker::start();
    let s = start(
        &broker,
        &[("CONFIG_APPLIED_MAX_INSTANCES_PER_SERVICE", "50")],
    )
    .await;
    let (epoch, v) = s.desired(TTS).await;
    let pid = s.child.as_ref().unwrap().id();
    let rss_before = rss_kb(pid);
    // 20,000 reports from 1,000 instance ids (20 rounds over the ids).
    let messages: Vec<_> = (0..20_000)
        .map(|i| {
            let id = format!("flood-{}", i % 1000);
            let r = report(&id, "applied", &epoch, Some(v));
            (topic(TTS, &id), json_bytes(&r), false)
        })
        .collect();
    let flood = tokio::spawn(publish_all(broker.port, messages));
    // During the flood the manager answers health and a read.
    let mut answered = 0;
    while !flood.is_finished() {
        let (status, health) = s.get("/health", None).await;
        assert_eq!(status, 200, "{health}\n{}", s.log());
        let body = instances(&s, TTS).await;
        assert!(count(&body) <= 50);
        answered += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    flood.await.unwrap();
    assert!(answered > 0);
    let text = {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = s.metrics().await;
            let kept = metric(&text, "config_manager_applied_reports_received_total");
            let refused = metric(
                &text,
                "config_manager_applied_reports_dropped_total{reason=\"instance_limit\"}",
            );
            if kept + refused >= 20_000.0 {
                break text;
            }
            assert!(Instant::now() < deadline, "{kept} + {refused}\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // 50 ids kept (20 reports each), the other 950 refused every time.
    assert_eq!(
        metric(&text, "config_manager_applied_reports_received_total"),
        1000.0
    );
    assert_eq!(
        metric(
            &text,
            "config_manager_applied_reports_dropped_total{reason=\"instance_limit\"}"
        ),
        19_000.0
    );
    let body = instances(&s, TTS).await;
    assert_eq!(count(&body), 50);
    assert_eq!(body["summary"]["in_sync"], 50);
    // Coalesced writes: at most one row per kept instance.
    let conn = rusqlite::Connection::open_with_flags(
        s.db_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM applied_state", [], |r| r.get(0))
            .unwrap();
        assert!(rows <= 50);
        if rows == 50 {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_after = rss_kb(pid);
    eprintln!("flood: RSS {rss_before} kB -> {rss_after} kB");
    // Bounded: well under what keeping 1,000 instances' reports x 20 would
    // take, and the process did not balloon.
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} kB to {rss_after} kB"
    );
    // Still answering writes.
    s.patch_ok(TTS, json!({"volume_percent": 103}), v).await;
}
