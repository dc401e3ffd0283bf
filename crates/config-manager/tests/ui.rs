//! The web UI in real headless Chromium (driven through chromedriver). Its
//! session and CSRF rules and the page's headers, over plain HTTP, are in
//! `ui_http.rs`.
//!
//! One browser session walks through every screen (each session costs about
//! a second and 1 GB of RAM), checking what the operator sees and, over
//! REST, what the server stored. Set `CM_UI_SCREENSHOTS=<dir>` to save the
//! screenshots (scripts/ui-screenshots.sh refreshes docs/screenshots/).
//!
//! Not covered here: the MQTT publish after a UI save (the publisher has its
//! own tests; a UI save is an ordinary PATCH).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "ui/harness.rs"]
mod harness;
#[path = "common/ui.rs"]
mod ui_support;

use common::{break_database, Server, READ_TOKEN, WRITE_TOKEN};
use harness::Browser;
use serde_json::json;
use ui_support::{base, tts};

const LKG_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const ENTER: &str = "\u{E007}";

/// Logs in through the form and waits for the first service form.
async fn login(b: &Browser, s: &Server, token: &str) {
    b.login(&base(s), token).await;
}

/// Opens a service tab by clicking it and waits for its form.
async fn open_service(b: &Browser, name: &str) {
    b.open_service(name).await;
}

async fn visible_fields(b: &Browser) -> u64 {
    b.js(
        "return [...document.querySelectorAll('#service-form .field')].filter(r => !r.hidden).length",
        json!([]),
    )
    .await
    .as_u64()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_journey_in_chromium() {
    // An extra service whose schema has a rule the form does not check
    // (`multipleOf`), so the server's 422 must reach the field.
    let schemas = tempfile::tempdir().unwrap();
    std::fs::write(
        schemas.path().join("ui-lab.json"),
        json!({"type": "object", "additionalProperties": false, "properties": {
            "step_ms": {"type": "integer", "minimum": 0, "maximum": 1000, "multipleOf": 5,
                        "default": 10, "title": "Step (ms)", "description": "A multiple of 5."}
        }})
        .to_string(),
    )
    .unwrap();
    let s = Server::start_with(vec![
        ("CONFIG_MONITOR_INTERVAL_MS".into(), "100".into()),
        ("LKG_HMAC_KEY_BASE64".into(), LKG_KEY.into()),
        (
            "CONFIG_SCHEMA_DIR".into(),
            schemas.path().display().to_string(),
        ),
    ])
    .await;
    let b = Browser::start(1280, 800).await;

    // --- login page, then a wrong token, then the writer.
    b.goto(&base(&s)).await;
    b.find("#login-token").await;
    b.screenshot("login").await;
    b.type_into("#login-token", "not-a-valid-token-at-all")
        .await;
    b.send_keys("#login-token", ENTER).await;
    b.wait_js(
        "the login error",
        "return document.querySelector('#login-error').textContent.includes('Unknown token')",
    )
    .await;
    login(&b, &s, WRITE_TOKEN).await;
    assert_eq!(b.text("#who").await, "writer · write");
    // One tab per service, each with the state of its instances (none
    // report here); the cog is there.
    let tabs = b
        .js(
            "return [...document.querySelectorAll('#tabs [role=tab]')].map(t => t.dataset.service + ':' + t.querySelector('.sync-dot').dataset.state)",
            json!([]),
        )
        .await;
    let tabs: Vec<&str> = tabs
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(tabs.len(), 7, "{tabs:?}");
    assert!(tabs.contains(&"tts-worker:no_reports"), "{tabs:?}");
    b.find("#settings-link").await;

    // --- change a simple value; the server stored it.
    open_service(&b, "tts-worker").await;
    b.screenshot("service-simple").await;
    b.type_into("#f-volume_percent", "70").await;
    b.wait_js(
        "save enabled",
        "return !document.querySelector('#save-button').disabled",
    )
    .await;
    b.type_into("#change-reason", "quieter for the demo").await;
    b.click("#save-button").await;
    b.wait_js(
        "the saved message",
        "return document.querySelector('#save-status')?.textContent.includes('Saved')",
    )
    .await;
    let stored = tts(&s).await;
    assert_eq!(stored["config"]["volume_percent"], 70);
    assert_eq!(stored["sources"]["volume_percent"], "database");
    let (_, hist) = s
        .get(
            "/history?service=tts-worker&key=volume_percent&limit=1",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(hist["entries"][0]["changed_by"], "writer");
    assert_eq!(hist["entries"][0]["change_reason"], "quieter for the demo");

    // --- an invalid value is blocked, with the message next to the field.
    b.type_into("#f-volume_percent", "500").await;
    let msg = b
        .wait_js(
            "the range message",
            "return document.querySelector('#e-volume_percent').textContent",
        )
        .await;
    assert_eq!(msg, "Must be at most 200.");
    assert_eq!(
        b.js(
            "return document.querySelector('#save-button').disabled",
            json!([])
        )
        .await,
        true
    );
    assert_eq!(
        b.js(
            "return document.querySelector('#f-volume_percent').getAttribute('aria-invalid')",
            json!([])
        )
        .await,
        "true"
    );
    b.screenshot("validation").await;
    // Enter does not submit an invalid form either.
    b.send_keys("#f-volume_percent", ENTER).await;
    assert_eq!(tts(&s).await["config"]["volume_percent"], 70);
    b.click("#discard-button").await;
    b.wait_js(
        "the value back",
        "return document.querySelector('#f-volume_percent').value === '70'",
    )
    .await;

    // --- a value only the server can reject: its 422 lands on the field.
    open_service(&b, "ui-lab").await;
    b.type_into("#f-step_ms", "7").await;
    b.wait_js(
        "save enabled",
        "return !document.querySelector('#save-button').disabled",
    )
    .await;
    b.click("#save-button").await;
    let msg = b
        .wait_js(
            "the server's message on the field",
            "return document.querySelector('#e-step_ms').textContent",
        )
        .await;
    assert!(!msg.as_str().unwrap().is_empty());
    assert!(b
        .text("#save-status")
        .await
        .contains("the server found invalid values"));
    assert_eq!(
        b.js(
            "return document.querySelector('#save-button').disabled",
            json!([])
        )
        .await,
        true,
        "save stays disabled until the field is edited"
    );
    b.type_into("#f-step_ms", "15").await;
    b.click("#save-button").await;
    b.wait_js(
        "the saved message",
        "return document.querySelector('#save-status')?.textContent.includes('Saved')",
    )
    .await;
    let (_, lab) = s.get("/services/ui-lab", Some(READ_TOKEN)).await;
    assert_eq!(lab["config"]["step_ms"], 15);
    open_service(&b, "tts-worker").await;

    // --- the advanced toggle shows more fields.
    let simple = visible_fields(&b).await;
    b.click("#advanced-toggle").await;
    let advanced = visible_fields(&b).await;
    assert!(advanced > simple, "advanced {advanced} > simple {simple}");
    // 23 fields, 5 of them ElevenLabs' (shown when it is the provider).
    assert_eq!(advanced, 18);
    b.js(
        "document.querySelector('#field-tts_streaming').scrollIntoView({block: 'start'})",
        json!([]),
    )
    .await;
    b.screenshot("service-advanced").await;
    b.click("#advanced-toggle").await;
    assert_eq!(visible_fields(&b).await, simple);

    // --- help tooltip opens from the keyboard-reachable button.
    b.click("#field-volume_percent .help").await;
    b.find("#h-volume_percent").await;
    // A field no service code reads says so; one that is read does not.
    assert_eq!(
        b.text("#field-volume_percent .badge-unused").await,
        "not read by the service"
    );
    assert_eq!(
        b.js(
            "return document.querySelectorAll('#field-piper_voice .badge-unused').length",
            json!([])
        )
        .await,
        json!(0)
    );

    // --- search honours simple/advanced and links to the field.
    b.type_into("#search-input", "debounce").await;
    b.send_keys("#search-input", ENTER).await;
    let summary = b
        .wait_js(
            "search results",
            "return document.querySelector('#search-summary')?.textContent",
        )
        .await;
    assert!(
        summary.as_str().unwrap().starts_with("0 results"),
        "{summary}"
    );
    b.click("#advanced-toggle").await; // re-runs the search over every field
    b.wait_js(
        "the advanced field in the results",
        "return document.querySelector('#search-results a[href=\"#/service/tts-worker/tts_aggregate_debounce_ms\"]')",
    )
    .await;
    b.screenshot("search").await;
    b.click("#search-results a[href=\"#/service/tts-worker/tts_aggregate_debounce_ms\"]")
        .await;
    b.wait_form("tts-worker").await;
    b.wait_js(
        "focus on the field",
        "return document.activeElement?.id === 'f-tts_aggregate_debounce_ms'",
    )
    .await;
    b.click("#advanced-toggle").await;

    // --- history shows the change; restoring the entry brings 100 back.
    b.go("#/history?service=tts-worker&key=volume_percent")
        .await;
    let row = b
        .wait_js(
            "the history row",
            "const r = document.querySelector('#history-rows tr'); return r && r.innerText",
        )
        .await;
    let row = row.as_str().unwrap();
    assert!(
        row.contains("100") && row.contains("70") && row.contains("writer"),
        "{row}"
    );
    assert!(row.contains("quieter for the demo"), "{row}");
    // The version diff compares the two latest versions by default.
    b.wait_js(
        "the diff",
        "return document.querySelector('#diff-table')?.innerText.includes('volume_percent')",
    )
    .await;
    b.screenshot("history").await;
    b.click("#history-rows tr:first-child td:last-child button")
        .await;
    let text = b.dialog_text().await;
    assert!(
        text.contains("Restore in tts-worker?") && text.contains("Volume (%)"),
        "{text}"
    );
    b.click("#dialog [data-action=yes]").await;
    b.wait_js(
        "the restored row",
        "const r = document.querySelector('#history-rows tr'); return r && r.innerText.includes('restore')",
    )
    .await;
    assert_eq!(tts(&s).await["config"]["volume_percent"], 100);

    // --- point-in-time restore asks first (cancel leaves everything alone).
    b.js(
        "document.querySelector('#pit-time').value = '2020-01-01T00:00:00'",
        json!([]),
    )
    .await;
    b.click("#pit-restore").await;
    let text = b.dialog_text().await;
    assert!(text.contains("Restore to a point in time?"), "{text}");
    b.click("#dialog [data-action=cancel]").await;
    assert_eq!(tts(&s).await["config"]["volume_percent"], 100);

    // --- profiles: save the current state, change it, activate (confirmed).
    b.go("#/settings").await;
    b.find("#profile-name").await;
    b.type_into("#profile-name", "evening").await;
    b.type_into("#profile-desc", "quiet evening settings").await;
    b.click("#profile-save").await;
    b.find("#profile-rows tr[data-name=evening]").await;
    s.patch_latest("tts-worker", json!({"volume_percent": 30}))
        .await;
    b.click("#profile-rows tr[data-name=evening] [data-action=activate]")
        .await;
    let text = b.dialog_text().await;
    assert!(text.contains("Activate profile “evening”?"), "{text}");
    b.screenshot("profile-activate").await;
    b.click("#dialog [data-action=yes]").await;
    b.wait_js(
        "the activation message",
        "return document.querySelector('#toast').textContent.includes('Activated')",
    )
    .await;
    assert_eq!(tts(&s).await["config"]["volume_percent"], 100);
    b.screenshot("settings").await;

    // --- a secret: masked, revealed only with a reason, and audited.
    // ElevenLabs' fields show while it is the provider.
    s.patch_latest(
        "tts-worker",
        json!({"eleven_api_key": "sk-ui-test-secret-0001", "tts_provider": "elevenlabs"}),
    )
    .await;
    b.go_to_service("tts-worker").await;
    let page = b.js("return document.body.innerText", json!([])).await;
    assert!(!page.as_str().unwrap().contains("sk-ui-test-secret-0001"));
    b.click("#reveal-eleven_api_key").await;
    let text = b.dialog_text().await;
    assert!(text.contains("Reason"), "{text}");
    b.type_into("#dialog-input", "ab").await;
    assert_eq!(
        b.js(
            "return document.querySelector('#dialog [data-action=reveal]').disabled",
            json!([])
        )
        .await,
        true,
        "a reason of 3+ characters is required"
    );
    b.type_into("#dialog-input", "checking the key after rotation")
        .await;
    b.click("#dialog [data-action=reveal]").await;
    let shown = b
        .wait_js(
            "the revealed secret",
            "return document.querySelector('#r-eleven_api_key:not([hidden])')?.textContent",
        )
        .await;
    assert_eq!(shown, "sk-ui-test-secret-0001");
    let (_, audit) = s
        .get("/audit?action=secret.reveal", Some(WRITE_TOKEN))
        .await;
    assert_eq!(audit["entries"][0]["actor"], "writer");
    assert_eq!(audit["entries"][0]["target"], "tts-worker/eleven_api_key");
    assert_eq!(
        audit["entries"][0]["detail"]["reason"],
        "checking the key after rotation"
    );

    // --- conflict: someone else saves while the form is open.
    b.go_to_service("router").await;
    b.go_to_service("tts-worker").await;
    s.patch_latest("tts-worker", json!({"volume_percent": 80}))
        .await;
    b.type_into("#f-volume_percent", "90").await;
    b.click("#save-button").await;
    let text = b.dialog_text().await;
    assert!(text.contains("Someone else saved first"), "{text}");
    assert!(text.contains("volume_percent"), "lists my change: {text}");
    b.screenshot("conflict").await;
    b.click("#dialog [data-action=reload]").await;
    b.wait_js(
        "the other writer's value",
        "return document.querySelector('#f-volume_percent')?.value === '80'",
    )
    .await;
    assert_eq!(tts(&s).await["config"]["volume_percent"], 80);

    // --- unsaved changes: leaving asks; beforeunload is armed.
    b.type_into("#f-volume_percent", "85").await;
    b.wait_js(
        "dirty",
        "return !document.querySelector('#save-button').disabled",
    )
    .await;
    let prevented = b
        .js(
            "const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented",
            json!([]),
        )
        .await;
    assert_eq!(prevented, true);
    b.click("#tab-router").await;
    let text = b.dialog_text().await;
    assert!(text.contains("Leave without saving?"), "{text}");
    b.click("#dialog [data-action=cancel]").await;
    // The dialog's promise settles after the click returns; then the hash is
    // put back.
    b.wait_js(
        "the hash put back after cancelling",
        "return location.hash === '#/service/tts-worker'",
    )
    .await;
    assert_eq!(
        b.js(
            "return [location.hash, document.querySelector('#f-volume_percent').value]",
            json!([])
        )
        .await,
        json!(["#/service/tts-worker", "85"])
    );
    b.click("#discard-button").await;

    // --- keyboard: arrows move between tabs, Enter opens one.
    b.js(
        "document.querySelector('#tab-tts-worker').focus()",
        json!([]),
    )
    .await;
    b.press("\u{E014}").await; // ArrowRight
    assert_eq!(
        b.js("return document.activeElement.id", json!([])).await,
        "tab-ui-lab"
    );
    b.press(ENTER).await;
    b.wait_form("ui-lab").await;

    // --- audit view (writers): the reveal and the denial are there.
    b.go("#/audit").await;
    b.type_into("#audit-action", "secret.reveal").await;
    b.send_keys("#audit-action", ENTER).await;
    b.wait_js(
        "the reveal in the audit view",
        "return document.querySelector('#audit-rows')?.innerText.includes('checking the key after rotation')",
    )
    .await;
    b.type_into("#audit-action", "").await;
    b.send_keys("#audit-action", ENTER).await;
    b.wait_js(
        "the full audit view",
        "return document.querySelectorAll('#audit-rows tr').length > 5",
    )
    .await;
    b.screenshot("audit").await;

    // --- a narrow window still works: fields stack, the tabs scroll.
    b.go_to_service("tts-worker").await;
    b.set_viewport(500, 800).await; // Chromium's smallest window
    let layout = b
        .js(
            "const r = document.querySelector('#field-volume_percent'); const [a, c] = r.children; \
             return [document.documentElement.scrollWidth <= window.innerWidth, a.getBoundingClientRect().bottom <= c.getBoundingClientRect().top]",
            json!([]),
        )
        .await;
    assert_eq!(
        layout,
        json!([true, true]),
        "no horizontal overflow, label above input"
    );
    b.screenshot("narrow").await;
    b.set_viewport(1280, 800).await;

    // --- logout, then a read-only session: sees everything, cannot save.
    b.click("#logout-button").await;
    b.find("#login-token").await;
    let (status, _) = s.get("/services", None).await;
    assert_eq!(status, 401);
    login(&b, &s, READ_TOKEN).await;
    assert!(
        b.js(
            "return document.querySelector('#nav-audit').hidden",
            json!([])
        )
        .await
            == true
    );
    open_service(&b, "tts-worker").await;
    b.find("#readonly-note").await;
    let controls = b
        .js(
            "const q = s => document.querySelector(s); return [q('#f-volume_percent').readOnly, q('#f-tts_provider').disabled, q('#save-button').disabled, !!q('#reveal-eleven_api_key:not([hidden])')]",
            json!([]),
        )
        .await;
    assert_eq!(controls, json!([true, true, true, false]));
    b.screenshot("read-only").await;
    // The server refuses anyway, even with a valid CSRF token.
    let status = b
        .js_async(
            "const done = arguments[arguments.length - 1];
             fetch('/ui/session').then(r => r.json()).then(s => fetch('/api/config/services/tts-worker', {
               method: 'PATCH', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf_token},
               body: JSON.stringify({config: {volume_percent: 5}, version: 1000})})).then(r => done(r.status));",
            json!([]),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(tts(&s).await["config"]["volume_percent"], 80);

    // --- read-only fallback: the database breaks; a red banner, no saving.
    break_database(&s).await;
    b.click("#logout-button").await;
    login(&b, &s, WRITE_TOKEN).await; // logging in works in fallback too
    open_service(&b, "tts-worker").await;
    let banner = b.text("#banner-readonly").await;
    assert!(
        banner.contains("Read-only") && banner.contains("read-only-fallback"),
        "{banner}"
    );
    assert_eq!(
        b.js(
            "return document.querySelector('#f-volume_percent').value",
            json!([])
        )
        .await,
        "80",
        "served from the last-known-good cache"
    );
    assert_eq!(
        b.js("return [document.querySelector('#save-button').disabled, !document.querySelector('#banner-readonly').hidden, !!document.querySelector('#reveal-eleven_api_key:not([hidden])')]", json!([]))
            .await,
        json!([true, true, false]),
        "the banner says read-only (the tab's indicator is the instances')"
    );
    b.screenshot("fallback").await;

    // --- MQTT configured but the broker unreachable: the amber banner (the
    // server above has no MQTT configured and showed none).
    let dead = common::free_port();
    let m = Server::start_with(vec![(
        "MQTT_URL".into(),
        format!("mqtt://127.0.0.1:{dead}"),
    )])
    .await;
    let (_, h) = m.get("/health", None).await;
    assert_eq!(
        (&h["mqtt_configured"], &h["mqtt_connected"]),
        (&json!(true), &json!(false))
    );
    login(&b, &m, WRITE_TOKEN).await;
    let text = b.text("#banner-mqtt").await;
    assert!(text.contains("MQTT disconnected"), "{text}");
    assert_eq!(
        b.js(
            "return document.querySelector('#banner-readonly').hidden",
            json!([])
        )
        .await,
        true
    );
    b.screenshot("mqtt-banner").await;

    b.quit().await;
}

/// Issue 14, finding 11: a schema `pattern` with catastrophic backtracking
/// used to run as a JavaScript RegExp on each keystroke and freeze the tab.
/// The page now leaves `pattern` to the server and shows its 422 on the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_schema_pattern_does_not_freeze_the_form() {
    let s = Server::start().await;
    let schema = json!({"type": "object", "additionalProperties": false, "properties": {
        "word": {"type": "string", "pattern": "^(a+)+$", "default": "a", "title": "Word"}
    }});
    let (status, body) = s.put_schema("redos-lab", &schema.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let b = Browser::start(1280, 800).await;
    login(&b, &s, WRITE_TOKEN).await;
    b.go_to_service("redos-lab").await;
    let hostile = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!";
    // A frozen tab never answers WebDriver: bound the wait generously.
    let responsive = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        b.type_into("#f-word", hostile).await;
        b.js("return document.querySelector('#f-word').value", json!([]))
            .await
    })
    .await
    .expect("the page froze while typing into a field with a hostile pattern");
    assert_eq!(responsive, hostile);
    // The server checks the pattern on save; its error lands on the field.
    b.click("#save-button").await;
    let message = b
        .wait_js(
            "the server's error on the field",
            "return document.querySelector('#e-word')?.textContent",
        )
        .await;
    assert!(message.as_str().unwrap().contains("^(a+)+$"), "{message}");
    assert!(b.text("#save-status").await.contains("Not saved"));
    let (_, got) = s.get("/services/redos-lab", Some(WRITE_TOKEN)).await;
    assert_eq!(got["config"]["word"], "a", "nothing was saved");
    b.quit().await;
}
