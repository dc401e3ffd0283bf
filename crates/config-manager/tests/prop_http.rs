//! No panic from any input (issue 23), over HTTP: arbitrary and near-valid
//! JSON bodies and query strings go through the real router in-process
//! (`Service::open` + `http::router(state).oneshot`, as tests/router.rs).
//! Every answer must be a well-formed response below 500: a handler panic
//! either unwinds out of `oneshot` (the router has no catch-panic layer) or,
//! inside a blocking task, becomes a 500 ("blocking task failed"), and both
//! fail the property. Each `#[test]` is also a `make fuzz` target of the
//! same name (docs/testing.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::{to_bytes, Body};
use axum::http::{header, Method, Request, StatusCode};
use config_manager::serve::Service;
use config_manager_testkit::proptest::prelude::*;
use config_manager_testkit::{bytes, check, documents, json, schema, text};
use serde_json::{json, Value};
use tower::ServiceExt;

#[path = "common/inproc.rs"]
mod inproc;
use inproc::{READ, TTS, TTS_WRITE, WRITE};

/// One service per property, on a runtime the cases block on.
struct Harness {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    service: Service,
}

impl Harness {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (dir, service) = rt.block_on(inproc::open());
        Self {
            rt,
            _dir: dir,
            service,
        }
    }

    /// Sends one request; `Err` when the answer breaks the property.
    fn send(
        &self,
        method: Method,
        path_and_query: &str,
        token: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Value), TestCaseError> {
        let builder = Request::builder()
            .method(method.clone())
            .uri(format!("/api/config{path_and_query}"))
            .header("x-api-token", token);
        let request = match body {
            Some(b) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b)),
            None => builder.body(Body::empty()),
        };
        // A URI the HTTP parser would refuse never reaches the router.
        let Ok(request) = request else {
            return Ok((StatusCode::BAD_REQUEST, Value::Null));
        };
        let router = config_manager::http::router(self.service.state().clone());
        self.rt.block_on(async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let json_body = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("json"));
            let bytes = to_bytes(response.into_body(), 64 << 20)
                .await
                .map_err(|e| TestCaseError::fail(format!("body: {e}")))?;
            prop_assert!(
                status.as_u16() < 500,
                "{method} {path_and_query}: {status} {}",
                String::from_utf8_lossy(&bytes)
            );
            let value = if json_body {
                serde_json::from_slice(&bytes).map_err(|e| {
                    TestCaseError::fail(format!("{method} {path_and_query}: not JSON: {e}"))
                })?
            } else {
                Value::Null
            };
            if status.is_client_error() {
                prop_assert_eq!(
                    value["status"].as_u64(),
                    Some(u64::from(status.as_u16())),
                    "{} {}: problem document {}",
                    method,
                    path_and_query,
                    value
                );
            }
            Ok((status, value))
        })
    }

    /// The current version of `service` (0 when it has none).
    fn version(&self, service: &str) -> i64 {
        self.send(
            Method::GET,
            &format!("/services/{}", enc(service)),
            WRITE,
            None,
        )
        .ok()
        .and_then(|(_, v)| v["version"].as_i64())
        .unwrap_or(0)
    }

    /// After a property: the service still answers.
    fn still_healthy(&self) {
        let (status, _) = self.send(Method::GET, "/health", READ, None).unwrap();
        assert_eq!(status, StatusCode::OK);
    }
}

/// Percent-encodes everything outside RFC 3986's unreserved set.
fn enc(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn token() -> impl Strategy<Value = &'static str> {
    prop_oneof![6 => Just(WRITE), 1 => Just(READ), 1 => Just(TTS), 1 => Just(TTS_WRITE)]
}

/// Services the router knows, and names near the grammar.
fn service() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec!["tts-worker", "router", "stt-worker", "memory-worker"]).prop_map(str::to_owned),
        1 => text::service_like(),
    ]
    .boxed()
}

/// A body: near-valid JSON for the endpoint, any JSON, or any bytes.
fn body(near_valid: BoxedStrategy<Value>) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => near_valid.prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => json::value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => json::deep(140).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => bytes::any_bytes(128),
    ]
    .boxed()
}

/// `{config, version, reason, service}` with the members and their values
/// generated; `version` is the current one when the case says so (then
/// the write can go through).
fn write_body() -> BoxedStrategy<Value> {
    let fields = [
        "volume_percent",
        "tts_provider",
        "piper_voice",
        "eleven_api_key",
        "wake_word",
        "log_level",
    ];
    let extra = prop_oneof![
        3 => prop::option::of(text::string()).prop_map(|reason| {
            let mut m = serde_json::Map::new();
            if let Some(r) = reason {
                m.insert("reason".into(), Value::from(r));
            }
            m
        }),
        1 => json::object_over(&["config", "version", "reason", "service"]),
    ];
    (
        json::object_over(&fields),
        extra,
        prop::option::of(json::number()),
    )
        .prop_map(|(config, mut extra, version)| {
            extra.insert("config".into(), Value::Object(config));
            // The marker "current" becomes the service's version when sent.
            let version = version.unwrap_or_else(|| Value::from("current"));
            extra.insert("version".into(), version);
            Value::Object(extra)
        })
        .boxed()
}

/// Replaces the marker `"version": "current"` with the service's version.
fn with_current_version(h: &Harness, service: &str, mut body: Vec<u8>) -> Vec<u8> {
    if let Ok(Value::Object(mut o)) = serde_json::from_slice::<Value>(&body) {
        if o.get("version") == Some(&Value::from("current")) {
            o.insert("version".into(), Value::from(h.version(service)));
            body = serde_json::to_vec(&o).unwrap();
        }
    }
    body
}

#[test]
fn http_config_writes() {
    let h = Harness::new();
    let strategy = (
        prop::sample::select(vec![Method::PUT, Method::PATCH]),
        service(),
        body(write_body()),
        token(),
    );
    check(
        "http_config_writes",
        64,
        strategy,
        |(method, svc, body, token)| {
            let body = with_current_version(&h, &svc, body);
            h.send(
                method,
                &format!("/services/{}", enc(&svc)),
                token,
                Some(body),
            )?;
            Ok(())
        },
    );
    h.still_healthy();
}

#[test]
fn http_schema_registration() {
    let h = Harness::new();
    let name = prop_oneof![
        3 => "prop-[a-z]{1,6}",
        1 => service(),
    ];
    let strategy = (name, body(schema::document()), token());
    check(
        "http_schema_registration",
        48,
        strategy,
        |(name, body, token)| {
            let path = format!("/services/{}/schema", enc(&name));
            let (status, _) = h.send(Method::PUT, &path, token, Some(body))?;
            if status.is_success() {
                // A registered schema is then read, shown and written against.
                h.send(Method::GET, &path, token, None)?;
                h.send(
                    Method::GET,
                    &format!("/services/{}?include_fields=true", enc(&name)),
                    token,
                    None,
                )?;
                let write = json!({"config": {}, "version": h.version(&name)});
                h.send(
                    Method::PUT,
                    &format!("/services/{}", enc(&name)),
                    token,
                    Some(write.to_string().into_bytes()),
                )?;
            }
            Ok(())
        },
    );
    h.still_healthy();
}

/// The bodies of the other writing endpoints.
fn other_body(endpoint: &'static str) -> BoxedStrategy<Value> {
    let names: &[&str] = match endpoint {
        "profiles" => &["profile_name", "description"],
        "history_restore" => &["service", "history_entries", "reason"],
        "restore" => &["timestamp", "service", "reason"],
        "search" => &[
            "query",
            "service_filter",
            "complexity_filter",
            "type_filter",
            "max_results",
        ],
        "reveal" => &["reason"],
        _ => &[],
    };
    let special: BoxedStrategy<(String, Value)> = match endpoint {
        "restore" => text::rfc3339_like()
            .prop_map(|t| ("timestamp".to_owned(), Value::from(t)))
            .boxed(),
        "history_restore" => prop::collection::vec(prop_oneof![any::<i64>(), 0i64..50], 0..4)
            .prop_map(|ids| ("history_entries".to_owned(), Value::from(ids)))
            .boxed(),
        "search" => prop_oneof![Just("volume"), Just("tts"), Just(""), Just("%"), Just("_")]
            .prop_map(|q| ("query".to_owned(), Value::from(q)))
            .boxed(),
        _ => Just(("profile_name".to_owned(), Value::from("night"))).boxed(),
    };
    (json::object_over(names), special, service())
        .prop_map(|(mut o, (k, v), svc)| {
            o.entry(k).or_insert(v);
            if let Some(s) = o.get_mut("service") {
                if !s.is_string() {
                    *s = Value::from(svc);
                }
            }
            Value::Object(o)
        })
        .boxed()
}

#[test]
fn http_other_bodies() {
    let h = Harness::new();
    let endpoint = prop::sample::select(vec![
        "profiles",
        "history_restore",
        "restore",
        "search",
        "reveal",
        "activate",
    ]);
    let strategy = endpoint.prop_flat_map(|e| {
        (
            Just(e),
            body(other_body(e)),
            prop_oneof![text::string(), Just("night".to_owned())],
            service(),
            prop_oneof![Just("eleven_api_key".to_owned()), text::key()],
            token(),
        )
    });
    check(
        "http_other_bodies",
        96,
        strategy,
        |(endpoint, body, name, svc, key, token)| {
            let (method, path) = match endpoint {
                "profiles" => (Method::POST, "/profiles".to_owned()),
                "history_restore" => (Method::POST, "/history/restore".to_owned()),
                "restore" => (Method::POST, "/restore".to_owned()),
                "search" => (Method::POST, "/search".to_owned()),
                "reveal" => (
                    Method::POST,
                    format!("/services/{}/secrets/{}/reveal", enc(&svc), enc(&key)),
                ),
                _ => (Method::PUT, format!("/profiles/{}/activate", enc(&name))),
            };
            h.send(method, &path, token, Some(body))?;
            if endpoint == "profiles" {
                h.send(
                    Method::GET,
                    &format!("/profiles/{}", enc(&name)),
                    token,
                    None,
                )?;
            }
            Ok(())
        },
    );
    h.still_healthy();
}

#[test]
fn http_import() {
    let h = Harness::new();
    let query = prop::collection::vec(
        (
            json::name_from(&["dry_run", "expect_versions", "reason"]),
            prop_oneof![
                Just("true".to_owned()),
                Just("false".to_owned()),
                text::string()
            ],
        ),
        0..3,
    );
    let strategy = (body(documents::import()), query, token());
    check("http_import", 64, strategy, |(body, query, token)| {
        h.send(
            Method::POST,
            &format!("/import{}", query_string(&query)),
            token,
            Some(body),
        )?;
        Ok(())
    });
    h.still_healthy();
}

fn query_string(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

/// Query parameters of the list endpoints, with values of every kind.
fn query() -> impl Strategy<Value = Vec<(String, String)>> {
    let names = [
        "service",
        "key",
        "start_date",
        "end_date",
        "limit",
        "before_id",
        "actor",
        "action",
        "outcome",
        "include_fields",
        "include_secrets",
        "include_profiles",
    ];
    let value = prop_oneof![
        2 => text::rfc3339_like(),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec!["0", "1", "1000", "4294967296", "-1", "true", "false", "", "1e3"]).prop_map(str::to_owned),
        2 => service(),
        2 => text::string(),
    ];
    prop::collection::vec((json::name_from(&names), value), 0..5)
}

#[test]
fn http_queries() {
    let h = Harness::new();
    // Some history to page through.
    for volume in [10, 20, 30] {
        let body =
            json!({"config": {"volume_percent": volume}, "version": h.version("tts-worker")});
        h.send(
            Method::PATCH,
            "/services/tts-worker",
            WRITE,
            Some(body.to_string().into_bytes()),
        )
        .unwrap();
    }
    let path = prop_oneof![
        Just("/history".to_owned()),
        Just("/audit".to_owned()),
        Just("/export".to_owned()),
        Just("/services".to_owned()),
        service().prop_map(|s| format!("/services/{}/versions", enc(&s))),
        service().prop_map(|s| format!("/services/{}/instances", enc(&s))),
        service().prop_map(|s| format!("/services/{}", enc(&s))),
        (service(), text::instance_like()).prop_map(|(s, i)| format!(
            "/services/{}/instances/{}",
            enc(&s),
            enc(&i)
        )),
    ];
    // Raw query text too: unencoded, repeated and broken pairs.
    let raw = prop_oneof![
        query().prop_map(|q| query_string(&q)),
        "[?&=a-z0-9%+]{0,30}",
    ];
    check(
        "http_queries",
        128,
        (path, raw, token()),
        |(path, q, token)| {
            let method = if path.contains("/instances/") {
                Method::DELETE
            } else {
                Method::GET
            };
            let q = if q.is_empty() || q.starts_with('?') {
                q
            } else {
                format!("?{q}")
            };
            h.send(method, &format!("{path}{q}"), token, None)?;
            Ok(())
        },
    );
    h.still_healthy();
}
