//! `GET /keys/status`: the master key in use, how many secrets each key
//! seals, re-encryption progress, and secrets no configured key can open.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::auth::RequireRead;
use super::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `GET /keys/status`
pub async fn status(
    State(state): State<AppState>,
    RequireRead(caller): RequireRead,
) -> ApiResult<Json<Value>> {
    if caller.services.is_some() {
        return Err(ApiError::Forbidden(
            "service-scoped tokens cannot read key status".into(),
        ));
    }
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
