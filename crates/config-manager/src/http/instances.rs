//! `/services/{service}/instances`: desired vs applied, what every running
//! instance of a service says it runs (`applied`).

use crate::http::ApiState;
use axum::extract::State;
use axum::Json;
use config_manager_core::applied::InstanceId;
use serde_json::{json, Value};

use super::auth::{ScopedRead, ScopedWrite};
use super::error::{ApiError, ApiResult};
use super::json::ApiPath;
use config_manager_service::applied::{desired_of_fallback, desired_of_manager, Summary};
use config_manager_service::state::AppState;

/// `GET /services/{service}/instances`: each instance's report and sync
/// state against the desired (current) version, and their summary. The
/// desired version is read fresh, so right after a write the instances
/// still on the old version show as `pending`.
pub async fn list(
    State(state): State<AppState>,
    ScopedRead { service, .. }: ScopedRead,
) -> ApiResult<Json<Value>> {
    let service2 = service.clone();
    let ((name, desired), _) = state
        .read(
            move |m| {
                let name = m.resolve_service(&service)?;
                let desired = desired_of_manager(m, &name)?;
                Ok((name, desired))
            },
            move |f| {
                let name = f.resolve_service(&service2)?;
                let desired = desired_of_fallback(f, &name);
                Ok((name, desired))
            },
        )
        .await?;
    let instances = state.applied().instances(&name, desired.as_ref());
    let summary = Summary::of(&instances);
    Ok(Json(json!({
        "service": name,
        "desired": desired.as_ref().map(|d| d.to_json()),
        "summary": summary,
        "instances": instances,
        "max_instances": state.applied().limits().max_per_service,
    })))
}

/// `DELETE /services/{service}/instances/{instance_id}`: forgets a retired
/// instance (memory and database, audited as `instance.forget`) and clears
/// its retained report on the broker. An instance that is still running
/// reappears with its next report.
pub async fn forget(
    State(state): State<AppState>,
    ScopedWrite {
        caller, service, ..
    }: ScopedWrite,
    ApiPath((_, instance)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let instance = InstanceId::parse(&instance)
        .map_err(|e| ApiError::BadRequest(format!("invalid instance id: {e}")))?;
    let name = state.run(move |m| Ok(m.resolve_service(&service)?)).await?;
    let in_memory = state.applied().forget(&name, &instance);
    let actor = caller.name.clone();
    let (service, id) = (name.clone(), instance.clone());
    let in_database = state
        .run(move |m| Ok(m.store().forget_applied(&service, &id, &actor, in_memory)?))
        .await?;
    if !(in_memory || in_database) {
        return Err(ApiError::NotFound(format!(
            "{name} has no instance {instance}"
        )));
    }
    Ok(Json(json!({
        "success": true,
        "service": name,
        "instance_id": instance,
    })))
}
