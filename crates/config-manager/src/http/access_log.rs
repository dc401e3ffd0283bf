//! Request ids, the `request` span and the access log, as one middleware.
//!
//! Every request gets an id — the client's `X-Request-Id` when it is short
//! printable ASCII, else a new UUID — which is returned in the response and
//! recorded in a `request` span (`method`, `path`, `request_id`) around
//! everything the request does, so each log line it causes carries the id.
//! When the response is ready, one access line (`status`, `latency_us`) is
//! logged at `info` (`error` for a 5xx) under the target [`ACCESS_TARGET`].
//!
//! This replaces tower-http's `SetRequestId`, `Trace` and `PropagateRequestId`
//! layers: together they cost a cached GET about a quarter of its CPU
//! (docs/performance.md) — a UUID formatted through `Display`, the id copied
//! into the request and the response, the span entered again for every poll
//! of the response body. Here the id is formatted once on the stack, shared
//! by reference count, and the body is passed through untouched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{HeaderValue, Request, Response};
use tracing::instrument::{Instrument, Instrumented};

use super::REQUEST_ID;

/// The `tracing` target of the access lines: `RUST_LOG=info,config_manager::access=warn`
/// silences them.
pub const ACCESS_TARGET: &str = "config_manager::access";

/// Longest client-sent request id that is kept (longer ones are replaced).
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// The layer; see the module documentation.
#[derive(Clone, Copy, Default)]
pub struct AccessLogLayer;

impl<S> tower::Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog { inner }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for AccessLog<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let started = Instant::now();
        let id = match req.headers().get(REQUEST_ID).filter(|v| acceptable(v)) {
            Some(client) => client.clone(),
            None => new_request_id(),
        };
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = %id.to_str().unwrap_or("-"),
        );
        let response = span.in_scope(|| self.inner.call(req));
        AccessLogFuture {
            inner: response.instrument(span),
            id: Some(id),
            started,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AccessLog`]: the inner future inside the
    /// `request` span, then the access line and the `X-Request-Id` header.
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        id: Option<HeaderValue>,
        started: Instant,
    }
}

impl<F, B, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: std::fmt::Display,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = std::task::ready!(this.inner.as_mut().poll(cx));
        let latency_us = u64::try_from(this.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _entered = this.inner.span().enter();
        Poll::Ready(match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                if status >= 500 {
                    tracing::error!(target: ACCESS_TARGET, status, latency_us, "finished processing request");
                } else {
                    tracing::info!(target: ACCESS_TARGET, status, latency_us, "finished processing request");
                }
                if let Some(id) = this.id.take() {
                    resp.headers_mut().insert(REQUEST_ID, id);
                }
                Ok(resp)
            }
            Err(e) => {
                tracing::error!(target: ACCESS_TARGET, error = %e, latency_us, "request failed");
                Err(e)
            }
        })
    }
}

/// Whether a client-sent id is kept: 1 to [`MAX_CLIENT_ID_LEN`] bytes of
/// visible ASCII (so it is safe to log and to echo).
fn acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_CLIENT_ID_LEN
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// A random (v4) UUID from the thread-local generator — no `getrandom`
/// system call per request — formatted without going through `Display`.
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
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::{Layer, ServiceExt};

    /// Runs one request with `client_id` through the layer over a handler
    /// answering `status`; returns the response's id and the log.
    fn run(status: StatusCode, client_id: Option<&str>) -> (String, String) {
        let capture = Capture::default();
        let service =
            AccessLogLayer.layer(tower::service_fn(move |_req: Request<Body>| async move {
                tracing::info!("inside the handler");
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .status(status)
                        .body(Body::empty())
                        .unwrap_or_default(),
                )
            }));
        let mut req = Request::builder().uri("/api/config/health");
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
