//! `POST /services/{service}/secrets/{key}/reveal`: one secret in clear text,
//! for writers, with a justification that goes to the audit log.

use crate::http::ApiState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::ScopedWrite;
use super::configs::check_reason;
use super::error::{ApiError, ApiResult};
use super::json::{ApiJson, ApiPath};
use config_manager_service::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevealBody {
    reason: String,
}

/// `POST /services/{service}/secrets/{key}/reveal`
pub async fn reveal(
    State(state): State<AppState>,
    ScopedWrite {
        caller, service, ..
    }: ScopedWrite,
    ApiPath((_, key)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<RevealBody>,
) -> ApiResult<Response> {
    let reason = check_reason(Some(body.reason))?
        .filter(|r| r.trim().chars().count() >= 3)
        .ok_or_else(|| {
            ApiError::BadRequest("a reason (at least 3 characters) is required".into())
        })?;
    let actor = caller.name.clone();
    let value = state
        .run(move |m| {
            let name = m.resolve_service(&service)?;
            let value = m.reveal_secret_audited(&name, &key, &actor, &reason)?;
            Ok((name.to_string(), key, value))
        })
        .await?;
    let (service, key, value) = value;
    let mut resp = Json(json!({ "service": service, "key": key, "value": value })).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
