//! A minimal W3C WebDriver client over reqwest, driving the system's headless
//! Chromium through chromedriver. Plain HTTP calls instead of a WebDriver
//! crate: the handful of endpoints the UI tests need are a few lines each,
//! and the dependency tree stays as it is.
//!
//! chromedriver runs on its own free port with its own profile directory, so
//! UI tests never collide with a developer's browser or a dev instance.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long waits poll before the test fails.
const WAIT: Duration = Duration::from_secs(15);

const INSTALL_HINT: &str = "install them with `apt-get install chromium chromium-driver` \
(scripts/test.sh does this when run as root)";

/// Finds an executable on PATH (or in /usr/bin).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/bin", "/usr/lib/chromium"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// A headless Chromium session.
pub struct Browser {
    http: reqwest::Client,
    driver: Option<Child>,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
    /// Where screenshots go (`CM_UI_SCREENSHOTS`), if anywhere.
    pub shots: Option<PathBuf>,
}

impl Browser {
    /// Starts chromedriver and one Chromium session with a window of
    /// `width` x `height` CSS pixels of viewport. Fails (never skips) when
    /// Chromium or chromedriver is missing.
    pub async fn start(width: u32, height: u32) -> Self {
        let driver_bin = which("chromedriver")
            .unwrap_or_else(|| panic!("chromedriver is not installed: {INSTALL_HINT}"));
        if which("chromium").is_none() && which("chromium-browser").is_none() {
            panic!("chromium is not installed: {INSTALL_HINT}");
        }
        let port = super::common::free_port();
        let profile = tempfile::tempdir().expect("profile dir");
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).expect("log");
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let mut b = Browser {
            http,
            driver: Some(driver),
            port,
            session: String::new(),
            _profile: profile,
            shots: std::env::var_os("CM_UI_SCREENSHOTS").map(PathBuf::from),
        };
        b.wait_ready().await;
        // --window-size is the outer window; headless adds no chrome, but
        // set the viewport explicitly afterwards to be sure.
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            format!("--window-size={width},{height}"),
            format!(
                "--user-data-dir={}",
                b._profile.path().join("profile").display()
            ),
        ]);
        let resp = b
            .raw(
                "POST",
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"args": args},
                    "unhandledPromptBehavior": "accept",
                }}})),
            )
            .await;
        b.session = resp["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session from chromedriver: {resp}"))
            .to_owned();
        b.set_viewport(width, height).await;
        b
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = format!("http://127.0.0.1:{}/status", self.port);
            if let Ok(r) = self.http.get(&url).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// One WebDriver call; returns `value`, panics with the driver's message on error.
    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            panic!(
                "WebDriver {method} {path} failed ({status}): {}",
                v["value"]
            );
        }
        v["value"].clone()
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    /// Sets the viewport (inner size): resize, measure what the browser
    /// chrome takes, resize again by the difference.
    pub async fn set_viewport(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
        let inner = self
            .js("return [window.innerWidth, window.innerHeight]", json!([]))
            .await;
        let iw = inner[0].as_u64().unwrap_or(u64::from(width)) as u32;
        let ih = inner[1].as_u64().unwrap_or(u64::from(height)) as u32;
        let (w2, h2) = (
            width + width.saturating_sub(iw),
            height + height.saturating_sub(ih),
        );
        if (w2, h2) != (width, height) {
            self.cmd(
                "POST",
                "/window/rect",
                Some(json!({"width": w2, "height": h2})),
            )
            .await;
        }
    }

    /// Emulates the system's dark (or light) colour scheme through
    /// chromedriver's DevTools endpoint (`prefers-color-scheme`).
    pub async fn emulate_color_scheme(&self, scheme: &str) {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setEmulatedMedia",
                "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
            })),
        )
        .await;
    }

    /// Logs in through the form at `base` and waits for the first service
    /// form.
    pub async fn login(&self, base: &str, token: &str) {
        self.goto(base).await;
        self.find("#login-token").await;
        self.type_into("#login-token", token).await;
        self.click("#login-submit").await;
        self.wait_js(
            "the first service form",
            "return !!document.querySelector('#service-title')?.textContent && !!document.querySelector('#service-form')",
        )
        .await;
    }

    /// Opens a service's tab by clicking it and waits for its form.
    pub async fn open_service(&self, name: &str) {
        self.click(&format!("#tab-{name}")).await;
        self.wait_form(name).await;
    }

    /// Waits until the page shows the form of service `name`.
    pub async fn wait_form(&self, name: &str) {
        self.wait_js(
            &format!("the {name} form"),
            &format!(
                "return document.querySelector('#service-title')?.textContent === '{name}' && !!document.querySelector('#service-form')"
            ),
        )
        .await;
    }

    /// Same-page navigation (a hash change), as a click on a link does.
    pub async fn go(&self, hash: &str) {
        self.js("location.hash = arguments[0]", json!([hash])).await;
    }

    /// Navigates to service `name`'s page and waits for its form.
    pub async fn go_to_service(&self, name: &str) {
        self.go(&format!("#/service/{name}")).await;
        self.wait_form(name).await;
    }

    /// Waits for the open dialog and returns its text.
    pub async fn dialog_text(&self) -> String {
        self.wait_js(
            "the dialog",
            "const d = document.querySelector('#dialog'); return d.open && d.innerText",
        )
        .await
        .as_str()
        .expect("dialog text")
        .to_owned()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// Runs a synchronous script (`return ...`).
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs an async script; it must call `arguments[arguments.length - 1](result)`.
    pub async fn js_async(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Polls a script until it returns something truthy; returns that value.
    pub async fn wait_js(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.js(script, json!([])).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let body = self
                    .js("return document.body.innerText.slice(0, 3000)", json!([]))
                    .await;
                panic!(
                    "timed out waiting for {what}; page text:\n{}",
                    body.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until an element matching `css` exists and is displayed; returns its id.
    pub async fn find(&self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e && e.getClientRects().length > 0 && !e.closest('[hidden]')",
            json!(css)
        );
        self.wait_js(&format!("a visible {css}"), &script).await;
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    /// Clears a field and types `text` like a user (key events, input events).
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})))
            .await;
        if !text.is_empty() {
            self.send_keys_to(&id, text).await;
        }
    }

    /// Types into the focused-by-selector element without clearing it.
    pub async fn send_keys(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.send_keys_to(&id, text).await;
    }

    async fn send_keys_to(&self, id: &str, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Presses keys on whatever has focus (W3C actions), e.g. "\u{E004}" for Tab.
    pub async fn press(&self, keys: &str) {
        let mut actions = Vec::new();
        for k in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": k.to_string()}));
            actions.push(json!({"type": "keyUp", "value": k.to_string()}));
        }
        self.cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "kbd", "actions": actions}]})),
        )
        .await;
        self.cmd("DELETE", "/actions", None).await;
    }

    /// Visible text of the first element matching `css` (waits for it).
    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.cmd("GET", &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a PNG of the viewport as `<CM_UI_SCREENSHOTS>/<name>.png` when
    /// that variable is set (scripts/ui-screenshots.sh), else does nothing.
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = &self.shots else { return };
        // A toast left over from an earlier step would cover the screen in
        // the docs; the steps check toasts themselves before this.
        self.js(
            "document.querySelector('#toast')?.classList.remove('show')",
            json!([]),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let v = self.cmd("GET", "/screenshot", None).await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Ends the session and stops chromedriver (also done on drop).
    pub async fn quit(mut self) {
        if !self.session.is_empty() {
            let _ = self
                .http
                .delete(format!(
                    "http://127.0.0.1:{}/session/{}",
                    self.port, self.session
                ))
                .send()
                .await;
            self.session.clear();
        }
        self.stop_driver();
    }

    fn stop_driver(&mut self) {
        if let Some(mut c) = self.driver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Browser {
    /// A failing test still closes Chromium: a blocking DELETE over a plain
    /// socket (no runtime needed in drop), then chromedriver is killed.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let req = format!(
                    "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.session, self.port
                );
                let _ = s.write_all(req.as_bytes());
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            }
        }
        self.stop_driver();
    }
}
