//! The one place where errors become HTTP responses: RFC 9457 problem details
//! (`application/problem+json`) with a stable shape:
//! `{type, title, status, detail, errors?, current_version?}`.
//! Clients get a safe message; the cause of a 5xx goes to the log only.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use config_manager_core::domain::Version;
use config_manager_core::manager::ManagerError;
use config_manager_core::schema::FieldError;
use config_manager_core::store::StoreError;
use serde::Serialize;

pub use config_manager_service::DatabaseFault;
use config_manager_service::{ServiceError, ServiceFailure};

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed request (bad JSON, bad name, bad parameter).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token or an unknown token.
    #[error("missing or unknown API token")]
    Unauthorized,
    /// 403: the token's role or scope does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409: stale version.
    #[error("version conflict: the configuration was changed by someone else (current version {current})")]
    Conflict { current: Version },
    /// 409: the thing to create already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// 405
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 413
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// 415
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// 422: schema validation failed, one entry per field.
    #[error("configuration is invalid")]
    Validation(Vec<FieldError>),
    /// 428: a write without `version` or `If-Match`.
    #[error("{0}")]
    PreconditionRequired(String),
    /// 429: too many failed logins from this address; retry after the
    /// given number of seconds (also sent as `Retry-After`).
    #[error("too many failed logins from this address; try again in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// 503: the service is read-only or the feature is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// 503: the service is in read-only fallback (or rebuilding).
    #[error("the service is in read-only fallback mode: the database is unavailable, changes are refused until it recovers")]
    ReadOnly,
    /// 503: in fallback without a valid last-known-good cache to read from.
    #[error("the database is unavailable and no valid last-known-good cache exists")]
    NoFallback,
    /// 503: a database fault; the service switches to read-only fallback.
    #[error("the database is unavailable ({}); the service switched to read-only fallback", .0.status.describe())]
    Database(DatabaseFault),
    /// 500: the cause is logged, the client sees a generic message.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The status of each variant.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } | ApiError::AlreadyExists(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_)
            | ApiError::ReadOnly
            | ApiError::NoFallback
            | ApiError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short stable identifier, used in the problem `type` URI.
    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict { .. } => "version-conflict",
            ApiError::AlreadyExists(_) => "already-exists",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::TooLarge { .. } => "body-too-large",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::Validation(_) => "validation-failed",
            ApiError::PreconditionRequired(_) => "version-required",
            ApiError::TooManyRequests { .. } => "too-many-requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::ReadOnly => "read-only",
            ApiError::NoFallback => "no-fallback",
            ApiError::Database(_) => "database-unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    r#type: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_version: Option<Version>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        let problem = Problem {
            r#type: format!("urn:config-manager:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("error"),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: match &self {
                ApiError::Validation(e) => Some(e),
                _ => None,
            },
            current_version: match &self {
                ApiError::Conflict { current } => Some(*current),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if let ApiError::Unauthorized = self {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("X-API-Token"),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StoreError::Conflict { current } => ApiError::Conflict { current },
            StoreError::AlreadyExists(what) => {
                ApiError::AlreadyExists(format!("{what} already exists"))
            }
            // Not a broken database: nothing was written, the next write may work.
            StoreError::DiskFull => {
                ApiError::Unavailable("disk is full; the change was not saved".into())
            }
            other if other.is_fault() => ApiError::Database(DatabaseFault::of(&other)),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::InvalidName { .. } | ManagerError::BadRequest(_) => {
                ApiError::BadRequest(e.to_string())
            }
            ManagerError::UnknownService(_) | ManagerError::NotFound(_) => {
                ApiError::NotFound(e.to_string())
            }
            ManagerError::Validation(errors) => ApiError::Validation(errors),
            ManagerError::Conflict { current } => ApiError::Conflict { current },
            ManagerError::SecretsUnavailable(_) => ApiError::Unavailable(e.to_string()),
            ManagerError::Store(s) => s.into(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::ReadOnly => ApiError::ReadOnly,
            ServiceError::NoFallback => ApiError::NoFallback,
            ServiceError::Database(fault) => ApiError::Database(fault),
            ServiceError::Unavailable(why) => ApiError::Unavailable(why),
            ServiceError::Internal(cause) => ApiError::Internal(cause),
            ServiceError::Manager(e) => e.into(),
        }
    }
}

/// Lets handlers use the state's blocking runner with `ApiResult` closures.
impl ServiceFailure for ApiError {
    fn database_fault(&self) -> Option<&DatabaseFault> {
        match self {
            ApiError::Database(f) => Some(f),
            _ => None,
        }
    }

    fn is_server_failure(&self) -> bool {
        self.status().is_server_error()
    }

    fn wants_cache(&self) -> bool {
        matches!(self, ApiError::Database(_) | ApiError::ReadOnly)
    }
}

/// Result alias of the handlers.
pub type ApiResult<T> = Result<T, ApiError>;
