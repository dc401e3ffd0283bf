//! THROWAWAY (reverted in the next commit): the standard request-path
//! layers, switched on at start-up with `REQPATH_STD` (comma-separated:
//! `access`, `uuid`, `metrics`; the logging words `fmt`, `writer`,
//! `appender` are read by `logging.rs`), for the interleaved A/B comparison
//! in docs/performance.md.

use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use super::access_log::{acceptable, ACCESS_TARGET};
use super::REQUEST_ID;
use crate::state::AppState;

/// Which parts run the standard code.
#[derive(Clone, Copy, Default)]
pub struct Std {
    pub access: bool,
    pub uuid: bool,
    pub metrics: bool,
}

/// Reads `REQPATH_STD`.
pub fn from_env() -> Std {
    let v = std::env::var("REQPATH_STD").unwrap_or_default();
    let has = |w: &str| v.split(',').any(|x| x == w);
    Std {
        access: has("access"),
        uuid: has("uuid"),
        metrics: has("metrics"),
    }
}

/// The request metrics as `axum::middleware::from_fn_with_state`.
pub async fn track_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    state.metrics().observe_request(
        &method,
        route.as_ref().map(MatchedPath::as_str),
        resp.status(),
        started.elapsed(),
    );
    resp
}

/// Request ids from the thread-local generator (as before commit ff240b1).
#[derive(Clone, Copy)]
pub struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        HeaderValue::from_str(&id.to_string()).ok().map(RequestId::new)
    }
}

/// Either id maker.
#[derive(Clone, Copy)]
pub enum Ids {
    Thread(RandomRequestId),
    Uuid(MakeRequestUuid),
}

impl MakeRequestId for Ids {
    fn make_request_id<B>(&mut self, req: &axum::http::Request<B>) -> Option<RequestId> {
        match self {
            Ids::Thread(m) => m.make_request_id(req),
            Ids::Uuid(m) => m.make_request_id(req),
        }
    }
}

/// The outer stack with tower-http's request-id and trace layers.
pub fn router_std_access(
    state: AppState,
    std: Std,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::http::Response<
        impl axum::body::HttpBody<
                Data = axum::body::Bytes,
                Error: Into<Box<dyn std::error::Error + Send + Sync>>,
            > + Send
            + 'static,
    >,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone
       + Send
       + Sync
       + 'static {
    let limit = state.max_body_bytes();
    let routes = super::routes(state, std);
    let ids = if std.uuid {
        Ids::Uuid(MakeRequestUuid)
    } else {
        Ids::Thread(RandomRequestId)
    };
    ServiceBuilder::new()
        // Client ids that are not short printable ASCII are replaced.
        .map_request(|mut req: Request| {
            if req.headers().get(REQUEST_ID).is_some_and(|v| !acceptable(v)) {
                req.headers_mut().remove(REQUEST_ID);
            }
            req
        })
        .layer(SetRequestIdLayer::new(REQUEST_ID, ids))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                .on_request(())
                .on_response(|resp: &Response, latency: Duration, _span: &Span| {
                    let status = resp.status().as_u16();
                    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                    if status >= 500 {
                        tracing::error!(target: ACCESS_TARGET, status, latency_us, "finished processing request");
                    } else {
                        tracing::info!(target: ACCESS_TARGET, status, latency_us, "finished processing request");
                    }
                })
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(DefaultBodyLimit::max(limit))
        .service(routes)
}
