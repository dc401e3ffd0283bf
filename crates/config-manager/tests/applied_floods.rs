//! Applied-state floods (issue 23, finding 4), against the real binary and a
//! mosquitto started here: thousands of retained reports with new ids, and
//! retained reports larger than the subscriber reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/mqtt.rs"]
mod mqtt_support;

use std::time::{Duration, Instant};

use common::{metric, Server};
use mqtt_support::{Broker, Subscriber};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn topic(instance: &str) -> String {
    format!("system/config/tts-worker/applied/{instance}")
}

/// An `offline` report of `instance` running the desired version.
fn offline(instance: &str, epoch: &str, version: i64) -> Vec<u8> {
    json!({
        "service": "tts-worker",
        "instance_id": instance,
        "config_epoch": epoch,
        "version": version,
        "status": "offline",
        "reason": null,
        "rejected_version": null,
        "applied_at": "2026-01-15T09:30:00.120Z",
        "client": {"name": "raw-test", "version": "1.0.0"},
    })
    .to_string()
    .into_bytes()
}

/// Publishes every `(topic, payload)` retained with QoS 1 and returns once
/// the broker acknowledged all of them.
async fn publish_retained(port: u16, messages: Vec<(String, Vec<u8>)>) {
    let id = format!("flood-pub-{}", uuid::Uuid::new_v4().simple());
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_max_packet_size(16 << 20, 16 << 20);
    opts.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let total = messages.len();
    let sender = tokio::spawn(async move {
        for (t, p) in messages {
            client.publish(t, QoS::AtLeastOnce, true, p).await.unwrap();
        }
        client
    });
    let mut acked = 0;
    while acked < total {
        match tokio::time::timeout(WAIT, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("publisher connection failed: {e}"),
            Err(_) => panic!("{acked}/{total} acknowledged"),
        }
    }
    let client = sender.await.unwrap();
    client.disconnect().await.unwrap();
    while !matches!(
        eventloop.poll().await,
        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)
    ) {}
}

async fn wait_metric(s: &Server, series: &str, at_least: f64) {
    let deadline = Instant::now() + WAIT;
    while metric(&s.metrics().await, series) < at_least {
        assert!(
            Instant::now() < deadline,
            "{series} < {at_least}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The retained reports of tts-worker the broker holds now.
async fn retained_reports(port: u16) -> usize {
    let mut sub = Subscriber::connect(port, "system/config/tts-worker/applied/+").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = sub.drain().len();
    sub.close().await;
    n
}

/// 1,000 retained `offline` reports with new ids at a cap of 16 per
/// service: 984 evictions. They wrote one INFO line each, and clears beyond
/// the MQTT queue's 64 places were dropped with a warning, leaving those
/// retained reports on the broker. Now the evictions are logged as one line
/// per window and every clear is retried until queued.
#[tokio::test]
async fn a_flood_of_new_ids_is_logged_in_aggregate_and_every_eviction_is_cleared() {
    let broker = Broker::start();
    let s = Server::start_with(vec![
        ("MQTT_URL".into(), broker.url()),
        (
            "CONFIG_APPLIED_MAX_INSTANCES_PER_SERVICE".into(),
            "16".into(),
        ),
    ])
    .await;
    let (epoch, v) = s.desired("tts-worker").await;
    let messages = (0..1000)
        .map(|i| {
            let id = format!("gone-{i}");
            (topic(&id), offline(&id, &epoch, v))
        })
        .collect();
    publish_retained(broker.port, messages).await;
    wait_metric(&s, "config_manager_applied_instances_evicted_total", 984.0).await;

    // Every evicted instance's retained report is cleared from the broker.
    let deadline = Instant::now() + WAIT;
    loop {
        let left = retained_reports(broker.port).await;
        if left == 16 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} retained reports left\n{}",
            s.log()
        );
    }
    // The window's line comes at the end of the window.
    let deadline = Instant::now() + WAIT;
    while !s.log().contains("made room") {
        assert!(Instant::now() < deadline, "no eviction line\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = s.log();
    let lines = log.matches("made room").count();
    assert!(
        (1..=12).contains(&lines),
        "evictions are logged per window, not per report: {lines} lines"
    );
    assert!(!log.contains("could not clear"), "{log}");
}

/// A retained report over the subscriber's incoming limit (4 MiB) drops
/// its connection at every subscribe. The backoff used to be reset at every
/// ConnAck, so it reconnected about twice a second forever. Now it is
/// counted (`oversized_packet`) and the reconnects back off; a report over
/// 16 KiB but under the limit is read, dropped as `too_large` and the
/// connection stays up.
#[tokio::test]
async fn oversized_retained_reports_are_counted_not_a_reconnect_loop() {
    let broker = Broker::start();
    let s = Server::start_with_mqtt(broker.url()).await;
    publish_retained(broker.port, vec![(topic("big"), vec![b'x'; 300 * 1024])]).await;
    wait_metric(
        &s,
        "config_manager_applied_reports_dropped_total{reason=\"too_large\"}",
        1.0,
    )
    .await;
    assert_eq!(
        metric(
            &s.metrics().await,
            "config_manager_applied_reports_dropped_total{reason=\"oversized_packet\"}"
        ),
        0.0,
        "a 300 KiB report does not break the connection"
    );

    publish_retained(broker.port, vec![(topic("huge"), vec![b'x'; 5 << 20])]).await;
    let series = "config_manager_applied_reports_dropped_total{reason=\"oversized_packet\"}";
    wait_metric(&s, series, 1.0).await;
    let first = metric(&s.metrics().await, series);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let reconnects = metric(&s.metrics().await, series) - first;
    // Backoff 0.5, 1, 2, 4 s: at most four more in 8 s (it was ~16).
    assert!(
        reconnects <= 5.0,
        "{reconnects} reconnects in 8 s\n{}",
        s.log()
    );
    let (status, _) = s.get("/health", None).await;
    assert_eq!(status, 200);
}
