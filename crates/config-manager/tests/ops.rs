//! Operations, against the real binary and real SQLite files: Prometheus
//! metrics after known traffic, JSON logs with request ids, no token or
//! secret in any log line, graceful shutdown under a write burst, and the
//! export → import round trip.

// Helpers outside #[test] functions panic on failure too: that is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, READ_TOKEN, TTS_TOKEN, WRITE_TOKEN};
use serde_json::{json, Value};

const TTS: &str = "/services/tts-worker";
const SECRET: &str = "vendor-secret-value-9f8e7d6c";
const REBUILD: &str = "rebuild-token-0123456789abcdef";

/// The value of one series in an exposition (`None` when absent).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_after_known_traffic_use_route_templates() {
    let s = Server::start().await;
    for _ in 0..3 {
        let (status, _) = s.get(TTS, Some(READ_TOKEN)).await;
        assert_eq!(status, 200);
    }
    // Hostile and unknown names hit the same template series.
    for i in 0..5 {
        let (status, _) = s
            .get(&format!("/services/nope-{i}-x"), Some(READ_TOKEN))
            .await;
        assert_eq!(status, 404);
    }
    // Unrouted paths share one series.
    for i in 0..4 {
        let resp = s
            .http
            .get(format!("http://127.0.0.1:{}/random-{i}/path", s.port))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }
    s.patch_ok("tts-worker", json!({"volume_percent": 33}), 1)
        .await;
    let (status, _) = s.get("/services", None).await;
    assert_eq!(status, 401);

    let text = s.metrics().await;
    let route = "/api/config/services/{service}";
    assert_eq!(
        sample(
            &text,
            &format!(
                "config_manager_http_requests_total{{method=\"GET\",route=\"{route}\",status=\"200\"}}"
            )
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "config_manager_http_requests_total{{method=\"GET\",route=\"{route}\",status=\"404\"}}"
            )
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &text,
            "config_manager_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "config_manager_http_requests_total{{method=\"PATCH\",route=\"{route}\",status=\"200\"}}"
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "config_manager_http_requests_total{method=\"GET\",route=\"/api/config/services\",status=\"401\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "config_manager_http_request_duration_seconds_count{{method=\"GET\",route=\"{route}\"}}"
            )
        ),
        Some(8.0)
    );
    assert!(
        !text.contains("nope-") && !text.contains("random-"),
        "raw paths leaked into labels"
    );
    assert_eq!(
        sample(&text, "config_manager_config_changes_total"),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            "config_manager_db_operation_duration_seconds_count{outcome=\"ok\"}"
        )
        .unwrap()
            >= 5.0
    );
    assert!(
        sample(&text, "config_manager_lkg_writes_total{outcome=\"ok\"}").unwrap() >= 1.0,
        "the write refreshed the LKG cache"
    );
    for (series, value) in [
        ("config_manager_operational_mode{mode=\"normal\"}", 1.0),
        (
            "config_manager_operational_mode{mode=\"read-only-fallback\"}",
            0.0,
        ),
        ("config_manager_database_status{status=\"healthy\"}", 1.0),
        ("config_manager_database_status{status=\"corrupted\"}", 0.0),
        ("config_manager_mqtt_connected", 0.0),
        ("config_manager_backup_status{status=\"disabled\"}", 1.0),
        ("config_manager_last_backup_age_seconds", -1.0),
        ("config_manager_key_rotation_active", 0.0),
        ("config_manager_key_rotation_secrets_remaining", 0.0),
        (
            "config_manager_mqtt_publishes_total{outcome=\"error\"}",
            0.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series}\n{text}");
    }
    assert!(text.contains("config_manager_lkg_cache_valid "));
    assert!(text.contains("config_manager_build_info{version=\""));
    assert!(text.ends_with("# EOF\n"));
    // No token is needed, and the scrape itself is counted.
    let text = s.metrics().await;
    assert!(sample(
        &text,
        "config_manager_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}"
    )
    .is_some());
}

/// `GET /services/tts-worker` as a reader, sending `X-Request-Id: id`.
async fn get_with_request_id(s: &Server, id: &str) -> reqwest::Response {
    s.http
        .get(s.url(TTS))
        .header("X-API-Token", READ_TOKEN)
        .header("X-Request-Id", id)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn text_access_lines_carry_the_request_id_and_hostile_ids_are_replaced() {
    let s = Server::start().await;
    let id = format!("text-request-{}", std::process::id());
    let resp = get_with_request_id(&s, &id).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], id.as_str());
    // Too long, or not printable ASCII: not echoed, not logged; a new id.
    for hostile in ["x".repeat(129), "two words".to_owned(), String::new()] {
        let resp = get_with_request_id(&s, &hostile).await;
        assert_eq!(resp.status(), 200);
        let got = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(got, hostile);
        assert_eq!(
            uuid::Uuid::parse_str(&got)
                .map(|u| u.get_version_num())
                .ok(),
            Some(4),
            "a generated UUID: {got}"
        );
    }
    let want = format!(
        "INFO request{{method=GET path=/api/config/services/tts-worker request_id={id}}}: \
         config_manager::access: finished processing request status=200 latency_us="
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = s.log();
        if let Some(line) = log.lines().find(|l| l.contains(&want)) {
            // `2026-12-01T08:12:41.423290Z  INFO request{…`
            let stamp = line.split(' ').next().unwrap();
            assert!(
                time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
                    .is_ok(),
                "{line}"
            );
            assert!(
                !log.contains(&"x".repeat(129)),
                "a hostile id reached the log"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no access line {want:?} in:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn json_log_lines_parse_and_carry_the_request_id() {
    let s = Server::start_with(vec![("LOG_FORMAT".into(), "json".into())]).await;
    let id = format!("test-request-{}", std::process::id());
    let resp = get_with_request_id(&s, &id).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], id.as_str());
    // A generated id comes back and is logged too (a denial logs inside the request).
    let resp = s.http.get(s.url("/audit")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = s.log();
        let lines: Vec<Value> = log
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let with_id = |id: &str| {
            lines
                .iter()
                .filter(|l| l["span"]["request_id"] == id)
                .collect::<Vec<_>>()
        };
        let mine = with_id(&id);
        let denied = with_id(&generated);
        let done = mine.iter().any(|l| l["status"] == 200)
            && denied.iter().any(|l| l["message"] == "access denied")
            && denied.iter().any(|l| l["status"] == 401);
        if done {
            for l in mine.iter().chain(&denied) {
                assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
                assert_eq!(l["span"]["name"], "request");
                assert!(l["spans"].is_array());
            }
            assert!(mine
                .iter()
                .any(|l| l["span"]["path"] == "/api/config/services/tts-worker"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "request ids missing from:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every route of the API with the real tokens, a secret value, the rebuild
/// token and exports with secrets; then no log line may contain any of them.
async fn exercise_every_endpoint(s: &Server) {
    let bogus = "bogus-token-that-is-unknown-0000";
    let (status, body) = s
        .patch_config(
            "tts-worker",
            &json!({"config": {"eleven_api_key": SECRET, "volume_percent": 999}, "version": 1}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = s
        .patch_config(
            "tts-worker",
            &json!({"config": {"eleven_api_key": SECRET}, "version": 1, "reason": "key"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The secret leaves only through the audited calls.
    let (status, doc) = s
        .get(
            "/export?include_secrets=true&include_profiles=true",
            Some(WRITE_TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    assert!(doc.to_string().contains(SECRET));
    let (status, body) = s.post("/import", &doc).await;
    assert_eq!(status, 200, "{body}");
    for (method, path) in config_manager::http::ROUTES {
        let concrete = path
            .replace("{service}", "tts-worker")
            .replace("{name}", "night")
            .replace("{key}", "eleven_api_key");
        let body = match (*method, *path) {
            ("post", "/profiles") => json!({"profile_name": "night"}),
            ("post", "/search") => json!({"query": "api key"}),
            ("post", "/rebuild") => json!({"token": REBUILD}),
            ("post", "/services/{service}/secrets/{key}/reveal") => {
                json!({"reason": "log test"})
            }
            ("post", "/restore") => json!({"timestamp": "2020-01-01T00:00:00Z"}),
            ("post", "/history/restore") => {
                json!({"service": "tts-worker", "history_entries": [1]})
            }
            ("put" | "patch", _) => json!({"config": {"volume_percent": 50}, "version": 2}),
            // Any other POST (a login, say) gets a token in its body too.
            ("post", _) => json!({"token": WRITE_TOKEN}),
            _ => json!({}),
        };
        for token in [
            Some(WRITE_TOKEN),
            Some(READ_TOKEN),
            Some(TTS_TOKEN),
            Some(bogus),
            None,
        ] {
            s.send(&method.to_uppercase(), &concrete, token, &body)
                .await;
        }
    }
    let (status, _) = s.rebuild(WRITE_TOKEN, "wrong-but-long-token").await;
    assert_eq!(status, 403);
    let resp = s
        .http
        .get(format!("http://127.0.0.1:{}/metrics", s.port))
        .header("X-API-Token", WRITE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

fn assert_clean(log: &str, env_file: &str) {
    assert!(log.contains("request"), "the log captured nothing:\n{log}");
    let mut needles = vec![
        WRITE_TOKEN.to_owned(),
        READ_TOKEN.to_owned(),
        TTS_TOKEN.to_owned(),
        "bogus-token-that-is-unknown-0000".to_owned(),
        SECRET.to_owned(),
        REBUILD.to_owned(),
    ];
    // The generated keys: every base64 value and every PEM body line.
    for line in env_file.lines() {
        if let Some((k, v)) = line.split_once('=') {
            if k.ends_with("_BASE64") || k.ends_with("_KEY") {
                let v = v.trim_matches('"');
                for part in v.split("\\n") {
                    if part.len() >= 20 && !part.starts_with("-----") {
                        needles.push(part.to_owned());
                    }
                }
            }
        }
    }
    assert!(needles.len() >= 8, "keys not found in .env:\n{env_file}");
    for n in &needles {
        assert!(
            !log.contains(n.as_str()),
            "a token, secret or key appears in the log: {}…",
            &n[..8]
        );
    }
}

#[tokio::test]
async fn no_token_or_secret_in_any_log_line() {
    for format in ["text", "json"] {
        let s = Server::start_with(vec![
            ("LOG_FORMAT".into(), format.into()),
            ("RUST_LOG".into(), "debug".into()),
            ("REBUILD_TOKEN".into(), REBUILD.into()),
        ])
        .await;
        exercise_every_endpoint(&s).await;
        let env_file = common::read_env_file(&s.path(".env"));
        // The last request's log lines are written after its response.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_clean(&s.log(), &env_file);
    }
}

/// An integer field per service for the write burst: (service, key, min, span).
const BURST: [(&str, &str, i64, i64); 4] = [
    ("tts-worker", "volume_percent", 0, 200),
    ("router", "router_stream_max_chars", 1, 999),
    ("stt-worker", "vad_silence_duration_ms", 0, 2000),
    ("memory-worker", "memory_top_k", 1, 19),
];

/// Per service, every acknowledged `(version, value)`.
type Acked = BTreeMap<&'static str, Vec<(i64, i64)>>;

#[tokio::test]
async fn sigterm_during_a_write_burst_loses_no_acknowledged_write() {
    let mut s = Server::start().await;
    let base = s.url("");
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut writers = Vec::new();
    for (writer, (service, key, min, span)) in BURST.into_iter().enumerate() {
        for lane in 0..2 {
            let (base, stop, acks, acked) =
                (base.clone(), stop.clone(), acks.clone(), acked.clone());
            writers.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let url = format!("{base}/services/{service}");
                let mut n = writer as i64 * 7 + lane;
                let mut failures = 0;
                // Bounded: at most 2,000 attempts or 30 s per lane.
                let deadline = Instant::now() + Duration::from_secs(30);
                while failures < 20 && n < 2_000 && Instant::now() < deadline {
                    n += 2;
                    let value = min + n % span;
                    let current = match http
                        .get(&url)
                        .header("X-API-Token", WRITE_TOKEN)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => r.json::<Value>().await.ok(),
                        _ => None,
                    };
                    let Some(version) = current.and_then(|c| c["version"].as_i64()) else {
                        failures += 1;
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        continue;
                    };
                    let resp = http
                        .patch(&url)
                        .header("X-API-Token", WRITE_TOKEN)
                        .json(&json!({"config": {key: value}, "version": version}))
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status() == 200 => {
                            if let Ok(body) = r.json::<Value>().await {
                                if let Some(v) = body["version"].as_i64() {
                                    acked
                                        .lock()
                                        .unwrap()
                                        .entry(service)
                                        .or_default()
                                        .push((v, value));
                                    acks.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        }
                        Ok(r) if r.status() == 409 => {}
                        _ => {
                            failures += 1;
                            if stop.load(Ordering::SeqCst) {
                                break;
                            }
                        }
                    }
                }
            }));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.load(Ordering::SeqCst) < 40 {
        assert!(
            Instant::now() < deadline,
            "writers made no progress:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut child = s.child.take().expect("server running");
    stop.store(true, Ordering::SeqCst);
    let code = tokio::task::spawn_blocking(move || {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().ok().and_then(|st| st.code())
    })
    .await
    .unwrap();
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(code, Some(0), "exit code after SIGTERM:\n{}", s.log());
    assert!(s.log().contains("shutting down"), "{}", s.log());
    let acked = acked.lock().unwrap().clone();
    let total: usize = acked.values().map(Vec::len).sum();
    assert!(total >= 40);

    s.spawn().await;
    for (service, key, _, _) in BURST {
        let Some(writes) = acked.get(service) else {
            continue;
        };
        let (status, body) = s
            .get(
                &format!("/services/{service}/versions?limit=1000"),
                Some(READ_TOKEN),
            )
            .await;
        assert_eq!(status, 200);
        let versions: BTreeMap<i64, Value> = body["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["version"].as_i64().unwrap(), v["config"][key].clone()))
            .collect();
        for (version, value) in writes {
            assert_eq!(
                versions.get(version),
                Some(&json!(value)),
                "{service} v{version} was acknowledged with {key}={value} but is not stored"
            );
        }
        let last = writes.iter().map(|(v, _)| *v).max().unwrap();
        assert!(s.version(service).await >= last);
    }
}

#[tokio::test]
async fn export_import_round_trip_equals_the_original() {
    let a = Server::start().await;
    a.patch_ok(
        "tts-worker",
        json!({"volume_percent": 42, "eleven_api_key": SECRET}),
        1,
    )
    .await;
    a.patch_ok("router", json!({"router_stream_max_chars": 321}), 1)
        .await;
    let (status, _) = a
        .post(
            "/profiles",
            &json!({"profile_name": "night", "description": "quiet"}),
        )
        .await;
    assert_eq!(status, 201);

    // Roles: readers export without secrets; secrets need the write role.
    let (status, masked) = a.get("/export", Some(READ_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(masked["includes_secrets"], false);
    assert_eq!(
        masked["services"]["tts-worker"]["config"]["eleven_api_key"],
        "********"
    );
    assert!(masked.get("profiles").is_none());
    assert!(!masked.to_string().contains(SECRET));
    let (status, _) = a
        .get("/export?include_secrets=true", Some(READ_TOKEN))
        .await;
    assert_eq!(status, 403);
    let (status, _) = a.get("/export", Some(TTS_TOKEN)).await;
    assert_eq!(status, 403, "scoped tokens cannot export every service");
    let resp = a
        .http
        .get(a.url("/export?include_secrets=true&include_profiles=true"))
        .header("X-API-Token", WRITE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let original: Value = resp.json().await.unwrap();
    assert_eq!(original["format"], "config-manager-export");
    assert_eq!(
        original["services"]["tts-worker"]["config"]["eleven_api_key"],
        SECRET
    );
    let (_, audit) = a
        .get("/audit?action=config.export", Some(WRITE_TOKEN))
        .await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["actor"], "writer");
    assert_eq!(entry["detail"]["include_secrets"], true);

    // Into a fresh service with other keys: the same configuration comes out.
    let b = Server::start().await;
    let (status, out) = b.post("/import?reason=migrate", &original).await;
    assert_eq!(status, 200, "{out}");
    let updated: Vec<&str> = out["services_updated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(updated, ["router", "tts-worker"]);
    assert_eq!(out["profiles_saved"], json!(["night"]));
    let (_, copy) = b
        .get(
            "/export?include_secrets=true&include_profiles=true",
            Some(WRITE_TOKEN),
        )
        .await;
    for (name, svc) in original["services"].as_object().unwrap() {
        assert_eq!(svc["config"], copy["services"][name]["config"], "{name}");
    }
    assert_eq!(original["profiles"], copy["profiles"]);
    let (_, history) = b
        .get(
            "/history?service=tts-worker&key=volume_percent",
            Some(READ_TOKEN),
        )
        .await;
    let entry = &history["entries"][0];
    assert_eq!(entry["change_type"], "import");
    assert_eq!(entry["change_reason"], "migrate");
    assert_eq!(entry["new_value"], 42);
    let (_, got) = b.get(TTS, Some(TTS_TOKEN)).await;
    assert_eq!(got["config"]["eleven_api_key"], SECRET);

    // Importing the same document again changes nothing.
    let (status, out) = b.post("/import", &original).await;
    assert_eq!(status, 200);
    assert_eq!(out["services_updated"], json!([]));

    // All or nothing: one invalid value fails the whole import.
    let mut bad = original.clone();
    bad["services"]["router"]["config"]["router_stream_max_chars"] = json!(5);
    bad["services"]["tts-worker"]["config"]["volume_percent"] = json!(999);
    let before = b.version("router").await;
    let (status, problem) = b.post("/import", &bad).await;
    assert_eq!(status, 422, "{problem}");
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/services/tts-worker/config/volume_percent"]);
    assert_eq!(b.version("router").await, before, "nothing was written");

    // Dry run reports without writing; stale versions conflict.
    bad["services"]["tts-worker"]["config"]["volume_percent"] = json!(7);
    let (status, out) = b.post("/import?dry_run=true", &bad).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["dry_run"], true);
    assert_eq!(b.version("router").await, before);
    // Optimistic locking over the whole document: someone changes tts-worker
    // after the export, so an import that expects the exported versions fails.
    a.patch_ok("tts-worker", json!({"volume_percent": 43}), 2)
        .await;
    let (status, problem) = a.post("/import?expect_versions=true", &original).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["current_version"], 3);
    let (status, _) = b.post("/import?expect_versions=true", &original).await;
    assert_eq!(
        status, 400,
        "versions of another database's epoch mean nothing"
    );
    // Scoped and read-only tokens cannot import.
    for token in [READ_TOKEN, TTS_TOKEN] {
        let (status, _) = b.send("POST", "/import", Some(token), &original).await;
        assert_eq!(status, 403);
    }
}
