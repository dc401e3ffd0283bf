//! `GET /audit`: who did what, for writers.

use crate::http::ApiState;
use axum::extract::State;
use axum::response::Response;
use config_manager_core::store::AuditFilter;
use serde::Deserialize;

use super::auth::{Unscoped, UnscopedUse};
use super::error::ApiResult;
use super::history::timestamp;
use super::json::ApiQuery;
use super::paging::{new_page, page_limit, page_response};
use config_manager_service::auth::Role;
use config_manager_service::state::AppState;

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

/// `GET /audit`: one page, cut by `limit` and by the page's byte budget,
/// like `GET /history`.
pub async fn list(
    State(state): State<AppState>,
    _: Unscoped<ReadAuditLog>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Response> {
    let limit = page_limit(q.limit)?;
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
    let page = state
        .run(move |m| {
            let mut page = new_page("entries", limit);
            m.store().audit_page(&filter, &mut page)?;
            Ok(page)
        })
        .await?;
    Ok(page_response(page, "next_before_id"))
}
