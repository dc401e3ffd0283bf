//! REST helpers of the web UI tests (`ui.rs`, `ui_http.rs`): the page's
//! address and tts-worker's config read and patched with the write token.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};

use crate::common::{Server, WRITE_TOKEN};

pub fn base(s: &Server) -> String {
    format!("http://127.0.0.1:{}/", s.port)
}

pub async fn tts(s: &Server) -> Value {
    let (status, body) = s.get("/services/tts-worker", Some(WRITE_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    body
}

pub async fn patch_tts(s: &Server, config: Value) -> i64 {
    let v = s.version("tts-worker").await;
    let (status, body) = s
        .send(
            "PATCH",
            "/services/tts-worker",
            Some(WRITE_TOKEN),
            &json!({"config": config, "version": v}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["version"].as_i64().unwrap()
}

/// An applied-state report of tts-worker's `instance` (a rejected one says
/// `invalid_config` for the next version).
pub fn report(instance: &str, epoch: &str, version: i64, status: &str) -> Vec<u8> {
    let mut v = json!({
        "service": "tts-worker",
        "instance_id": instance,
        "config_epoch": epoch,
        "version": version,
        "status": status,
        "reason": null,
        "rejected_version": null,
        "applied_at": "2026-01-15T09:30:00.120Z",
        "client": {"name": "ui-test", "version": "1.0.0"},
    });
    if status == "rejected" {
        v["reason"] = json!("invalid_config");
        v["rejected_version"] = json!(version + 1);
    }
    v.to_string().into_bytes()
}

/// Publishes retained QoS 1 reports of tts-worker's instances and waits for
/// the broker's acknowledgements.
pub async fn publish_reports(port: u16, reports: Vec<(&str, Vec<u8>)>) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let id = format!("ui-pub-{}", uuid::Uuid::new_v4().simple());
    let (client, mut eventloop) = AsyncClient::new(MqttOptions::new(id, "127.0.0.1", port), 16);
    let n = reports.len();
    for (instance, payload) in reports {
        client
            .publish(
                format!("system/config/tts-worker/applied/{instance}"),
                QoS::AtLeastOnce,
                true,
                payload,
            )
            .await
            .unwrap();
    }
    let mut acked = 0;
    while acked < n {
        if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.unwrap() {
            acked += 1;
        }
    }
}

/// Overwrites the database and its WAL with noise and waits until health
/// says read-only fallback.
pub async fn break_database(s: &Server) {
    let db = s.db_path();
    for path in [db.clone(), db.with_extension("db-wal")] {
        if let Ok(meta) = std::fs::metadata(&path) {
            let len = meta.len().max(4096) as usize;
            std::fs::write(
                &path,
                (0..len)
                    .map(|i| (i * 7919 % 251) as u8)
                    .collect::<Vec<u8>>(),
            )
            .unwrap();
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, h) = s.get("/health", None).await;
        if h["operational_mode"] == "read-only-fallback" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no fallback: {h}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
