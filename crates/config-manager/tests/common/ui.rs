//! REST and MQTT helpers of the web UI tests (`ui*.rs`): the page's
//! address, tts-worker's config read with the write token, applied-state
//! reports and their publishing.
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

/// An applied-state report of tts-worker's `instance` (a rejected one says
/// `invalid_config` for the next version).
pub fn report(instance: &str, epoch: &str, version: i64, status: &str) -> Vec<u8> {
    report_with(instance, epoch, version, status, &json!({}))
}

/// [`report`] with the members of `extra` set over it (the contract's
/// optional members, another client or reason).
pub fn report_with(
    instance: &str,
    epoch: &str,
    version: i64,
    status: &str,
    extra: &Value,
) -> Vec<u8> {
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
    for (k, x) in extra.as_object().into_iter().flatten() {
        v[k] = x.clone();
    }
    v.to_string().into_bytes()
}

/// Publishes a [`report`] of tts-worker per `(instance, version, status)`
/// with [`publish_reports`].
pub async fn publish_states(port: u16, epoch: &str, states: &[(&str, i64, &str)]) {
    let reports = states
        .iter()
        .map(|&(instance, version, status)| (instance, report(instance, epoch, version, status)))
        .collect();
    publish_reports(port, reports).await;
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
