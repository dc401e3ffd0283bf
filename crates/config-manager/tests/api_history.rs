//! Integration tests of the REST API over time, against the real binary and
//! real SQLite files: history (filters, paging, restore of an entry), point-in-
//! time restore of all services, and profiles. The other endpoints are in
//! `api.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Server, READ_TOKEN, WRITE_TOKEN};
use serde_json::json;

const TTS: &str = "/services/tts-worker";

#[tokio::test]
async fn history_filters_paging_and_restore() {
    let s = Server::start().await;
    for (v, vol) in [(1, 10), (2, 20), (3, 30)] {
        let (status, _) = s
            .patch_config("tts-worker", &json!({"config": {"volume_percent": vol}, "version": v, "reason": format!("set {vol}")}))
            .await;
        assert_eq!(status, 200);
    }
    let (status, body) = s
        .get(
            "/history?service=tts-worker&key=volume_percent&limit=2",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["new_value"], 30);
    assert_eq!(entries[0]["old_value"], 20);
    assert_eq!(entries[0]["changed_by"], "writer");
    assert_eq!(entries[0]["change_reason"], "set 30");
    let next = body["next_before_id"].as_i64().unwrap();
    let (_, page2) = s
        .get(
            &format!("/history?service=tts-worker&key=volume_percent&limit=2&before_id={next}"),
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(page2["entries"][0]["new_value"], 10);
    // Time filter: nothing in the future.
    let (_, none) = s
        .get("/history?start_date=2999-01-01T00:00:00Z", Some(READ_TOKEN))
        .await;
    assert_eq!(none["total_returned"], 0);
    // A name no service can have matches nothing (not a refusal).
    let (status, none) = s.get("/history?service=TTS_Worker", Some(READ_TOKEN)).await;
    assert_eq!(
        (status, &none["total_returned"]),
        (200, &json!(0)),
        "{none}"
    );
    let (status, _) = s
        .get("/history?start_date=yesterday", Some(READ_TOKEN))
        .await;
    assert_eq!(status, 400);
    let (status, _) = s.get("/history?limit=0", Some(READ_TOKEN)).await;
    assert_eq!(status, 400);
    // Restore the entry that set 30: volume goes back to 20 as a new version.
    let id = entries[0]["id"].as_i64().unwrap();
    let (status, body) = s
        .post(
            "/history/restore",
            &json!({"service": "tts-worker", "history_entries": [id], "reason": "undo"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["keys_restored"], json!(["volume_percent"]));
    assert_eq!(body["new_version"], 5);
    let (_, got) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(got["config"]["volume_percent"], 20);
    let (_, h) = s
        .get("/history?service=tts-worker&limit=1", Some(READ_TOKEN))
        .await;
    assert_eq!(h["entries"][0]["change_type"], "restore");
    assert_eq!(h["entries"][0]["change_reason"], "undo");
    // Bad restores.
    let (status, _) = s
        .post(
            "/history/restore",
            &json!({"service": "router", "history_entries": [id]}),
        )
        .await;
    assert_eq!(status, 400, "entry of another service");
    let (status, _) = s
        .post(
            "/history/restore",
            &json!({"service": "tts-worker", "history_entries": [999999]}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .send(
            "POST",
            "/history/restore",
            Some(READ_TOKEN),
            &json!({"service": "tts-worker", "history_entries": [id]}),
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn point_in_time_restore_of_all_services() {
    let s = Server::start().await;
    s.patch_ok("tts-worker", json!({"volume_percent": 10}), 1)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mid = config_manager_core::domain::now_rfc3339();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.patch_ok("tts-worker", json!({"volume_percent": 90}), 2)
        .await;
    s.patch_ok("router", json!({"router_wake_window_sec": 5.0}), 1)
        .await;
    let (status, body) = s
        .post(
            "/restore",
            &json!({"timestamp": mid, "reason": "bad evening"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut restored: Vec<&str> = body["services_restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    restored.sort();
    assert_eq!(restored, ["router", "tts-worker"], "{body}");
    let (_, router) = s.get("/services/router", Some(READ_TOKEN)).await;
    assert_eq!(router["config"]["router_wake_window_sec"], 8.0);
    let (_, got) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(got["config"]["volume_percent"], 10);
    assert_eq!(got["version"], 4, "restore creates a new version");
    for bad in [
        json!({"timestamp": "last week"}),
        json!({"timestamp": mid, "service": "../x"}),
    ] {
        let (status, _) = s.post("/restore", &bad).await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn profiles_save_activate_delete() {
    let s = Server::start().await;
    let (status, body) = s
        .post(
            "/profiles",
            &json!({"profile_name": "day", "description": "normal"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["profile_name"], "day");
    assert!(body["config_snapshot"]["tts-worker"].is_object());
    s.patch_ok("tts-worker", json!({"volume_percent": 5}), 1)
        .await;
    let (status, body) = s
        .send(
            "PUT",
            "/profiles/day/activate",
            Some(WRITE_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["services_updated"], json!(["tts-worker"]));
    let (_, got) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(got["config"]["volume_percent"], 100);
    assert_eq!(got["version"], 3);
    let (_, h) = s
        .get("/history?service=tts-worker&limit=1", Some(READ_TOKEN))
        .await;
    assert_eq!(h["entries"][0]["changed_by"], "writer");
    assert_eq!(h["entries"][0]["change_type"], "profile");
    let (status, list) = s.get("/profiles", Some(READ_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(list["profiles"][0]["profile_name"], "day");
    let (status, _) = s.get("/profiles/day", Some(READ_TOKEN)).await;
    assert_eq!(status, 200);
    for bad in ["", "../etc", &"p".repeat(101) as &str, "a/b"] {
        let (status, _) = s.post("/profiles", &json!({"profile_name": bad})).await;
        assert_eq!(status, 400, "{bad:?}");
    }
    let (status, _) = s
        .send(
            "PUT",
            "/profiles/missing/activate",
            Some(WRITE_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .send("DELETE", "/profiles/day", Some(READ_TOKEN), &json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .send("DELETE", "/profiles/day", Some(WRITE_TOKEN), &json!({}))
        .await;
    assert_eq!(status, 204);
    let (status, _) = s
        .send("DELETE", "/profiles/day", Some(WRITE_TOKEN), &json!({}))
        .await;
    assert_eq!(status, 404);
}
