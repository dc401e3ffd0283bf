//! `POST /search`: keyword search across every service.

use axum::extract::State;
use axum::Json;
use config_manager_core::manager::SearchQuery;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::RequireRead;
use super::error::{ApiError, ApiResult};
use super::json::ApiJson;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    query: String,
    #[serde(default)]
    service_filter: Option<String>,
    #[serde(default)]
    complexity_filter: Option<String>,
    #[serde(default)]
    type_filter: Option<String>,
    #[serde(default)]
    max_results: Option<usize>,
}

/// `POST /search`
pub async fn search(
    State(state): State<AppState>,
    RequireRead(caller): RequireRead,
    ApiJson(body): ApiJson<SearchBody>,
) -> ApiResult<Json<Value>> {
    if let Some(c) = body.complexity_filter.as_deref() {
        if c != "simple" && c != "advanced" {
            return Err(ApiError::BadRequest(
                "complexity_filter must be 'simple' or 'advanced'".into(),
            ));
        }
    }
    if let Some(s) = body.service_filter.as_deref() {
        if !caller.may_access(s) {
            return Err(ApiError::Forbidden(
                "this token is not allowed to access this service".into(),
            ));
        }
    }
    let query_text = body.query.clone();
    let scope: Option<Vec<String>> = caller
        .services
        .as_ref()
        .map(|s| s.iter().map(|n| n.to_string()).collect());
    let (hits, total) = state
        .run(move |m| {
            let service = body
                .service_filter
                .as_deref()
                .map(|s| m.resolve_service(s))
                .transpose()?;
            Ok(m.search(&SearchQuery {
                query: body.query,
                service: service.map(|s| s.to_string()),
                services: scope,
                complexity: body.complexity_filter,
                r#type: body.type_filter,
                max_results: body.max_results.unwrap_or(50),
            })?)
        })
        .await?;
    Ok(Json(
        json!({ "query": query_text, "results": hits, "total_count": total }),
    ))
}
