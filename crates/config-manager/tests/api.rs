//! Integration tests of the REST API against the real binary and real SQLite
//! files: every endpoint, success and failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Server, READ_TOKEN, REBUILD_TOKEN, TTS_TOKEN, WRITE_TOKEN};
use serde_json::{json, Value};

const TTS: &str = "/services/tts-worker";

#[tokio::test]
async fn health_is_open_and_reports_the_contract_fields() {
    let s = Server::start().await;
    let (status, body) = s.get("/health", None).await;
    assert_eq!(status, 200);
    for field in [
        "ok",
        "database_status",
        "operational_mode",
        "config_epoch",
        "schema_version",
        "lkg_cache_valid",
        "litestream_status",
    ] {
        assert!(body.get(field).is_some(), "missing {field}: {body}");
    }
    assert_eq!(body["database_status"], "healthy");
    assert_eq!(body["operational_mode"], "normal");
}

#[tokio::test]
async fn list_and_get_with_fields_and_etag() {
    let s = Server::start().await;
    let (status, body) = s.get("/services", Some(READ_TOKEN)).await;
    assert_eq!(status, 200);
    let services: Vec<&str> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        [
            "llm-worker",
            "memory-worker",
            "router",
            "stt-worker",
            "tts-worker",
            "wake-activation"
        ]
    );
    let resp = s
        .http
        .get(s.url("/services/tts-worker?include_fields=true"))
        .header("X-API-Token", READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["version"], 1);
    assert!(etag.starts_with("\"1-"));
    let field = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "volume_percent")
        .expect("volume_percent field");
    for k in [
        "key",
        "type",
        "complexity",
        "description",
        "help_text",
        "examples",
        "is_secret",
    ] {
        assert!(field.get(k).is_some(), "field lacks {k}: {field}");
    }
    assert_eq!(body["sources"]["volume_percent"], "database");
}

#[tokio::test]
async fn put_patch_and_optimistic_locking() {
    let s = Server::start().await;
    // PATCH one key.
    let (status, body) = s
        .patch_config(
            "tts-worker",
            &json!({"config": {"volume_percent": 40}, "version": 1, "reason": "quieter"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["version"], 2);
    let (_, got) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(got["config"]["volume_percent"], 40);
    // Stale version → 409 with the current version.
    let (status, body) = s
        .patch_config(
            "tts-worker",
            &json!({"config": {"volume_percent": 41}, "version": 1}),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["current_version"], 2);
    // If-Match works instead of a body version; a stale one conflicts.
    let patch_if_match = |etag: String| {
        s.http
            .patch(s.url(TTS))
            .header("X-API-Token", WRITE_TOKEN)
            .header("If-Match", etag)
            .json(&json!({"config": {"volume_percent": 42}}))
            .send()
    };
    let resp = patch_if_match("\"2-another-epoch\"".into()).await.unwrap();
    assert_eq!(resp.status(), 409, "an ETag of another epoch is stale");
    let (epoch, _) = s.desired("tts-worker").await;
    let resp = patch_if_match(format!("\"2-{epoch}\"")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _) = s
        .patch_config("tts-worker", &json!({"config": {"volume_percent": 43}}))
        .await;
    assert_eq!(status, 428, "a write without a version is refused");
    // PUT replaces: keys not sent go back to their defaults.
    let (status, _) = s
        .put_config(
            "tts-worker",
            &json!({"service": "tts-worker", "config": {"tts_streaming": 1}, "version": 3}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, got) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(got["config"]["volume_percent"], 100);
    assert_eq!(got["config"]["tts_streaming"], 1);
    // Body service must match the URL.
    let (status, _) = s
        .put_config(
            "tts-worker",
            &json!({"service": "router", "config": {}, "version": 4}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn validation_errors_name_each_field() {
    let s = Server::start().await;
    let (status, body) = s
        .patch_config("tts-worker", &json!({"config": {"volume_percent": 1000, "tts_streaming": "yes", "nope": 1, "tts_provider": "espeak"}, "version": 1}))
        .await;
    assert_eq!(status, 422, "{body}");
    let pointers: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    for p in [
        "/volume_percent",
        "/tts_streaming",
        "/nope",
        "/tts_provider",
    ] {
        assert!(pointers.contains(&p), "{p} not in {pointers:?}");
    }
    assert_eq!(s.version("tts-worker").await, 1, "nothing was stored");
}

#[tokio::test]
async fn malformed_requests_get_problem_details() {
    let s = Server::start().await;
    let raw = |body: &'static str, ctype: &'static str| {
        s.http
            .patch(s.url(TTS))
            .header("X-API-Token", WRITE_TOKEN)
            .header("content-type", ctype)
            .body(body)
    };
    for (body, ctype, want) in [
        ("{not json", "application/json", 400),
        ("[1,2]", "application/json", 400),
        ("{\"config\": 5, \"version\": 1}", "application/json", 400),
        (
            "{\"config\": {}, \"version\": \"one\"}",
            "application/json",
            400,
        ),
        (
            "{\"config\": {}, \"version\": 1, \"extra\": 1}",
            "application/json",
            400,
        ),
        ("{\"config\": {}, \"version\": 1}", "text/plain", 415),
    ] {
        let resp = raw(body, ctype).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{body}");
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["status"], want);
        assert!(problem["detail"].as_str().is_some());
    }
    // Oversized body.
    let big = format!(
        "{{\"config\": {{\"piper_voice\": \"{}\"}}, \"version\": 1}}",
        "x".repeat(400 * 1024)
    );
    let (status, _) = s.send_raw("PATCH", TTS, big).await;
    assert_eq!(status, 413);
    assert_eq!(s.version("tts-worker").await, 1);
}

#[tokio::test]
async fn hostile_service_names_are_refused() {
    let s = Server::start().await;
    let long = "a".repeat(10_000);
    for (path, want) in [
        ("/services/..%2F..%2Fetc%2Fpasswd", 400),
        ("/services/tts'%3B%20DROP%20TABLE%20configs%3B--", 400),
        ("/services/tts%00", 400),
        ("/services/t%C3%B6ts", 400),
        (&format!("/services/{long}") as &str, 400),
        ("/services/no-such-service", 404),
    ] {
        let (status, body) = s.get(path, Some(READ_TOKEN)).await;
        assert_eq!(status, want, "{path}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            !detail.contains("DROP") && detail.len() < 400,
            "input echoed: {detail}"
        );
    }
    let (status, _) = s
        .send(
            "PUT",
            "/services/..%2Fx",
            Some(WRITE_TOKEN),
            &json!({"config": {}, "version": 0}),
        )
        .await;
    assert_eq!(status, 400);
    // The database still holds exactly the six services.
    let (_, body) = s.get("/services", Some(READ_TOKEN)).await;
    assert_eq!(body["services"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn tokens_roles_scopes_and_audit() {
    let s = Server::start().await;
    let (status, _) = s.get("/services", None).await;
    assert_eq!(status, 401);
    let (status, _) = s.get("/services", Some("not-a-valid-token-at-all")).await;
    assert_eq!(status, 401);
    let (status, body) = s
        .send(
            "PATCH",
            TTS,
            Some(READ_TOKEN),
            &json!({"config": {"volume_percent": 1}, "version": 1}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    // Scoped token: its own service only.
    let (status, body) = s.get("/services", Some(TTS_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(body["services"], json!(["tts-worker"]));
    let (status, _) = s.get("/services/router", Some(TTS_TOKEN)).await;
    assert_eq!(status, 403);
    let (status, _) = s.get(TTS, Some(TTS_TOKEN)).await;
    assert_eq!(status, 200);
    // Audit: readers cannot read it; writers see denials and changes by name.
    let (status, _) = s.get("/audit", Some(READ_TOKEN)).await;
    assert_eq!(status, 403);
    s.patch_ok("tts-worker", json!({"volume_percent": 2}), 1)
        .await;
    let (status, body) = s.get("/audit?limit=100", Some(WRITE_TOKEN)).await;
    assert_eq!(status, 200);
    let entries = body["entries"].as_array().unwrap();
    let text = body.to_string();
    assert!(!text.contains(READ_TOKEN) && !text.contains(WRITE_TOKEN) && !text.contains(TTS_TOKEN));
    assert!(entries
        .iter()
        .any(|e| e["actor"] == "anonymous" && e["outcome"] == "denied"));
    assert!(entries
        .iter()
        .any(|e| e["actor"] == "reader" && e["outcome"] == "denied"));
    assert!(entries
        .iter()
        .any(|e| e["actor"] == "tts" && e["outcome"] == "denied"));
    assert!(entries.iter().any(|e| e["actor"] == "writer"
        && e["action"] == "config.update"
        && e["target"] == "tts-worker"));
    let (_, denied) = s
        .get("/audit?outcome=denied&actor=reader", Some(WRITE_TOKEN))
        .await;
    assert!(denied["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "reader"));
}

#[tokio::test]
async fn search_finds_fields_with_scores_and_filters() {
    let s = Server::start().await;
    let (status, body) = s
        .send(
            "POST",
            "/search",
            Some(READ_TOKEN),
            &json!({"query": "volume"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["key"], "volume_percent");
    assert!(body["total_count"].as_u64().unwrap() >= 1);
    for r in results {
        let score = r["match_score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score));
    }
    let (_, body) = s
        .send(
            "POST",
            "/search",
            Some(READ_TOKEN),
            &json!({"query": "", "service_filter": "router", "complexity_filter": "simple"}),
        )
        .await;
    let results = body["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(results
        .iter()
        .all(|r| r["service"] == "router" && r["complexity"] == "simple"));
    let (_, body) = s
        .send(
            "POST",
            "/search",
            Some(READ_TOKEN),
            &json!({"query": "api key"}),
        )
        .await;
    for r in body["results"].as_array().unwrap() {
        if r["is_secret"] == true {
            assert!(r.get("value").is_none(), "secret value exposed: {r}");
        }
    }
    for bad in [
        json!({"query": "x", "max_results": 0}),
        json!({"query": "x", "max_results": 201}),
        json!({"query": "x", "complexity_filter": "expert"}),
        json!({"query": "x".repeat(500)}),
        json!({"nope": 1}),
    ] {
        let (status, _) = s.send("POST", "/search", Some(READ_TOKEN), &bad).await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn secrets_masked_revealed_with_reason_and_scoped() {
    let s = Server::start().await;
    let secret = "el-secret-value-123456";
    s.patch_ok("tts-worker", json!({"eleven_api_key": secret}), 1)
        .await;
    let (_, got) = s.get(TTS, Some(READ_TOKEN)).await;
    assert_eq!(got["config"]["eleven_api_key"], "********");
    let (_, scoped) = s.get(TTS, Some(TTS_TOKEN)).await;
    assert_eq!(
        scoped["config"]["eleven_api_key"], secret,
        "scoped token reads its own secrets"
    );
    let reveal = "/services/tts-worker/secrets/eleven_api_key/reveal";
    let (status, _) = s
        .send(
            "POST",
            reveal,
            Some(READ_TOKEN),
            &json!({"reason": "debugging"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = s.post(reveal, &json!({})).await;
    assert_eq!(status, 400, "reason required");
    let (status, body) = s
        .post(reveal, &json!({"reason": "rotate vendor key"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["value"], secret);
    let (_, audit) = s.get("/audit?action=secret.", Some(WRITE_TOKEN)).await;
    let e = &audit["entries"][0];
    assert_eq!(e["actor"], "writer");
    assert_eq!(e["target"], "tts-worker/eleven_api_key");
    assert_eq!(e["detail"]["reason"], "rotate vendor key");
    // History and search never show it.
    let (_, h) = s
        .get("/history?key=eleven_api_key", Some(WRITE_TOKEN))
        .await;
    assert!(!h.to_string().contains(secret));
    assert_eq!(h["entries"][0]["new_value"], "********");
    // Not on disk in clear text.
    let mut bytes = std::fs::read(s.db_path()).unwrap();
    bytes.extend(std::fs::read(s.db_path().with_extension("db-wal")).unwrap_or_default());
    assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    assert!(!s.log().contains(secret));
}

#[tokio::test]
async fn rebuild_requires_the_rebuild_token() {
    let s = Server::start_with(vec![("REBUILD_TOKEN".into(), REBUILD_TOKEN.into())]).await;
    let (status, _) = s.rebuild(WRITE_TOKEN, "wrong-token").await;
    assert_eq!(status, 403);
    let (status, _) = s.rebuild(READ_TOKEN, REBUILD_TOKEN).await;
    assert_eq!(status, 403);
    let (status, body) = s.rebuild(WRITE_TOKEN, REBUILD_TOKEN).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["tombstone"]["seed_source"], "lkg");
}

#[tokio::test]
async fn openapi_document_is_served_and_lists_every_route() {
    let s = Server::start().await;
    let (status, doc) = s.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in config_manager::http::ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    let mut documented = 0;
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            if ["get", "put", "post", "patch", "delete"].contains(&method.as_str()) {
                documented += 1;
                assert!(
                    config_manager::http::ROUTES.contains(&(method.as_str(), path.as_str())),
                    "{method} {path} is documented but not routed"
                );
            }
        }
    }
    assert_eq!(documented, config_manager::http::ROUTES.len());
    // Every documented route is really routed (no 404/405 from the router).
    for (method, path) in config_manager::http::ROUTES {
        let concrete = path
            .replace("{service}", "tts-worker")
            .replace("{name}", "nonexistent")
            .replace("{key}", "eleven_api_key");
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = s.http.request(m, s.url(&concrete)).send().await.unwrap();
        let code = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            code != 404 || body["detail"] != "no such route",
            "{method} {path} is not routed"
        );
        assert_ne!(
            body["detail"], "method not allowed on this route",
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn schemas_can_be_registered_over_the_api() {
    let mut s = Server::start().await;
    let schema = r#"{"type":"object","additionalProperties":false,"properties":{
        "speed":{"type":"integer","default":5,"minimum":0,"maximum":100,"description":"Arm speed","x-complexity":"simple"},
        "grip":{"type":"number","default":0.5,"minimum":0,"maximum":1,"description":"Grip force","x-complexity":"advanced"}}}"#;
    let put_schema = |name: &str, body: &str, token: &str| {
        s.http
            .put(s.url(&format!("/services/{name}/schema")))
            .header("X-API-Token", token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let resp = put_schema("arm-controller", schema, READ_TOKEN)
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = put_schema("arm-controller", schema, WRITE_TOKEN)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (_, got) = s
        .get(
            "/services/arm-controller?include_fields=true",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(got["version"], 1);
    assert_eq!(got["config"]["speed"], 5);
    let keys: Vec<&str> = got["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["speed", "grip"],
        "field order of the document is kept"
    );
    s.patch_ok("arm-controller", json!({"speed": 90}), 1).await;
    // A schema the stored values do not satisfy is refused, naming the field.
    let tighter = schema.replace("\"maximum\":100", "\"maximum\":50");
    let resp = put_schema("arm-controller", &tighter, WRITE_TOKEN)
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["pointer"], "/speed");
    // Bad documents and names.
    for (name, body, want) in [
        ("arm-controller", "{not json", 422),
        ("arm-controller", "{\"type\":\"string\"}", 422),
        ("..%2Fetc", schema, 400),
    ] {
        let resp = put_schema(name, body, WRITE_TOKEN).await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{name} {body}");
    }
    // Persisted: survives a restart.
    s.terminate();
    s.spawn().await;
    let (status, got) = s.get("/services/arm-controller", Some(READ_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(got["config"]["speed"], 90);
    let (_, audit) = s.get("/audit?action=schema.", Some(WRITE_TOKEN)).await;
    assert_eq!(audit["entries"][0]["target"], "arm-controller");
}
