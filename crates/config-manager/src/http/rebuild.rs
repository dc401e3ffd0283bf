//! `POST /rebuild`: guarded by `REBUILD_TOKEN`. The rebuild itself (move the
//! broken file aside, new epoch, seed from the LKG cache) is not implemented
//! yet, so a correct token gets a clear 503 instead of a fake success.

use axum::extract::State;
use axum::Json;
use config_manager_core::crypto::mac::tokens_equal;
use serde::Deserialize;
use serde_json::Value;

use super::auth::{audit_denial, RequireWrite};
use super::error::{ApiError, ApiResult};
use super::json::ApiJson;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebuildBody {
    token: String,
}

/// `POST /rebuild`
pub async fn rebuild(
    State(state): State<AppState>,
    RequireWrite(caller): RequireWrite,
    ApiJson(body): ApiJson<RebuildBody>,
) -> ApiResult<Json<Value>> {
    if !tokens_equal(&body.token, &state.settings().rebuild_token.0) {
        audit_denial(&state, &caller.name, "rebuild", "wrong rebuild token").await;
        return Err(ApiError::Forbidden("wrong rebuild token".into()));
    }
    Err(ApiError::Unavailable(
        "database rebuild is not available in this version".into(),
    ))
}
