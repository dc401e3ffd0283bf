//! `GET /keys/status`: the master key in use, how many secrets each key
//! seals, re-encryption progress, and secrets no configured key can open.

use crate::http::ApiState;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::auth::{Unscoped, UnscopedUse};
use super::error::ApiResult;
use config_manager_service::auth::Role;
use config_manager_service::state::AppState;

/// Reading the key status: read role, unscoped tokens only.
pub enum ReadKeyStatus {}

impl UnscopedUse for ReadKeyStatus {
    const ROLE: Role = Role::Read;
    const REFUSAL: &'static str = "service-scoped tokens cannot read key status";
}

/// `GET /keys/status`
pub async fn status(
    State(state): State<AppState>,
    _: Unscoped<ReadKeyStatus>,
) -> ApiResult<Json<Value>> {
    let census = state.run(|m| Ok(m.key_census()?)).await?;
    let rotation = state.status().get().rotation;
    Ok(Json(json!({
        "master_key_id": census.current_key_id,
        "secrets_total": census.total,
        "secrets_current": census.current,
        "secrets_pending": census.pending,
        "secrets_unavailable": census.unavailable,
        "rotation": rotation,
        "lkg_hmac_key_id": state.settings().lkg_keys.current_id().as_str(),
        "signing_key_id": state.settings().signing_key.key_id().as_str(),
    })))
}
