//! `GET /export` and `POST /import`: every service's configuration (and
//! optionally the profiles) as one JSON document. The document format and the
//! import rules are in `config_manager_core::manager::transfer`.
//!
//! Both span every service, so service-scoped tokens cannot use them (as with
//! profiles). Secrets leave the service only when a write-role caller asks for
//! them with `include_secrets=true`; that export is written to the audit log
//! before the document is returned, so an unaudited secret export cannot
//! happen.

use crate::http::ApiState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use config_manager_core::manager::{ExportDocument, ExportOptions, ImportOptions};
use serde::Deserialize;
use serde_json::json;

use super::auth::{audit_denial, Unscoped, UnscopedUse};
use super::configs::check_reason;
use super::error::{ApiError, ApiResult};
use super::json::{ApiJson, ApiQuery};
use config_manager_service::auth::Role;
use config_manager_service::state::AppState;

/// Export/import (read role): unscoped tokens only.
pub enum ExportAll {}

impl UnscopedUse for ExportAll {
    const ROLE: Role = Role::Read;
    const REFUSAL: &'static str = SPANS_EVERY_SERVICE;
}

/// Export/import (write role): unscoped tokens only.
pub enum ImportAll {}

impl UnscopedUse for ImportAll {
    const ROLE: Role = Role::Write;
    const REFUSAL: &'static str = SPANS_EVERY_SERVICE;
}

const SPANS_EVERY_SERVICE: &str =
    "export and import span every service; service-scoped tokens cannot use them";

/// Query of `GET /export`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Decrypted secret values instead of `"********"` (write role; audited).
    #[serde(default)]
    include_secrets: bool,
    #[serde(default)]
    include_profiles: bool,
}

/// `GET /export`
pub async fn export(
    State(state): State<AppState>,
    Unscoped(caller, _): Unscoped<ExportAll>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    if q.include_secrets && caller.role < Role::Write {
        audit_denial(
            &state,
            &caller.name,
            "GET /api/config/export?include_secrets=true",
            "role too low",
        )
        .await;
        return Err(ApiError::Forbidden(format!(
            "include_secrets needs the {} role",
            Role::Write.as_str()
        )));
    }
    let options = ExportOptions {
        include_secrets: q.include_secrets,
        include_profiles: q.include_profiles,
    };
    let actor = caller.name.clone();
    let doc = state
        .run(move |m| {
            let doc = m.export(options)?;
            m.audit_export(&actor, options, &doc)?;
            Ok(doc)
        })
        .await?;
    let mut resp = Json(doc).into_response();
    if options.include_secrets {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(resp)
}

/// Query of `POST /import`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Each service's `version` in the document must be its current version.
    #[serde(default)]
    expect_versions: bool,
    /// Validate only; write nothing.
    #[serde(default)]
    dry_run: bool,
    /// Change reason recorded in history (default: "import of an export document").
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /import`: the body is an export document.
pub async fn import(
    State(state): State<AppState>,
    Unscoped(caller, _): Unscoped<ImportAll>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    ApiJson(doc): ApiJson<ExportDocument>,
) -> ApiResult<Json<serde_json::Value>> {
    let options = ImportOptions {
        expect_versions: q.expect_versions,
        dry_run: q.dry_run,
        actor: caller.name.clone(),
        reason: check_reason(q.reason)?,
    };
    let (outcome, epoch) = state
        .write(move |m| Ok((m.import(doc, &options)?, m.epoch().to_string())))
        .await?;
    Ok(Json(json!({
        "success": true,
        "dry_run": outcome.dry_run,
        "config_epoch": epoch,
        "services_updated": outcome.services_updated,
        "services_unchanged": outcome.services_unchanged,
        "profiles_saved": outcome.profiles_saved,
        "secrets_written": outcome.secrets_written,
    })))
}
