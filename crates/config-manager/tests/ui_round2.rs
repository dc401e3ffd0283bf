//! Web UI, round 2 (issue 26), in real headless Chromium with a real broker:
//! what the operator sees is read from computed styles, sizes and positions,
//! not only the DOM. Each test failed before its fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "ui/harness.rs"]
mod harness;
#[path = "common/mqtt.rs"]
mod mqtt_support;
#[path = "common/ui.rs"]
mod ui_support;

use common::{break_database, Server, WRITE_TOKEN};
use harness::Browser;
use mqtt_support::Broker;
use serde_json::json;
use ui_support::{base, publish_states};

/// Contrast ratio (WCAG 2) of an element's text on the first non-transparent
/// background behind it, for every element `css` matches: the lowest.
const CONTRAST_JS: &str = r#"
const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const bg = (el) => {
  for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
const ratio = (el) => {
  const a = lum(rgb(getComputedStyle(el).color).slice(0, 3)), b = lum(bg(el));
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
};
const els = [...document.querySelectorAll(arguments[0])].filter((e) => e.offsetParent !== null);
if (!els.length) return null;
return Math.min(...els.map(ratio));
"#;

async fn contrast(b: &Browser, css: &str) -> f64 {
    b.js(CONTRAST_JS, json!([css]))
        .await
        .as_f64()
        .unwrap_or_else(|| panic!("nothing visible matches {css}"))
}

/// Issue 26, points 1 and 10: typed search text was white on a white box,
/// and there was no dark mode. Text keeps 4.5:1 in both schemes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_readable_in_light_and_dark_mode() {
    let s = Server::start().await;
    let b = Browser::start(1280, 800).await;
    b.login(&base(&s), WRITE_TOKEN).await;
    b.open_service("tts-worker").await;
    b.type_into("#search-input", "volume").await;
    for scheme in ["light", "dark"] {
        b.emulate_color_scheme(scheme).await;
        let dark = b
            .js(
                "return matchMedia('(prefers-color-scheme: dark)').matches",
                json!([]),
            )
            .await;
        assert_eq!(dark, json!(scheme == "dark"));
        for css in [
            "#search-input",
            "#service-title",
            ".field-label label",
            ".field-desc",
            ".field-input input[type=number]",
            "#tabs [role=tab]",
            "#save-button",
            ".topbar .brand",
        ] {
            let ratio = contrast(&b, css).await;
            assert!(ratio >= 4.5, "{scheme}: {css} has contrast {ratio:.2}");
        }
    }
    let bg = b
        .js(
            "return getComputedStyle(document.body).backgroundColor",
            json!([]),
        )
        .await;
    assert_ne!(bg, "rgb(255, 255, 255)", "dark mode changes the page");
    b.quit().await;
}

/// Issue 26, points 2 and 9: after Save the place the operator clicked says
/// whether the instances took the change, in words, live; the header names
/// instances that are not in sync; focus stays at the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_shows_the_change_arriving_per_instance_at_the_save_button() {
    let broker = Broker::start();
    let s = Server::start_with_mqtt(broker.url()).await;
    let (epoch, v) = s.desired("tts-worker").await;
    publish_states(
        broker.port,
        &epoch,
        &[("robot-1", v, "applied"), ("robot-2", v, "applied")],
    )
    .await;
    let b = Browser::start(1280, 800).await;
    b.login(&base(&s), WRITE_TOKEN).await;
    b.open_service("tts-worker").await;
    b.wait_js(
        "the header's instance line",
        "return document.querySelector('#instances-summary')?.textContent.includes('All 2 instances in sync')",
    )
    .await;
    b.type_into("#f-volume_percent", "61").await;
    b.click("#save-button").await;
    let v2 = v + 1;
    b.wait_js(
        "no instance has confirmed yet",
        &format!("return document.querySelector('#save-status')?.textContent.startsWith('Saved version {v2} · applied by 0 of 2')"),
    )
    .await;
    publish_states(
        broker.port,
        &epoch,
        &[("robot-1", v2, "applied"), ("robot-2", v, "rejected")],
    )
    .await;
    let status = b
        .wait_js(
            "applied by 1 of 2, robot-2 rejected",
            "const t = document.querySelector('#save-status')?.textContent; return t && t.includes('applied by 1 of 2') && t.includes('robot-2 rejected: invalid_config') && t",
        )
        .await;
    assert_eq!(
        status,
        format!("Saved version {v2} · applied by 1 of 2 · robot-2 rejected: invalid_config")
    );
    // In view (the sticky bar at the bottom of the window), announced, red.
    let seen = b
        .js(
            "const s = document.querySelector('#save-status'); const r = s.getBoundingClientRect(); return [r.top >= 0 && r.bottom <= innerHeight, s.getAttribute('aria-live') || s.getAttribute('role'), s.className, document.activeElement === s]",
            json!([]),
        )
        .await;
    assert_eq!(
        seen,
        json!([true, "polite", "save-status status-error", true])
    );
    let head = b.text("#instances-summary").await;
    assert!(head.contains("robot-2 rejected (invalid_config)"), "{head}");
    b.screenshot("save-arrival").await;
    b.quit().await;
}

/// Issue 26, point 2: with no broker, the save says nobody can confirm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_a_save_says_no_instance_can_confirm() {
    let s = Server::start().await;
    let b = Browser::start(1280, 800).await;
    b.login(&base(&s), WRITE_TOKEN).await;
    b.open_service("tts-worker").await;
    b.type_into("#f-volume_percent", "62").await;
    b.click("#save-button").await;
    b.wait_js(
        "no broker",
        "return document.querySelector('#save-status')?.textContent.endsWith('no broker: no instance can confirm')",
    )
    .await;
    b.quit().await;
}

/// Issue 26, point 3: on a phone, once instances report, the table made the
/// page 545 px wide in a 390 px viewport, the sticky Save bar left the
/// screen and a tap on Save hit the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_layout_keeps_save_on_screen_with_instances_reporting() {
    let broker = Broker::start();
    let s = Server::start_with_mqtt(broker.url()).await;
    let (epoch, v) = s.desired("tts-worker").await;
    let long = "robot-with-a-rather-long-instance-name-7";
    publish_states(
        broker.port,
        &epoch,
        &[(long, v, "applied"), ("robot-2", v, "rejected")],
    )
    .await;
    let b = Browser::start(390, 844).await;
    b.set_viewport(390, 844).await;
    b.login(&base(&s), WRITE_TOKEN).await;
    b.open_service("tts-worker").await;
    b.wait_js(
        "the instances table",
        "return document.querySelectorAll('#instances-table tbody tr').length === 2",
    )
    .await;
    let width = b
        .js(
            "return [document.documentElement.scrollWidth, innerWidth]",
            json!([]),
        )
        .await;
    assert!(
        width[0].as_u64() <= width[1].as_u64(),
        "the page is wider than the window: {width}"
    );
    b.type_into("#f-volume_percent", "63").await;
    // The Save button is on screen and is what a tap at its centre hits.
    let hit = b
        .js(
            "const s = document.querySelector('#save-button'); const r = s.getBoundingClientRect(); const x = r.left + r.width / 2, y = r.top + r.height / 2; return [x >= 0 && x <= innerWidth && y >= 0 && y <= innerHeight, document.elementFromPoint(x, y) === s]",
            json!([]),
        )
        .await;
    assert_eq!(hit, json!([true, true]));
    b.screenshot("phone-instances").await;
    b.quit().await;
}

/// Issue 26, point 4: a save refused because the manager turned read-only
/// was silent (the message was replaced by "1 unsaved change" at once) and
/// Save stayed enabled under the red banner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_refused_in_read_only_mode_says_so_and_disables_save() {
    let s = Server::start_with(vec![("CONFIG_MONITOR_INTERVAL_MS".into(), "100".into())]).await;
    let b = Browser::start(1280, 800).await;
    b.login(&base(&s), WRITE_TOKEN).await;
    b.open_service("tts-worker").await;
    b.type_into("#f-volume_percent", "64").await;
    // The database breaks while the edit is open.
    break_database(&s).await;
    b.click("#save-button").await;
    let status = b
        .wait_js(
            "the refusal",
            "const t = document.querySelector('#save-status')?.textContent; return t && t.startsWith('Not saved') && t",
        )
        .await;
    // It stays (the form's refresh used to replace it at once) and Save is off.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(b.text("#save-status").await, status.as_str().unwrap());
    assert_eq!(
        b.js(
            "return [document.querySelector('#save-button').disabled, document.querySelector('#f-volume_percent').value]",
            json!([])
        )
        .await,
        json!([true, "64"]),
        "Save is off and the edit is kept"
    );
    b.quit().await;
}
