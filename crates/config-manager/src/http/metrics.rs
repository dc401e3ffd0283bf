//! The HTTP side of the metrics: the layer that counts every request by its
//! route template, and `GET /metrics`. The registry itself
//! ([`config_manager_service::metrics::Metrics`]) knows nothing of axum.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use config_manager_service::metrics::{RequestMethod, CONTENT_TYPE};
use config_manager_service::state::AppState;

/// Layer counting every request by its matched route template. It is added
/// with `Router::layer`, so it runs after routing and `MatchedPath` is known.
///
/// A plain tower layer rather than `axum::middleware::from_fn`: `from_fn`
/// clones and boxes the whole inner service on every request (the measured
/// cost is in docs/performance.md).
#[derive(Clone)]
pub struct TrackRequestsLayer {
    state: AppState,
}

impl TrackRequestsLayer {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> tower::Layer<S> for TrackRequestsLayer {
    type Service = TrackRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackRequests {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service of [`TrackRequestsLayer`].
#[derive(Clone)]
pub struct TrackRequests<S> {
    inner: S,
    state: AppState,
}

impl<S> tower::Service<Request> for TrackRequests<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackRequestsFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        TrackRequestsFuture {
            started: Instant::now(),
            method: req.method().clone(),
            route: req.extensions().get::<MatchedPath>().cloned(),
            inner: self.inner.call(req),
            state: self.state.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`TrackRequests`]: counts the request when the
    /// response is ready (no box per request).
    pub struct TrackRequestsFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        method: Method,
        route: Option<MatchedPath>,
        state: AppState,
    }
}

impl<F, E> std::future::Future for TrackRequestsFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let resp = std::task::ready!(this.inner.poll(cx))?;
        this.state.metrics().observe_request(
            RequestMethod::from_token(this.method.as_str()),
            this.route.as_ref().map(MatchedPath::as_str),
            resp.status().as_u16(),
            this.started.elapsed(),
        );
        std::task::Poll::Ready(Ok(resp))
    }
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
