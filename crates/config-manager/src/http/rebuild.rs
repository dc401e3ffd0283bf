//! `POST /rebuild`: guarded by `REBUILD_TOKEN` and an unscoped write token (a
//! rebuild replaces every service's configuration, so a token scoped to one
//! service may not start it; issue 14, finding 8). Moves the
//! database aside, creates a new one with a new epoch seeded from the verified
//! LKG cache, and answers 202 with the tombstone (see `modes::rebuild`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use config_manager_core::crypto::mac::tokens_equal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{audit_denial, Unscoped, UnscopedUse};
use super::error::{ApiError, ApiResult};
use super::json::ApiJson;
use config_manager_service::auth::Role;
use config_manager_service::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebuildBody {
    token: String,
}

/// Starting a rebuild: write role, unscoped tokens only (refusals audited).
pub enum StartRebuild {}

impl UnscopedUse for StartRebuild {
    const ROLE: Role = Role::Write;
    const REFUSAL: &'static str =
        "a rebuild replaces every service's configuration; service-scoped tokens cannot start it";
    const AUDIT_TARGET: Option<&'static str> = Some("rebuild");
}

/// `POST /rebuild`
pub async fn rebuild(
    State(state): State<AppState>,
    Unscoped(caller, _): Unscoped<StartRebuild>,
    ApiJson(body): ApiJson<RebuildBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !tokens_equal(&body.token, &state.settings().rebuild_token.0) {
        audit_denial(&state, &caller.name, "rebuild", "wrong rebuild token").await;
        return Err(ApiError::Forbidden("wrong rebuild token".into()));
    }
    let tombstone = config_manager_service::modes::rebuild(
        &state,
        "manual rebuild requested over the API",
        &caller.name,
        config_manager_service::modes::RebuildTrigger::Manual,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "success": true,
            "status": "completed",
            "tombstone": tombstone,
        })),
    ))
}
