//! HTTP rules that need no process, port or broker: the router is called
//! in-process with `tower::ServiceExt::oneshot` on a state opened in a temp
//! directory (`serve::Service::open`, the same start-up path as the binary).
//! Process-level behaviour (signals, MQTT, backups) stays in the other test
//! files, which run the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::{to_bytes, Body};
use axum::http::{header, Method, Request, StatusCode};
use axum::response::Response;
use config_manager::serve::Service;
use serde_json::{json, Value};
use tower::ServiceExt;

#[path = "common/inproc.rs"]
mod inproc;
use inproc::{open, READ, TTS, TTS_WRITE, WRITE};

async fn call(service: &Service, req: Request<Body>) -> Response {
    config_manager::http::router(service.state().clone())
        .oneshot(req)
        .await
        .unwrap()
}

fn req(method: Method, path: &str, token: Option<&str>) -> axum::http::request::Builder {
    let b = Request::builder()
        .method(method)
        .uri(format!("/api/config{path}"));
    match token {
        Some(t) => b.header("x-api-token", t),
        None => b,
    }
}

fn empty(method: Method, path: &str, token: Option<&str>) -> Request<Body> {
    req(method, path, token).body(Body::empty()).unwrap()
}

fn json_body(method: Method, path: &str, token: &str, body: &Value) -> Request<Body> {
    req(method, path, Some(token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Status and the problem document (asserting its content type and shape).
async fn problem(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/problem+json",
        "{status}"
    );
    let body: Value =
        serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:config-manager:problem:"));
    (status, body)
}

#[tokio::test]
async fn missing_and_unknown_tokens_get_401_with_a_problem_document() {
    let (_dir, s) = open().await;
    for token in [None, Some("not-a-configured-token-000")] {
        let resp = call(&s, empty(Method::GET, "/services", token)).await;
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "X-API-Token");
        let (status, body) = problem(resp).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["type"], "urn:config-manager:problem:unauthorized");
    }
}

#[tokio::test]
async fn a_read_token_cannot_write() {
    let (_dir, s) = open().await;
    let body = json!({"config": {"volume_percent": 50}, "version": 1});
    let (status, body) = problem(
        call(
            &s,
            json_body(Method::PATCH, "/services/tts-worker", READ, &body),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["detail"], "this call needs the config.write role");
}

#[tokio::test]
async fn scoped_tokens_reach_their_service_only() {
    let (_dir, s) = open().await;
    let own = call(&s, empty(Method::GET, "/services/tts-worker", Some(TTS))).await;
    assert_eq!(own.status(), StatusCode::OK);
    for path in [
        "/services/router",
        "/services/router/versions",
        "/services/router/schema",
    ] {
        let (status, body) = problem(call(&s, empty(Method::GET, path, Some(TTS))).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(
            body["detail"], "this token is not allowed to access this service",
            "{path}"
        );
    }
    // Endpoints that span every service refuse scoped tokens outright.
    for (path, detail) in [
        ("/audit", "service-scoped tokens cannot read the audit log"),
        (
            "/keys/status",
            "service-scoped tokens cannot read key status",
        ),
        (
            "/profiles",
            "profiles span every service; service-scoped tokens cannot use them",
        ),
        (
            "/export",
            "export and import span every service; service-scoped tokens cannot use them",
        ),
        ("/history", "a service-scoped token must name its service"),
    ] {
        let (status, body) =
            problem(call(&s, empty(Method::GET, path, Some(TTS_WRITE))).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body["detail"], detail, "{path}");
    }
    // Unscoped tokens pass the same checks (the read role suffices here).
    let audit = call(&s, empty(Method::GET, "/keys/status", Some(READ))).await;
    assert_eq!(audit.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let (_dir, s) = open().await;
    let (status, _) =
        problem(call(&s, empty(Method::GET, "/no-such-thing", Some(READ))).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = problem(
        call(
            &s,
            empty(Method::DELETE, "/services/tts-worker", Some(WRITE)),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        body["type"],
        "urn:config-manager:problem:method-not-allowed"
    );
    let (status, _) = problem(
        call(
            &s,
            empty(Method::GET, "/services/no-such-service", Some(READ)),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bodies_are_checked_for_type_size_and_version() {
    let (_dir, s) = open().await;
    let path = "/services/tts-worker";
    let wrong_type = req(Method::PATCH, path, Some(WRITE))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"config":{}}"#))
        .unwrap();
    let (status, _) = problem(call(&s, wrong_type).await).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = json!({"config": {"voice": "x".repeat(2 << 20)}, "version": 1});
    let (status, _) = problem(call(&s, json_body(Method::PATCH, path, WRITE, &huge)).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let unversioned = json!({"config": {"volume_percent": 50}});
    let (status, body) =
        problem(call(&s, json_body(Method::PATCH, path, WRITE, &unversioned)).await).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(body["type"], "urn:config-manager:problem:version-required");
}

#[tokio::test]
async fn etag_and_if_match_guard_against_lost_updates() {
    let (_dir, s) = open().await;
    let path = "/services/tts-worker";
    let got = call(&s, empty(Method::GET, path, Some(WRITE))).await;
    assert_eq!(got.status(), StatusCode::OK);
    let etag = got.headers()[header::ETAG].to_str().unwrap().to_owned();

    let change = |volume: i64| {
        req(Method::PATCH, path, Some(WRITE))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::IF_MATCH, &etag)
            .body(Body::from(
                json!({"config": {"volume_percent": volume}}).to_string(),
            ))
            .unwrap()
    };
    let first = call(&s, change(40)).await;
    assert_eq!(first.status(), StatusCode::OK);
    let new_etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);

    // The same If-Match again is stale now: 409 with the current version.
    let (status, body) = problem(call(&s, change(60)).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["current_version"].as_i64().unwrap() > 0);

    let after = call(&s, empty(Method::GET, path, Some(READ))).await;
    let after: Value =
        serde_json::from_slice(&to_bytes(after.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(after["config"]["volume_percent"], 40, "{after}");
}

/// Issue 23: a valid RFC 3339 time whose UTC form is past year 9999 panicked
/// the handler (empty reply). Now each place answers 400 with a problem.
#[tokio::test]
async fn out_of_range_timestamps_are_400_not_a_panic() {
    let (_dir, service) = open().await;
    let late = "9999-12-31T23:59:59-23:59";
    for param in ["start_date", "end_date"] {
        let resp = call(
            &service,
            empty(
                Method::GET,
                &format!("/history?{param}={}", late.replace('+', "%2B")),
                Some(READ),
            ),
        )
        .await;
        let (status, body) = problem(resp).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{param}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(param), "{body}");
    }
    let resp = call(
        &service,
        json_body(
            Method::POST,
            "/history/restore",
            WRITE,
            &json!({"timestamp": late, "service": "tts-worker"}),
        ),
    )
    .await;
    let (status, body) = problem(resp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("timestamp"),
        "{body}"
    );
    assert!(
        !body.to_string().contains(late),
        "the input is not echoed: {body}"
    );
}
