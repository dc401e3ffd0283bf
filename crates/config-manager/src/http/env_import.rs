//! `POST /services/{service}/import-env`: adoption from an existing `.env`
//! file (the body, as text). The rules live in the manager
//! (`config_manager_core::manager::env_import`); this layer reads the body
//! within its limit, runs the import off the async runtime and, when a
//! version was written, notifies like every write (MQTT publish, LKG cache,
//! read cache).

use crate::http::ApiState;
use axum::extract::{Request, State};
use axum::Json;
use config_manager_core::domain::Version;
use config_manager_core::manager::{EnvImportRequest, MAX_DOTENV_BYTES};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::ScopedWrite;
use super::configs::check_reason;
use super::error::{ApiError, ApiResult};
use super::json::{read_text, ApiQuery};
use config_manager_service::state::AppState;

#[derive(Deserialize)]
pub struct ImportEnvQuery {
    /// Validate and return the diff; write nothing.
    #[serde(default)]
    dry_run: bool,
    /// Change reason recorded in history.
    #[serde(default)]
    reason: Option<String>,
    /// Optimistic lock: the version the caller saw (e.g. in the dry run).
    #[serde(default)]
    version: Option<i64>,
}

/// `POST /services/{service}/import-env[?dry_run=true]`, body: the `.env`
/// text (at most [`MAX_DOTENV_BYTES`]).
pub async fn import_env(
    State(state): State<AppState>,
    ScopedWrite {
        caller, service, ..
    }: ScopedWrite,
    ApiQuery(q): ApiQuery<ImportEnvQuery>,
    req: Request,
) -> ApiResult<Json<Value>> {
    let expected_version = q
        .version
        .map(Version::new)
        .transpose()
        .map_err(|_| ApiError::BadRequest("version must be >= 0".into()))?;
    let reason = check_reason(q.reason)?.or_else(|| Some("import of a .env file".to_owned()));
    let text = read_text(req, &state, MAX_DOTENV_BYTES).await?;
    let request = EnvImportRequest {
        text,
        dry_run: q.dry_run,
        expected_version,
        actor: caller.name.clone(),
        reason,
    };
    let (outcome, epoch) = state
        .write(move |m| {
            let name = m.resolve_service(&service)?;
            Ok((m.import_env(&name, request)?, m.epoch().to_string()))
        })
        .await?;
    Ok(Json(json!({
        "success": true,
        "config_epoch": epoch,
        "service": outcome.service,
        "dry_run": outcome.dry_run,
        "written": outcome.written,
        "version": outcome.version,
        "changes": outcome.changes,
        "unchanged": outcome.unchanged,
        "ignored": outcome.ignored,
        "skipped": outcome.skipped,
    })))
}
