//! `GET /audit`: who did what, for writers.

use axum::extract::State;
use axum::Json;
use config_manager_core::store::AuditFilter;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Unscoped, UnscopedUse};
use super::error::{ApiError, ApiResult};
use super::history::timestamp;
use super::json::ApiQuery;
use crate::auth::Role;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    limit: Option<u32>,
    before_id: Option<i64>,
}

/// Reading the audit log: write role, unscoped tokens only.
pub enum ReadAuditLog {}

impl UnscopedUse for ReadAuditLog {
    const ROLE: Role = Role::Write;
    const REFUSAL: &'static str = "service-scoped tokens cannot read the audit log";
}

/// `GET /audit`
pub async fn list(
    State(state): State<AppState>,
    _: Unscoped<ReadAuditLog>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let filter = AuditFilter {
        actor: q.actor,
        action: q.action,
        outcome: q.outcome,
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
        limit,
    };
    let entries = state
        .run(move |m| Ok(m.store().list_audit(&filter)?))
        .await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(
        json!({ "entries": entries, "total_returned": entries.len(), "next_before_id": next }),
    ))
}
