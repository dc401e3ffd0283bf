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
