//! The OpenAPI document, kept next to the code and tested against [`super::ROUTES`].

use axum::http::header;
use axum::response::IntoResponse;

/// The OpenAPI 3.1 document of the REST API.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// `GET /openapi.json`
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
