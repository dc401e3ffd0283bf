//! Size-bounded list pages as responses (`GET /history`, `/audit`,
//! `/services/{s}/versions`): the body is built by the store under
//! [`PAGE_BYTE_BUDGET`] (see `config_manager_core::store::JsonPage`) and
//! sent as is, so a handler never holds the rows and their serialization
//! side by side.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use config_manager_core::store::JsonPage;
pub use config_manager_core::store::PAGE_BYTE_BUDGET;
use serde_json::json;

use super::error::{ApiError, ApiResult};

/// Most rows one page may return (`limit`).
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// The `limit` query parameter: default 100, else 1..=[`MAX_PAGE_LIMIT`].
pub fn page_limit(limit: Option<u32>) -> ApiResult<u32> {
    let limit = limit.unwrap_or(100);
    if (1..=MAX_PAGE_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_PAGE_LIMIT}"
        )))
    }
}

/// A new page of `field` rows under the page budget.
pub fn new_page(field: &str, limit: u32) -> JsonPage {
    JsonPage::new(field, limit, PAGE_BYTE_BUDGET)
}

/// The response of a finished page: the rows, `total_returned`, the keyset
/// cursor `cursor` (the key to pass for the next, older page; `null` at the
/// end) and `truncated` (the page stopped at its byte budget).
pub fn page_response(page: JsonPage, cursor: &str) -> Response {
    let trailer = [
        ("total_returned", json!(page.rows())),
        (cursor, json!(page.next_key())),
        ("truncated", json!(page.truncated())),
    ];
    let mut resp = page.finish(&trailer).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
