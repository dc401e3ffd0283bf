//! Desired vs applied in the web UI, in real headless Chromium with a real
//! broker: the sync dot of each service tab, the instances panel of a
//! service page, and a save followed to its instances ("Applied by 0 of 2"
//! → "1 of 2" → "2 of 2"). The instances are raw MQTT publishes of
//! applied-state reports (the client libraries are in `applied_clients.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "ui/harness.rs"]
mod harness;
#[path = "common/mqtt.rs"]
mod mqtt_support;
#[path = "common/ui.rs"]
mod ui_support;

use common::{Server, WRITE_TOKEN};
use harness::Browser;
use mqtt_support::Broker;
use serde_json::{json, Value};
use ui_support::{base, publish_states, tts};

async fn sync_dot(b: &Browser, service: &str) -> Value {
    b.js(
        &format!("return document.querySelector('#tab-{service} .sync-dot')?.dataset.state"),
        json!([]),
    )
    .await
}

#[tokio::test]
async fn tabs_show_sync_dots_and_the_service_page_follows_a_save_to_its_instances() {
    let broker = Broker::start();
    let s = Server::start_with_mqtt(broker.url()).await;
    let (epoch, v) = s.desired("tts-worker").await;
    publish_states(
        broker.port,
        &epoch,
        &[
            ("robot-1-tts-worker", v, "applied"),
            ("robot-2-tts-worker", v, "applied"),
        ],
    )
    .await;
    // Both reports are in before the page loads.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, body) = s
            .get("/services/tts-worker/instances", Some(WRITE_TOKEN))
            .await;
        if body["summary"]["in_sync"] == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let b = Browser::start(1280, 900).await;
    b.goto(&base(&s)).await;
    b.find("#login-token").await;
    b.type_into("#login-token", WRITE_TOKEN).await;
    b.click("#login-submit").await;
    b.wait_js(
        "the first service form",
        "return !!document.querySelector('#service-form')",
    )
    .await;
    b.click("#tab-tts-worker").await;
    b.wait_js(
        "the tts-worker form",
        "return document.querySelector('#service-title')?.textContent === 'tts-worker' && !!document.querySelector('#instances')",
    )
    .await;
    assert_eq!(sync_dot(&b, "tts-worker").await, "in_sync");
    assert_eq!(sync_dot(&b, "stt-worker").await, "no_reports");
    let rows = b
        .wait_js(
            "the instances table",
            "const r = [...document.querySelectorAll('#instances-table tbody tr')]; return r.length === 2 && r.map(t => t.dataset.instance + ':' + t.dataset.state + ':' + t.cells[2].textContent)",
        )
        .await;
    assert_eq!(
        rows,
        json!([
            format!("robot-1-tts-worker:in_sync:{v}"),
            format!("robot-2-tts-worker:in_sync:{v}")
        ])
    );
    let progress = b.text("#applied-progress").await;
    assert!(
        progress.starts_with("Applied by 2 of 2 instances."),
        "{progress}"
    );
    b.js(
        "document.querySelector('#instances').scrollIntoView()",
        json!([]),
    )
    .await;
    b.screenshot("instances-in-sync").await;

    // Save a change: the page follows it to the instances.
    b.type_into("#f-volume_percent", "61").await;
    b.wait_js(
        "save enabled",
        "return !document.querySelector('#save-button').disabled",
    )
    .await;
    b.click("#save-button").await;
    b.wait_js(
        "the saved message",
        "return document.querySelector('#save-status')?.textContent.includes('Saved')",
    )
    .await;
    let text = b
        .wait_js(
            "applied by 0 of 2",
            "const t = document.querySelector('#applied-progress')?.textContent; return t && t.startsWith('Applied by 0 of 2') && t",
        )
        .await;
    assert!(
        text.as_str().unwrap().contains("Desired: version"),
        "{text}"
    );
    let v2 = tts(&s).await["version"].as_i64().unwrap();
    assert_eq!(v2, v + 1);
    publish_states(
        broker.port,
        &epoch,
        &[("robot-1-tts-worker", v2, "applied")],
    )
    .await;
    b.wait_js(
        "applied by 1 of 2",
        "return document.querySelector('#applied-progress')?.textContent.startsWith('Applied by 1 of 2')",
    )
    .await;
    b.js(
        "document.querySelector('#instances').scrollIntoView()",
        json!([]),
    )
    .await;
    b.screenshot("instances-arriving").await;
    publish_states(
        broker.port,
        &epoch,
        &[("robot-2-tts-worker", v2, "applied")],
    )
    .await;
    b.wait_js(
        "applied by 2 of 2",
        "return document.querySelector('#applied-progress')?.textContent.startsWith('Applied by 2 of 2')",
    )
    .await;

    // A rejection shows its reason, and the tab's dot turns to rejected
    // (the list is re-read after a save and with the health poll).
    publish_states(
        broker.port,
        &epoch,
        &[("robot-2-tts-worker", v2, "rejected")],
    )
    .await;
    b.js("location.reload()", json!([])).await;
    let row = b
        .wait_js(
            "the rejected row",
            "const r = document.querySelector('#instances-table tr[data-instance=\"robot-2-tts-worker\"]'); return r && r.dataset.state === 'rejected' && r.innerText",
        )
        .await;
    assert!(row.as_str().unwrap().contains("invalid_config"), "{row}");
    b.wait_js(
        "the rejected dot",
        "return document.querySelector('#tab-tts-worker .sync-dot')?.dataset.state === 'rejected'",
    )
    .await;
    b.js(
        "document.querySelector('#instances').scrollIntoView()",
        json!([]),
    )
    .await;
    b.screenshot("instances-rejected").await;
    b.quit().await;
}
