//! Errors of the domain operations; the HTTP layer maps each to one status.

use thiserror::Error;

use crate::domain::Version;
use crate::schema::FieldError;
use crate::store::StoreError;

/// Why a domain operation failed.
#[derive(Debug, Error)]
pub enum ManagerError {
    /// A name in the request is malformed (never echoes the input).
    #[error("invalid {what}: {reason}")]
    InvalidName { what: &'static str, reason: String },
    /// The service has no schema and no stored config (and unknown services are not allowed).
    #[error("unknown service '{0}'")]
    UnknownService(String),
    /// The new values do not satisfy the service schema; one entry per field.
    #[error("configuration is invalid ({} field error(s))", .0.len())]
    Validation(Vec<FieldError>),
    /// A stale optimistic-locking version.
    #[error("version conflict: current version is {current}")]
    Conflict { current: Version },
    /// Something the request names does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A request that is well-formed JSON but cannot be carried out.
    #[error("{0}")]
    BadRequest(String),
    /// Secret values cannot be handled (no key, or the key cannot decrypt).
    #[error("secrets unavailable: {0}")]
    SecretsUnavailable(String),
    /// A database fault.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ManagerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { current } => ManagerError::Conflict { current },
            StoreError::NotFound(what) => ManagerError::NotFound(what),
            other => ManagerError::Store(other),
        }
    }
}
