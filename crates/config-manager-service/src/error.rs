//! Errors of the service layer: the ones the state's blocking runner and the
//! mode machine produce themselves (read-only, no fallback, database fault),
//! plus domain errors passed through. Front ends map them: the HTTP layer has
//! `From<ServiceError> for ApiError`.

use config_manager_core::health::DatabaseStatus;
use config_manager_core::manager::ManagerError;
use config_manager_core::store::StoreError;

use crate::health::status_of;

/// A database fault seen by an operation: what it means for the database
/// status, and the cause (logged, never sent to clients).
#[derive(Debug)]
pub struct DatabaseFault {
    pub status: DatabaseStatus,
    pub cause: String,
}

impl DatabaseFault {
    /// The fault of a store error that [`StoreError::is_fault`].
    pub fn of(e: &StoreError) -> Self {
        Self {
            status: status_of(e),
            cause: e.to_string(),
        }
    }
}

/// What service operations fail with. The messages are the ones clients see
/// (through the HTTP mapping), so they carry no paths or secrets.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The service is in read-only fallback (or rebuilding): writes refused.
    #[error("the service is in read-only fallback mode: the database is unavailable, changes are refused until it recovers")]
    ReadOnly,
    /// No database and no valid last-known-good cache to read from.
    #[error("the database is unavailable and no valid last-known-good cache exists")]
    NoFallback,
    /// A database fault; the service switches to read-only fallback.
    #[error("the database is unavailable ({}); the service switched to read-only fallback", .0.status.describe())]
    Database(DatabaseFault),
    /// Refused or impossible right now, with a reason safe to show.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an environment failure; the cause is logged, not shown.
    #[error("internal error")]
    Internal(String),
    /// A domain error (not found, conflict, validation, ...).
    #[error(transparent)]
    Manager(ManagerError),
}

impl From<ManagerError> for ServiceError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::Store(s) => s.into(),
            ManagerError::SecretsUnavailable(_) => ServiceError::Unavailable(e.to_string()),
            other => ServiceError::Manager(other),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            // Not a broken database: nothing was written, the next write may work.
            StoreError::DiskFull => {
                ServiceError::Unavailable("disk is full; the change was not saved".into())
            }
            other if other.is_fault() => ServiceError::Database(DatabaseFault::of(&other)),
            other => ServiceError::Manager(ManagerError::Store(other)),
        }
    }
}

/// What the state's blocking runner needs to know about an error type, so
/// that each front end can keep its own error type (`ApiError` for HTTP,
/// [`ServiceError`] elsewhere) through `AppState::run_blocking`.
pub trait ServiceFailure: From<ServiceError> + Send + 'static {
    /// The database fault this error reports, if any (switches to fallback).
    fn database_fault(&self) -> Option<&DatabaseFault>;
    /// Whether the server failed (counted as a failed database operation);
    /// a not-found or a conflict is the database answering correctly.
    fn is_server_failure(&self) -> bool;
    /// Whether a read should be answered from the last-known-good cache
    /// instead (database fault or read-only mode).
    fn wants_cache(&self) -> bool;
}

impl ServiceFailure for ServiceError {
    fn database_fault(&self) -> Option<&DatabaseFault> {
        match self {
            ServiceError::Database(f) => Some(f),
            _ => None,
        }
    }

    fn is_server_failure(&self) -> bool {
        match self {
            ServiceError::ReadOnly
            | ServiceError::NoFallback
            | ServiceError::Database(_)
            | ServiceError::Unavailable(_)
            | ServiceError::Internal(_) => true,
            ServiceError::Manager(ManagerError::Store(s)) => !matches!(
                s,
                StoreError::NotFound(_)
                    | StoreError::Conflict { .. }
                    | StoreError::AlreadyExists(_)
            ),
            ServiceError::Manager(_) => false,
        }
    }

    fn wants_cache(&self) -> bool {
        matches!(self, ServiceError::Database(_) | ServiceError::ReadOnly)
    }
}
