//! Request ids, the `request` span and the access log, from tower-http's
//! `SetRequestId`, `Trace` and `PropagateRequestId` layers ([`wrap`]).
//!
//! Every request gets an id — the client's `X-Request-Id` when it is short
//! printable ASCII, else a new UUID — which is returned in the response and
//! recorded in a `request` span (`method`, `path`, `request_id`) around
//! everything the request does, so each log line it causes carries the id.
//! When the response is ready, one access line (`status`, `latency_us`) is
//! logged at `info` (`error` for a 5xx) under the target [`ACCESS_TARGET`].
//!
//! A middleware of our own doing the same was at most a few per cent faster
//! end to end (docs/performance.md, "Request path: own code vs the
//! standard"), so only the span, the line and the id rule are ours.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

use super::REQUEST_ID;

/// The `tracing` target of the access lines: `RUST_LOG=info,config_manager::access=warn`
/// silences them.
pub const ACCESS_TARGET: &str = "config_manager::access";

/// Longest client-sent request id that is kept (longer ones are replaced).
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// `inner` inside the request-id and trace layers (outermost first: an
/// unacceptable client id dropped, the id set, the span and access line,
/// the id copied to the response).
pub fn wrap<S>(
    inner: S,
) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send>
       + Clone
       + Send
       + Sync
       + 'static
where
    S: tower::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    ServiceBuilder::new()
        // The trace layer wraps the body to poll it inside the span; the
        // server and the tests take axum's body.
        .map_response(into_axum_body)
        .map_request(drop_unacceptable_id)
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span as fn(&Request) -> Span)
                .on_request(())
                .on_response(access_line as fn(&Response, Duration, &Span))
                // The access line already says 5xx at `error`.
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .service(inner)
}

fn into_axum_body<B>(resp: axum::http::Response<B>) -> Response
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    resp.map(Body::new)
}

/// The `request` span; the id is set by then.
fn request_span(req: &Request) -> Span {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id,
    )
}

/// The access line, logged inside the request's span.
fn access_line(resp: &Response, latency: Duration, _span: &Span) {
    let status = resp.status().as_u16();
    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if status >= 500 {
        tracing::error!(target: ACCESS_TARGET, status, latency_us, "finished processing request");
    } else {
        tracing::info!(target: ACCESS_TARGET, status, latency_us, "finished processing request");
    }
}

/// Removes a client-sent id that is not kept, so a new one is generated.
fn drop_unacceptable_id(mut req: Request) -> Request {
    if req
        .headers()
        .get(REQUEST_ID)
        .is_some_and(|v| !acceptable(v))
    {
        req.headers_mut().remove(REQUEST_ID);
    }
    req
}

/// Whether a client-sent id is kept: 1 to [`MAX_CLIENT_ID_LEN`] bytes of
/// visible ASCII (so it is safe to log and to echo).
fn acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_CLIENT_ID_LEN
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Random (v4) UUIDs from the thread-local generator: tower-http's
/// `MakeRequestUuid` asks the kernel for randomness on every request.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        Some(RequestId::new(new_request_id()))
    }
}

/// A random (v4) UUID, formatted without going through `Display`.
fn new_request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    let text = id.hyphenated().encode_lower(&mut buf);
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::capture::Capture;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    /// Runs one request with `client_id` through the layer over a handler
    /// answering `status`; returns the response's id and the log.
    fn run(status: StatusCode, client_id: Option<&str>) -> (String, String) {
        let capture = Capture::default();
        let service = wrap(tower::service_fn(move |_req: Request| async move {
            tracing::info!("inside the handler");
            Ok::<_, std::convert::Infallible>(
                axum::http::Response::builder()
                    .status(status)
                    .body(Body::empty())
                    .unwrap_or_default(),
            )
        }));
        let mut req = axum::http::Request::builder().uri("/api/config/health");
        if let Some(id) = client_id {
            req = req.header(REQUEST_ID, id);
        }
        let req = req.body(Body::empty()).unwrap_or_default();
        let runtime = tokio::runtime::Builder::new_current_thread().build();
        let resp = tracing::subscriber::with_default(capture.subscriber(), || {
            runtime.map(|rt| rt.block_on(service.oneshot(req)))
        });
        let id = match resp {
            Ok(Ok(resp)) => resp
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            _ => String::new(),
        };
        (id, capture.text())
    }

    #[test]
    fn every_line_carries_the_id_and_the_request_ends_with_an_access_line() {
        let (id, log) = run(StatusCode::OK, Some("client-id-7"));
        assert_eq!(id, "client-id-7");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        let span = "request{method=GET path=/api/config/health request_id=client-id-7}:";
        assert!(
            lines[0].contains(&format!(
                "INFO {span} config_manager::http::access_log::tests: inside the handler"
            )),
            "{log}"
        );
        assert!(lines[1].contains(&format!("INFO {span} config_manager::access: finished processing request status=200 latency_us=")), "{log}");
    }

    #[test]
    fn server_errors_are_logged_at_error_and_bad_ids_replaced() {
        let (id, log) = run(StatusCode::SERVICE_UNAVAILABLE, Some("two words"));
        assert_ne!(id, "two words");
        assert_eq!(id.len(), 36, "{id}");
        assert!(log.contains(&format!("ERROR request{{method=GET path=/api/config/health request_id={id}}}: config_manager::access: finished processing request status=503")), "{log}");
        assert!(!log.contains("two words"), "{log}");
    }

    #[test]
    fn generated_ids_are_distinct_uuids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        let text = a.to_str().unwrap_or_default();
        let parsed = uuid::Uuid::parse_str(text).map(|u| u.get_version_num());
        assert_eq!(parsed.ok(), Some(4), "{text}");
    }

    #[test]
    fn client_ids_must_be_short_printable_ascii() {
        assert!(acceptable(&HeaderValue::from_static("abc-123")));
        assert!(!acceptable(&HeaderValue::from_static("")));
        assert!(!acceptable(&HeaderValue::from_static("has space")));
        let long = "x".repeat(MAX_CLIENT_ID_LEN + 1);
        assert!(!acceptable(
            &HeaderValue::from_str(&long).unwrap_or_else(|_| HeaderValue::from_static(""))
        ));
        let high = HeaderValue::from_bytes(b"caf\xc3\xa9").ok();
        assert!(high.is_some_and(|v| !acceptable(&v)));
    }
}
