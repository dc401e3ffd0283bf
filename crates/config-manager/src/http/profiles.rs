//! `/profiles`: named snapshots of every service, activated atomically.

use crate::http::ApiState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Unscoped, UnscopedUse};
use super::error::{ApiError, ApiResult};
use super::json::{ApiJson, ApiPath};
use config_manager_service::auth::Role;
use config_manager_service::state::AppState;
use config_manager_service::Changes as _;

/// Longest accepted profile description.
pub const MAX_DESCRIPTION_LEN: usize = 1000;

/// Profiles (read role): unscoped tokens only.
pub enum ProfilesRead {}

impl UnscopedUse for ProfilesRead {
    const ROLE: Role = Role::Read;
    const REFUSAL: &'static str = SPANS_EVERY_SERVICE;
}

/// Profiles (write role): unscoped tokens only.
pub enum ProfilesWrite {}

impl UnscopedUse for ProfilesWrite {
    const ROLE: Role = Role::Write;
    const REFUSAL: &'static str = SPANS_EVERY_SERVICE;
}

const SPANS_EVERY_SERVICE: &str =
    "profiles span every service; service-scoped tokens cannot use them";

/// `GET /profiles`
pub async fn list(
    State(state): State<AppState>,
    _: Unscoped<ProfilesRead>,
) -> ApiResult<Json<Value>> {
    let profiles = state.run(|m| Ok(m.store().list_profiles()?)).await?;
    Ok(Json(json!({ "profiles": profiles })))
}

/// `GET /profiles/{name}`
pub async fn get(
    State(state): State<AppState>,
    _: Unscoped<ProfilesRead>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let profile = state
        .run(move |m| {
            config_manager_core::manager::validate_profile_name(&name)?;
            Ok(m.store().get_profile(&name)?)
        })
        .await?;
    Ok(Json(json!(profile)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveBody {
    profile_name: String,
    #[serde(default)]
    description: Option<String>,
}

/// `POST /profiles`: save the current state under a name (overwrites).
pub async fn save(
    State(state): State<AppState>,
    Unscoped(caller, _): Unscoped<ProfilesWrite>,
    ApiJson(body): ApiJson<SaveBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN)
    {
        return Err(ApiError::BadRequest(format!(
            "description must be at most {MAX_DESCRIPTION_LEN} characters"
        )));
    }
    let actor = caller.name.clone();
    let profile = state
        .run(move |m| {
            Ok(m.save_profile(&body.profile_name, body.description.as_deref(), &actor)?)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!(profile))))
}

/// `PUT /profiles/{name}/activate`
pub async fn activate(
    State(state): State<AppState>,
    Unscoped(caller, _): Unscoped<ProfilesWrite>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.name.clone();
    let (changed, epoch) = state
        .write(move |m| Ok((m.activate_profile(&name, &actor)?, m.epoch().to_string())))
        .await?;
    Ok(Json(json!({
        "success": true,
        "services_updated": changed.changed_services(),
        "config_epoch": epoch,
    })))
}

/// `DELETE /profiles/{name}`
pub async fn delete(
    State(state): State<AppState>,
    Unscoped(caller, _): Unscoped<ProfilesWrite>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let actor = caller.name.clone();
    state
        .run(move |m| {
            config_manager_core::manager::validate_profile_name(&name)?;
            Ok(m.store().delete_profile(&name, &actor)?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
