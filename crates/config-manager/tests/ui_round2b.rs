//! Web UI, round 2 continued (issue 26, points 5 to 8 and 10, and what the
//! adoption work reports), in real headless Chromium with a real broker.
//! What the operator sees is read from computed styles, sizes and positions.
//! Each test failed before its fix.
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
use serde_json::json;
use ui_support::{base, publish_reports, publish_states, report_with, tts};

/// Whether the element is rendered (takes space on the page).
async fn shown(b: &Browser, css: &str) -> bool {
    b.js(
        "const e = document.querySelector(arguments[0]); return !!e && e.getClientRects().length > 0",
        json!([css]),
    )
    .await
        == true
}

/// Issue 26, point 5: the green tab dot described the manager's own data;
/// with no worker running every tab was green. The indicator now says what
/// the instances run, by shape, colour and words, and no report is never
/// green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tab_indicator_describes_the_instances_never_green_without_reports() {
    let broker = Broker::start();
    let s = Server::start_with_mqtt(broker.url()).await;
    let (epoch, v) = s.desired("tts-worker").await;
    publish_states(broker.port, &epoch, &[("robot-1", v, "applied")]).await;
    let b = Browser::start(1280, 800).await;
    b.login(&base(&s), WRITE_TOKEN).await;
    b.wait_js(
        "tts-worker in sync",
        "return document.querySelector('#tab-tts-worker .sync-dot')?.dataset.state === 'in_sync'",
    )
    .await;
    // Every element of every tab: its colours, glyph and words.
    let tabs = b
        .js(
            "const green = (c) => /rgba?\\(26, 127, 55/.test(c); \
             return [...document.querySelectorAll('#tabs [role=tab]')].map(t => { \
               const els = [...t.querySelectorAll('*')].filter(e => e.getClientRects().length); \
               const ind = t.querySelector('.sync-dot'); const r = ind.getBoundingClientRect(); \
               return {service: t.dataset.service, \
                 green: els.some(e => green(getComputedStyle(e).backgroundColor) || green(getComputedStyle(e).borderColor)), \
                 glyph: ind.textContent, size: [Math.round(r.width), Math.round(r.height)], \
                 title: ind.title, sr: t.querySelector('.sync-state').textContent}; })",
            json!([]),
        )
        .await;
    let tabs = tabs.as_array().unwrap();
    assert_eq!(tabs.len(), 6, "{tabs:?}");
    for t in tabs {
        let service = t["service"].as_str().unwrap();
        assert!(t["size"][0].as_i64().unwrap() >= 12, "{t}");
        if service == "tts-worker" {
            assert_eq!(t["green"], true, "{t}");
            assert_eq!(t["glyph"], "✓");
            assert_eq!(t["title"], "tts-worker: instances in sync (1 of 1 applied)");
            assert_eq!(t["sr"], ", instances in sync (1 of 1 applied)");
        } else {
            assert_eq!(t["green"], false, "no report is never green: {t}");
            assert_eq!(t["glyph"], "–");
            assert_eq!(
                t["title"].as_str().unwrap(),
                format!("{service}: no instance has reported")
            );
            assert_eq!(t["sr"], ", no instance has reported");
        }
    }
    // A rejection changes shape and colour, and says so.
    publish_states(broker.port, &epoch, &[("robot-1", v, "rejected")]).await;
    b.js("window.dispatchEvent(new Event('focus'))", json!([]))
        .await;
    let rejected = b
        .wait_js(
            "the rejected indicator",
            "const d = document.querySelector('#tab-tts-worker .sync-dot'); \
             return d.dataset.state === 'rejected' && [d.textContent, getComputedStyle(d).backgroundColor, d.title]",
        )
        .await;
    assert_eq!(rejected[0], "✕");
    assert_eq!(rejected[1], "rgb(179, 20, 44)");
    assert!(
        rejected[2].as_str().unwrap().contains("rejected"),
        "{rejected}"
    );
    b.screenshot("tabs-instances").await;
    b.quit().await;
}

/// Issue 26, point 6: restoring asked without saying what changes, and an
/// entry identical to the current value said "Restored". Point 7: history
/// opened on the rows written at first start and showed keys only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_shows_what_changes_and_an_identical_one_writes_nothing() {
    let s = Server::start().await;
    let v_changed = s
        .patch_latest("tts-worker", json!({"volume_percent": 70}))
        .await;
    let b = Browser::start(1280, 800).await;
    b.login(&base(&s), WRITE_TOKEN).await;
    b.go("#/history?service=tts-worker").await;
    b.wait_js(
        "the change in history",
        "return document.querySelector('#history-rows tr[data-key=volume_percent]')",
    )
    .await;
    // No row written at first start; the info line says they are hidden.
    let rows = b
        .js(
            "return [...document.querySelectorAll('#history-rows tr')].map(r => r.innerText)",
            json!([]),
        )
        .await;
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert!(
        b.text("#history-info")
            .await
            .contains("written at first start hidden"),
        "seed rows are hidden by default"
    );
    // The field's title, the key in muted text.
    let setting = b
        .js(
            "const c = document.querySelector('#history-rows tr[data-key=volume_percent] td.setting'); \
             return [c.querySelector('.field-title')?.textContent, c.querySelector('.key')?.textContent, getComputedStyle(c.querySelector('.key')).color === getComputedStyle(document.querySelector('.muted')).color]",
            json!([]),
        )
        .await;
    assert_eq!(setting, json!(["Volume (%)", "volume_percent", true]));
    // Restore: the dialog shows the change before anything is written.
    b.click("#history-rows tr[data-key=volume_percent] td:last-child button")
        .await;
    let text = b.dialog_text().await;
    assert!(text.contains("1 setting will change"), "{text}");
    let row = b
        .js(
            "return [...document.querySelectorAll('#change-table tbody tr')].map(r => [...r.children].map(c => c.innerText.trim()))",
            json!([]),
        )
        .await;
    assert_eq!(row, json!([["Volume (%) volume_percent", "70", "100"]]));
    assert_eq!(
        s.version("tts-worker").await,
        v_changed,
        "nothing written yet"
    );
    b.screenshot("restore-diff").await;
    b.click("#dialog [data-action=yes]").await;
    b.wait_js(
        "the restore",
        "return document.querySelector('#toast').textContent.includes('Restored')",
    )
    .await;
    assert_eq!(tts(&s).await["config"]["volume_percent"], 100);
    let v_restored = s.version("tts-worker").await;
    assert_eq!(v_restored, v_changed + 1);
    // The same entry again: identical to the current value.
    b.wait_js(
        "the restore row in history",
        "return document.querySelectorAll('#history-rows tr').length === 2",
    )
    .await;
    b.click("#history-rows tr[data-key=volume_percent]:last-child td:last-child button")
        .await;
    let text = b.dialog_text().await;
    assert!(
        text.contains("Nothing to restore: identical to the current configuration"),
        "{text}"
    );
    assert!(!shown(&b, "#dialog [data-action=yes]").await);
    b.click("#dialog [data-action=close]").await;
    assert_eq!(s.version("tts-worker").await, v_restored, "nothing written");
    b.quit().await;
}

/// Issue 26, point 6: activating a profile asked without saying what
/// changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activating_a_profile_shows_what_changes_first() {
    let s = Server::start().await;
    let (status, body) = s.post("/profiles", &json!({"profile_name": "quiet"})).await;
    assert_eq!(status, 201, "{body}");
    let v = s
        .patch_latest(
            "tts-worker",
            json!({"volume_percent": 55, "tts_concurrency": 2}),
        )
        .await;
    let b = Browser::start(1280, 800).await;
    b.login(&base(&s), WRITE_TOKEN).await;
    b.go("#/settings").await;
    b.click("#profile-rows [data-action=activate]").await;
    let text = b.dialog_text().await;
    assert!(text.contains("2 settings will change"), "{text}");
    let rows = b
        .js(
            "return [...document.querySelectorAll('#change-table tbody tr')].map(r => [...r.children].map(c => c.innerText.trim()))",
            json!([]),
        )
        .await;
    assert_eq!(
        rows,
        json!([
            ["tts-worker", "Volume (%) volume_percent", "55", "100"],
            ["tts-worker", "Synthesis workers tts_concurrency", "2", "1"]
        ])
    );
    b.screenshot("profile-diff").await;
    b.click("#dialog [data-action=cancel]").await;
    assert_eq!(s.version("tts-worker").await, v, "cancel writes nothing");
    b.quit().await;
}

/// Issue 26, point 7: secret changes were left out of the version
/// comparison, a service with one version compared v1 against v1, history
/// showed no loading text, and old → new was off-screen on a phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_compares_versions_with_secrets_and_fits_a_phone() {
    let s = Server::start().await;
    s.patch_latest(
        "tts-worker",
        json!({"eleven_api_key": "sk-history-secret-0042"}),
    )
    .await;
    let last = s.patch_latest("tts-worker", json!({"online_announce_text": "a rather long start-up phrase that would push the old and new values off a phone screen"}),
    )
    .await;
    let b = Browser::start(390, 844).await;
    b.set_viewport(390, 844).await;
    b.login(&base(&s), WRITE_TOKEN).await;
    // "Loading…" while history loads (the history call held back 1 s).
    b.js(
        "const f = window.fetch; window.fetch = (u, o) => String(u).includes('/history?') \
           ? new Promise(r => setTimeout(r, 1000)).then(() => f(u, o)) : f(u, o);",
        json!([]),
    )
    .await;
    b.go("#/history?service=tts-worker").await;
    let loading = b
        .wait_js(
            "the loading text",
            "return document.querySelector('#history-info')?.textContent",
        )
        .await;
    assert_eq!(loading, "Loading history…");
    b.wait_js(
        "the history rows",
        "return document.querySelectorAll('#history-rows tr').length === 2",
    )
    .await;
    // The secret's change says "changed", never a value or the mask.
    let secret = b.text("#history-rows tr[data-key=eleven_api_key]").await;
    assert!(secret.contains("changed"), "{secret}");
    assert!(
        !secret.contains("sk-history") && !secret.contains("****"),
        "{secret}"
    );
    // The comparison opens on the previous version against the newest and
    // shows the secret as changed between older versions.
    b.wait_js(
        "the comparison",
        &format!("return document.querySelector('#diff-table caption')?.textContent === 'tts-worker: version {} (left) and {last} (right)'", last - 1),
    )
    .await;
    b.js(
        &format!("const a = document.querySelector('#diff-a'); a.value = '{}'; a.dispatchEvent(new Event('change'))", last - 2),
        json!([]),
    )
    .await;
    let diff = b
        .wait_js(
            "the secret in the comparison",
            "const r = document.querySelector('#diff-table tr[data-key=eleven_api_key]'); return r && r.innerText",
        )
        .await;
    assert!(diff.as_str().unwrap().contains("changed"), "{diff}");
    assert!(!diff.as_str().unwrap().contains("sk-history"), "{diff}");
    // The page fits the phone; old → new is on screen.
    let fit = b
        .js(
            "const c = document.querySelector('#history-rows tr[data-key=online_announce_text] td.change').getBoundingClientRect(); \
             return [document.documentElement.scrollWidth, innerWidth, Math.round(c.right), Math.round(c.left)]",
            json!([]),
        )
        .await;
    let (sw, iw) = (fit[0].as_i64().unwrap(), fit[1].as_i64().unwrap());
    assert!(sw <= iw, "the page is wider than the phone: {fit}");
    assert!(
        fit[2].as_i64().unwrap() <= iw && fit[3].as_i64().unwrap() >= 0,
        "old → new off screen: {fit}"
    );
    b.screenshot("history-phone").await;
    // A service with one version: nothing to compare, said in words.
    b.js(
        "const s = document.querySelector('#diff-service'); s.value = 'router'; s.dispatchEvent(new Event('change'))",
        json!([]),
    )
    .await;
    let single = b
        .wait_js(
            "one version",
            "return document.querySelector('#diff-single')?.textContent",
        )
        .await;
    assert_eq!(
        single,
        "router has one version so far (v1): there is nothing to compare it with."
    );
    b.quit().await;
}

/// Issue 26, point 8: forms were flat lists and ElevenLabs fields showed
/// while the provider was piper. Sections come from `x-group`; a field whose
/// `x-show-when` is false is hidden and still keeps and saves its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_has_sections_and_hides_fields_of_another_provider() {
    let s = Server::start().await;
    let b = Browser::start(1280, 800).await;
    b.login(&base(&s), WRITE_TOKEN).await;
    b.open_service("tts-worker").await;
    b.click("#advanced-toggle").await;
    let legends = b
        .js(
            "return [...document.querySelectorAll('#service-form fieldset.section')].filter(f => f.getClientRects().length).map(f => f.querySelector('legend').textContent)",
            json!([]),
        )
        .await;
    assert_eq!(
        legends,
        json!(["Voice", "Wake word", "Streaming", "General"]),
        "ElevenLabs has no visible field while the provider is piper"
    );
    // The legend is above its section's first field, in bold.
    let head = b
        .js(
            "const f = document.querySelector('fieldset.section'); const l = f.querySelector('legend').getBoundingClientRect(); \
             const r = f.querySelector('.field').getBoundingClientRect(); return [l.bottom <= r.top + 1, Number(getComputedStyle(f.querySelector('legend')).fontWeight) >= 600]",
            json!([]),
        )
        .await;
    assert_eq!(head, json!([true, true]));
    assert!(!shown(&b, "#field-eleven_voice_id").await);
    assert!(shown(&b, "#field-piper_voice").await);
    // Choosing elevenlabs shows its fields (and hides piper's), live.
    let choose = |p: &str| {
        format!("const s = document.querySelector('#f-tts_provider'); s.value = JSON.stringify({}); s.dispatchEvent(new Event('change'))", json!(p))
    };
    b.js(&choose("elevenlabs"), json!([])).await;
    assert!(shown(&b, "#field-eleven_voice_id").await);
    assert!(!shown(&b, "#field-piper_voice").await);
    assert!(b
        .text("#field-eleven_voice_id .field-cond")
        .await
        .contains("Applies when TTS provider is elevenlabs"));
    b.type_into("#f-eleven_voice_id", "voice-kept-42").await;
    b.screenshot("sections").await;
    // Back to piper: the field hides, keeps its value, and is saved as-is.
    b.js(&choose("piper"), json!([])).await;
    assert!(!shown(&b, "#field-eleven_voice_id").await);
    b.click("#save-button").await;
    b.wait_js(
        "saved",
        "return document.querySelector('#save-status')?.textContent.startsWith('Saved version')",
    )
    .await;
    let config = tts(&s).await["config"].clone();
    assert_eq!(config["eleven_voice_id"], "voice-kept-42");
    assert_eq!(config["tts_provider"], "piper");
    b.quit().await;
}

/// What the adoption work reports, where the operator looks: a field
/// pinned by an instance's environment (header, instances table and the
/// field row), a version rolled back because the program crashed, the
/// fields an `invalid_config` rejection names (next to the field rows), and
/// the runner of each instance in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_fields_crash_rollbacks_failing_fields_and_runners_are_shown() {
    let broker = Broker::start();
    let s = Server::start_with_mqtt(broker.url()).await;
    let (epoch, v) = s.desired("tts-worker").await;
    // The adoption members of the contract (decisions-adoption 4): the
    // runner, pinned fields, a crash rollback, the fields a rejection names.
    let agent = json!({"name": "config-agent", "version": "0.1.0"});
    let reports = [
        (
            "robot-2",
            "applied",
            json!({"client": agent, "pinned": {"tts_aggregate_debounce_ms": "TTS_AGGREGATE_DEBOUNCE_MS"}}),
        ),
        (
            "robot-3",
            "rejected",
            json!({"client": agent, "reason": "crashed"}),
        ),
        (
            "robot-4",
            "rejected",
            json!({"client": {"name": "tars-config-client", "version": "0.3.0"}, "fields": ["volume_percent"]}),
        ),
    ];
    publish_reports(
        broker.port,
        reports
            .iter()
            .map(|(instance, status, extra)| {
                (*instance, report_with(instance, &epoch, v, status, extra))
            })
            .collect(),
    )
    .await;
    let b = Browser::start(1280, 800).await;
    b.login(&base(&s), WRITE_TOKEN).await;
    b.open_service("tts-worker").await;
    b.click("#advanced-toggle").await;
    let notes = b
        .wait_js(
            "the adoption notes in the header",
            "const l = document.querySelector('#adoption-notes'); return l && l.children.length === 3 && [...l.children].map(li => li.textContent)",
        )
        .await;
    assert_eq!(
        notes,
        json!([
            "Aggregation debounce (ms) is pinned on robot-2 by TTS_AGGREGATE_DEBOUNCE_MS",
            format!("robot-3 rolled back version {}: the program crashed", v + 1),
            "robot-4 rejected Volume (%)",
        ])
    );
    // The instances table: runner in words, the pin and the crash.
    let table = b
        .wait_js(
            "the instances table",
            "const rows = [...document.querySelectorAll('#instances-table tbody tr')]; return rows.length === 3 && rows.map(r => [r.dataset.instance, r.querySelector('.rejection').textContent, r.querySelector('.pinned').textContent, r.querySelector('.runner').textContent])",
        )
        .await;
    assert_eq!(
        table,
        json!([
            [
                "robot-2",
                "",
                "Aggregation debounce (ms) by TTS_AGGREGATE_DEBOUNCE_MS",
                "config-agent (launcher)"
            ],
            [
                "robot-3",
                format!("rolled back version {}: the program crashed", v + 1),
                "",
                "config-agent (launcher)"
            ],
            [
                "robot-4",
                format!("invalid_config (version {}): Volume (%)", v + 1),
                "",
                "Python library"
            ],
        ])
    );
    // On the field rows, visible next to the input.
    let pinned = b
        .text("#field-tts_aggregate_debounce_ms .instance-note")
        .await;
    assert_eq!(
        pinned,
        "pinned on robot-2 by TTS_AGGREGATE_DEBOUNCE_MS: that instance keeps its own value"
    );
    let failed = b.text("#field-volume_percent .instance-note").await;
    assert_eq!(failed, "rejected by robot-4 (invalid_config)");
    let near = b
        .js(
            "const n = document.querySelector('#field-volume_percent .instance-note').getBoundingClientRect(); \
             const i = document.querySelector('#f-volume_percent').getBoundingClientRect(); \
             return [n.width > 0, Math.abs(n.left - i.left) < 2, n.top >= i.bottom, document.querySelector('#f-volume_percent').getAttribute('aria-describedby').includes('n-volume_percent')]",
            json!([]),
        )
        .await;
    assert_eq!(near, json!([true, true, true, true]));
    b.js(
        "document.querySelector('#instances').scrollIntoView()",
        json!([]),
    )
    .await;
    b.screenshot("adoption").await;
    b.quit().await;
}

/// Issue 26, point 10: a fresh load put a 401 in the console (the page
/// probes /ui/session). Without a session the answer is now a 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_load_has_no_error_status_in_the_console() {
    let s = Server::start().await;
    let b = Browser::start(1280, 800).await;
    b.goto(&base(&s)).await;
    b.find("#login-token").await;
    let statuses = b
        .js(
            "return performance.getEntriesByType('resource').filter(e => e.name.includes('/ui/') || e.name.includes('/api/')).map(e => [new URL(e.name).pathname, e.responseStatus])",
            json!([]),
        )
        .await;
    let list = statuses.as_array().unwrap();
    assert!(
        list.iter().any(|e| e[0] == "/ui/session"),
        "the page asks for its session: {statuses}"
    );
    for e in list {
        let code = e[1].as_i64().expect("Chromium reports responseStatus");
        assert!(code < 400, "an error status on a fresh load: {statuses}");
    }
    b.quit().await;
}
