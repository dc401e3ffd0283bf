//! The blocking runners the front ends and tasks use for database work:
//! off the async runtime, refused outside normal mode, and a database fault
//! reported to the mode machine ([`crate::modes`]), which switches to the
//! read-only fallback. Reads that must keep answering come from the
//! verified last-known-good cache instead. (`AppState::run_blocking_unchecked`,
//! the mode machine's own runner, stays in `state`: the modes use it.)

use config_manager_core::health::{DatabaseStatus, OperationalMode};
use config_manager_core::manager::{FallbackView, Manager};

use crate::modes::report_fault;
use crate::state::AppState;
use crate::{ServiceError, ServiceFailure};

/// Where a read was served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Database,
    LkgCache,
}

impl Served {
    /// The word for it: `database` or `lkg-cache` (what the HTTP API's
    /// `X-Config-Source` header carries).
    pub fn as_str(self) -> &'static str {
        match self {
            Served::Database => "database",
            Served::LkgCache => "lkg-cache",
        }
    }
}

impl AppState {
    /// Runs blocking database work on the blocking pool, never on the executor.
    /// Refused ([`ServiceError::ReadOnly`]) outside normal mode; a database
    /// fault switches the service to read-only fallback. Generic over the
    /// error type so each front end keeps its own (the HTTP layer wraps this
    /// as `AppState::run` returning `ApiResult`).
    pub async fn run_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: ServiceFailure,
        F: FnOnce(&Manager) -> Result<T, E> + Send + 'static,
    {
        if !self.is_normal() {
            return Err(ServiceError::ReadOnly.into());
        }
        let result = self.run_blocking_unchecked(f).await;
        if let Some(fault) = result.as_ref().err().and_then(|e| e.database_fault()) {
            report_fault(self, fault.status, &fault.cause).await;
        }
        result
    }

    /// A read that keeps answering through a database failure: from the
    /// database in normal mode, from the verified LKG cache in fallback, and
    /// from the cache right away when the database read itself fails.
    pub async fn read_or_cached<T, E, D, L>(&self, db: D, lkg: L) -> Result<(T, Served), E>
    where
        T: Send + 'static,
        E: ServiceFailure,
        D: FnOnce(&Manager) -> Result<T, E> + Send + 'static,
        L: FnOnce(&FallbackView) -> Result<T, E> + Send + 'static,
    {
        let status = self.status().get();
        if status.mode == OperationalMode::Normal {
            match self.run_blocking(db).await {
                Err(e) if e.wants_cache() => {}
                other => return other.map(|v| (v, Served::Database)),
            }
        } else if status.database_status == DatabaseStatus::SchemaMismatch
            && self.manager().is_some()
        {
            // The database is fine, only writes are refused.
            return self
                .run_blocking_unchecked(db)
                .await
                .map(|v| (v, Served::Database));
        }
        let view = self.fallback().ok_or(ServiceError::NoFallback)?;
        tokio::task::spawn_blocking(move || lkg(&view))
            .await
            .map_err(|e| ServiceError::Internal(format!("blocking task failed: {e}")))?
            .map(|v| (v, Served::LkgCache))
    }
}
