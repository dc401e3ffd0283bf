//! `/history` and restores (history entries, point in time).

use crate::http::ApiState;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use config_manager_core::domain::{format_rfc3339, parse_rfc3339, ServiceName};
use config_manager_core::store::HistoryFilter;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{
    check_scope, check_scope_filter, RequireRead, RequireWrite, Unscoped, UnscopedUse,
};
use super::configs::check_reason;
use super::error::{ApiError, ApiResult};
use super::json::{ApiJson, ApiQuery};
use super::paging::{new_page, page_limit, page_response};
use config_manager_service::auth::Role;
use config_manager_service::state::AppState;
use config_manager_service::Changes as _;

/// Most history entries one page may return.
pub const MAX_HISTORY_LIMIT: u32 = super::paging::MAX_PAGE_LIMIT;

#[derive(Deserialize)]
pub struct HistoryQuery {
    service: Option<String>,
    key: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    limit: Option<u32>,
    /// Keyset paging: pass the `next_before_id` of the previous page.
    before_id: Option<i64>,
}

/// Normalizes a client timestamp to the stored format.
pub fn timestamp(raw: &str, what: &str) -> ApiResult<String> {
    parse_rfc3339(raw)
        .map(format_rfc3339)
        .map_err(|_| ApiError::BadRequest(format!("{what} must be an RFC 3339 timestamp")))
}

/// `GET /history`: one page, cut by `limit` and by the page's byte budget
/// (`next_before_id` continues it; `truncated` says the budget cut it).
pub async fn list(
    State(state): State<AppState>,
    RequireRead(caller): RequireRead,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Response> {
    let limit = page_limit(q.limit)?;
    check_scope_filter(&state, &caller, q.service.as_deref()).await?;
    // A malformed name names no stored row: its page is empty, as it
    // always was (the filter is not refused).
    let (service, matches_nothing) = match q.service.as_deref().map(ServiceName::parse) {
        None => (None, false),
        Some(Ok(name)) => (Some(name), false),
        Some(Err(_)) => (None, true),
    };
    let filter = HistoryFilter {
        service,
        key: q.key,
        start: q
            .start_date
            .as_deref()
            .map(|t| timestamp(t, "start_date"))
            .transpose()?,
        end: q
            .end_date
            .as_deref()
            .map(|t| timestamp(t, "end_date"))
            .transpose()?,
        before_id: q.before_id,
        id: None,
        limit,
    };
    let page = state
        .run(move |m| {
            let mut page = new_page("entries", limit);
            if !matches_nothing {
                m.store().history_page(&filter, &mut page)?;
            }
            Ok(page)
        })
        .await?;
    Ok(page_response(page, "next_before_id"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    service: String,
    history_entries: Vec<i64>,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /history/restore`: put back the old values of history entries.
pub async fn restore(
    State(state): State<AppState>,
    RequireWrite(caller): RequireWrite,
    ApiJson(body): ApiJson<RestoreBody>,
) -> ApiResult<Json<Value>> {
    check_scope(&state, &caller, &body.service).await?;
    if body.history_entries.len() > 1000 {
        return Err(ApiError::BadRequest(
            "at most 1000 history entries at once".into(),
        ));
    }
    let reason = check_reason(body.reason)?;
    let actor = caller.name.clone();
    let outcome = state
        .write(move |m| {
            let name = m.resolve_service(&body.service)?;
            Ok(m.restore_history(&name, &body.history_entries, &actor, reason)?)
        })
        .await?;
    Ok(Json(json!({
        "success": true,
        "service": outcome.service,
        "keys_restored": outcome.keys_restored,
        "new_version": outcome.new_version,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointInTimeBody {
    /// RFC 3339; every service goes back to its values at this instant.
    timestamp: String,
    /// Only this service (default: every service).
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// A point-in-time restore: write role, unscoped tokens only.
pub enum PointInTimeRestore {}

impl UnscopedUse for PointInTimeRestore {
    const ROLE: Role = Role::Write;
    const REFUSAL: &'static str = "service-scoped tokens cannot restore";
}

/// `POST /restore`: point-in-time restore of one service or all, atomically.
pub async fn point_in_time(
    State(state): State<AppState>,
    Unscoped(caller, _): Unscoped<PointInTimeRestore>,
    ApiJson(body): ApiJson<PointInTimeBody>,
) -> ApiResult<Json<Value>> {
    let at = timestamp(&body.timestamp, "timestamp")?;
    let reason = check_reason(body.reason)?;
    let actor = caller.name.clone();
    let at_for_restore = at.clone();
    let changed = state
        .write(move |m| {
            let service = body
                .service
                .as_deref()
                .map(|s| m.resolve_service(s))
                .transpose()?;
            Ok(m.restore_at(service.as_ref(), &at_for_restore, &actor, reason)?)
        })
        .await?;
    let versions: serde_json::Map<String, Value> = changed
        .iter()
        .map(|c| (c.service.to_string(), json!(c.version)))
        .collect();
    Ok(Json(json!({
        "success": true,
        "timestamp": at,
        "services_restored": changed.changed_services(),
        "new_versions": versions,
    })))
}
