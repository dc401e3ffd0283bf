//! `ApiJson`: the JSON body extractor whose rejections use the problem shape,
//! so bad JSON, a wrong content type and oversized bodies all answer like
//! every other error.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use config_manager_service::state::AppState;

/// A JSON request body.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(rejection_to_error(rejection, state.max_body_bytes())),
        }
    }
}

fn rejection_to_error(rejection: JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge { limit }
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(truncate(&format!(
            "body is not valid JSON: {}",
            e.body_text()
        ))),
        JsonRejection::JsonDataError(e) => ApiError::BadRequest(truncate(&format!(
            "body has the wrong shape: {}",
            e.body_text()
        ))),
        other => ApiError::BadRequest(truncate(&other.body_text())),
    }
}

/// A path parameter whose rejection uses the problem shape.
pub struct ApiPath<T>(pub T);

impl<T> axum::extract::FromRequestParts<AppState> for ApiPath<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|_| ApiError::BadRequest("malformed path parameter".into()))
    }
}

/// Query parameters whose rejection uses the problem shape.
pub struct ApiQuery<T>(pub T);

impl<T> axum::extract::FromRequestParts<AppState> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| {
                ApiError::BadRequest(truncate(&format!("bad query string: {}", e.body_text())))
            })
    }
}

/// Cuts a client-facing message to a sane length (serde errors can quote input).
pub fn truncate(s: &str) -> String {
    const MAX: usize = 300;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

/// A UTF-8 text body (a `.env` file for import-env) of at most `limit` bytes
/// (the smaller of the server's body limit and the caller's); rejections use
/// the problem shape (413 when too large, 400 when not UTF-8).
pub async fn read_text(req: Request, state: &AppState, limit: usize) -> Result<String, ApiError> {
    let limit = limit.min(state.max_body_bytes());
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| ApiError::TooLarge { limit })?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8 text".into()))
}
