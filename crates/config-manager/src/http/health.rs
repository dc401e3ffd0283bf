//! `GET /health`: the fields of the MQTT health contract, open to everyone
//! (container probes) and free of secrets.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use config_manager_core::health::{HealthStatus, OperationalMode};

pub use config_manager_service::health::{snapshot, status_of};
use config_manager_service::state::AppState;

/// `GET /health`: 200 when the service is healthy and in normal mode, 503
/// otherwise (same body), so load balancers and probes can use the code.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthStatus>) {
    let h = snapshot(&state);
    let code = if h.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(h))
}

/// Whether the service accepts writes.
pub fn writable(state: &AppState) -> bool {
    state.status().get().mode == OperationalMode::Normal
}
