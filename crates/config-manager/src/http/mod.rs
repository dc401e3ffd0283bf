//! The HTTP layer: the whole route table in one place, the middleware, and one
//! module per resource.

pub mod access_log;
pub mod audit;
pub mod auth;
pub mod configs;
pub mod env_import;
pub mod error;
pub mod health;
pub mod history;
pub mod instances;
pub mod json;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod paging;
pub mod profiles;
pub mod rebuild;
pub mod search;
pub mod secrets;
pub mod server;
pub mod session;
mod state_ext;
pub use state_ext::ApiState;
pub mod transfer;

/// Moved to `auth` (they know no HTTP); re-exported for the handlers.
pub use config_manager_service::auth::{denials, login_limit};

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue};
use axum::routing::{delete, get, post, put};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use config_manager_service::state::AppState;
use error::ApiError;

/// Prefix of every API route.
pub const API_PREFIX: &str = "/api/config";

/// Every API route as `(method, path)`, in OpenAPI path syntax. The OpenAPI
/// document is tested against this table and this table against the router
/// (`tests/api.rs`, `openapi_document_is_served_and_lists_every_route`).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/openapi.json"),
    ("get", "/services"),
    ("get", "/services/{service}"),
    ("put", "/services/{service}"),
    ("patch", "/services/{service}"),
    ("get", "/services/{service}/versions"),
    ("get", "/services/{service}/instances"),
    ("delete", "/services/{service}/instances/{instance_id}"),
    ("post", "/services/{service}/import-env"),
    ("get", "/services/{service}/schema"),
    ("put", "/services/{service}/schema"),
    ("post", "/services/{service}/secrets/{key}/reveal"),
    ("post", "/search"),
    ("get", "/history"),
    ("post", "/history/restore"),
    ("post", "/restore"),
    ("get", "/profiles"),
    ("post", "/profiles"),
    ("get", "/profiles/{name}"),
    ("delete", "/profiles/{name}"),
    ("put", "/profiles/{name}/activate"),
    ("post", "/rebuild"),
    ("get", "/audit"),
    ("get", "/keys/status"),
    ("get", "/export"),
    ("post", "/import"),
];

/// Header carrying the request id (generated when the client sends none).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The HTTP service: the router inside the middleware that every request
/// passes (serve it with [`tower::make::Shared`]).
pub fn router(
    state: AppState,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone
       + Send
       + Sync
       + 'static {
    let api = |path: &str| format!("{API_PREFIX}{path}");
    let routes = Router::new()
        .route(&api("/health"), get(health::health))
        .route(&api("/openapi.json"), get(openapi::document))
        .route(&api("/services"), get(configs::list))
        .route(
            &api("/services/{service}"),
            get(configs::get).put(configs::put).patch(configs::patch),
        )
        .route(&api("/services/{service}/versions"), get(configs::versions))
        .route(&api("/services/{service}/instances"), get(instances::list))
        .route(
            &api("/services/{service}/instances/{instance_id}"),
            delete(instances::forget),
        )
        .route(
            &api("/services/{service}/import-env"),
            post(env_import::import_env),
        )
        .route(
            &api("/services/{service}/schema"),
            get(configs::schema).put(configs::put_schema),
        )
        .route(
            &api("/services/{service}/secrets/{key}/reveal"),
            post(secrets::reveal),
        )
        .route(&api("/search"), post(search::search))
        .route(&api("/history"), get(history::list))
        .route(&api("/history/restore"), post(history::restore))
        .route(&api("/restore"), post(history::point_in_time))
        .route(&api("/profiles"), get(profiles::list).post(profiles::save))
        .route(
            &api("/profiles/{name}"),
            get(profiles::get).delete(profiles::delete),
        )
        .route(&api("/profiles/{name}/activate"), put(profiles::activate))
        .route(&api("/rebuild"), post(rebuild::rebuild))
        .route(&api("/audit"), get(audit::list))
        .route(&api("/keys/status"), get(keys::status))
        .route(&api("/export"), get(transfer::export))
        .route(&api("/import"), post(transfer::import));
    let limit = state.max_body_bytes();
    // Routing, and the layers that need the matched route (the metrics'
    // route label) or must see every routed request (the timeout). Layers
    // added with `Router::layer` wrap every route separately and are cloned
    // and boxed on each request, so only these two sit here.
    let routes = routes
        // The web UI: its session calls and the embedded page (`/`, `/ui/*`).
        .merge(session::router())
        .merge(crate::ui::router())
        .route(
            config_manager_service::metrics::METRICS_PATH,
            get(metrics::scrape),
        )
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        // Outside the timeout so timed-out requests are counted too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track_requests,
        ))
        .with_state(state);
    // Everything that does not depend on the route wraps the router once
    // (outermost first), so a request pays for each layer once instead of a
    // boxed clone per layer (docs/performance.md).
    // Request id, `request` span and access line outermost (see `access_log`).
    access_log::wrap(
        ServiceBuilder::new()
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(DefaultBodyLimit::max(limit))
            .service(routes),
    )
}
