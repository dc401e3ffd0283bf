//! `POST /search`: keyword search across every service.

use crate::http::ApiState;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use config_manager_core::domain::ServiceName;
use config_manager_core::manager::SearchQuery;
use serde::Deserialize;
use serde_json::json;

use super::auth::RequireRead;
use super::error::{ApiError, ApiResult};
use super::json::ApiJson;
use config_manager_service::state::AppState;

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
) -> ApiResult<axum::response::Response> {
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
    let service_filter = body
        .service_filter
        .as_deref()
        .map(ServiceName::parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("invalid service_filter: {e}")))?;
    let query = SearchQuery {
        query: body.query,
        service: service_filter,
        services: caller.services.clone(),
        complexity: body.complexity_filter,
        r#type: body.type_filter,
        max_results: body.max_results.unwrap_or(50),
    };
    let q2 = query.clone();
    let ((hits, total), served) = state
        .read(
            move |m| {
                if let Some(s) = &query.service {
                    m.resolve_service(s)?;
                }
                Ok(m.search(&query)?)
            },
            move |f| Ok(f.search(&q2)?),
        )
        .await?;
    Ok(super::configs::with_source(
        Json(json!({ "query": query_text, "results": hits, "total_count": total })).into_response(),
        served,
    ))
}
