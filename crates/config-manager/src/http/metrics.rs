//! The HTTP side of the metrics: the layer that counts every request by its
//! route template, and `GET /metrics`. The registry itself (the service
//! crate's `metrics::Metrics`) knows nothing of axum.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use config_manager_service::metrics::{RequestMethod, CONTENT_TYPE};
use config_manager_service::state::AppState;

/// Counts every request by its matched route template, as
/// `axum::middleware::from_fn_with_state` (added with `Router::layer`, so it
/// runs after routing and `MatchedPath` is known). A tower layer of our own
/// was not measurably faster end to end (docs/performance.md, "Request
/// path: own code vs the standard").
pub async fn track_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = RequestMethod::from_token(req.method().as_str());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    state.metrics().observe_request(
        method,
        route.as_ref().map(MatchedPath::as_str),
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

/// `GET /metrics`: no token (like health); the content is counts and states,
/// never names, values or secrets.
pub async fn scrape(State(state): State<AppState>) -> Response {
    let metrics = state.metrics();
    metrics.refresh(&state.status().get(), state.uptime_seconds());
    metrics.refresh_applied(state.applied().totals());
    match metrics.encode() {
        Ok(body) => {
            let mut resp = body.into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "could not encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
