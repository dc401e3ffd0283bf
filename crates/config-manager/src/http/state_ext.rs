//! The state's blocking runner with the handlers' error type: thin wrappers
//! around [`AppState::run_blocking`] and friends (defined in `state.rs`,
//! generic over the error type) so every handler closure returns `ApiResult`
//! and `?` converts domain errors to problem documents as before.

use config_manager_core::manager::{FallbackView, Manager};

use super::error::ApiResult;
use crate::service::Changes;
use crate::state::{AppState, Served};

impl AppState {
    /// [`AppState::run_blocking`] for handlers: 503 outside normal mode, a
    /// database fault switches the service to read-only fallback.
    pub async fn run<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Manager) -> ApiResult<T> + Send + 'static,
    {
        self.run_blocking(f).await
    }

    /// [`AppState::write_blocking`] for handlers: [`AppState::run`] that
    /// notifies the services the outcome changed. Every configuration write
    /// goes through it; no handler calls `notify_changed` itself.
    pub async fn write<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Changes + Send + 'static,
        F: FnOnce(&Manager) -> ApiResult<T> + Send + 'static,
    {
        self.write_blocking(f).await
    }

    /// [`AppState::read_or_cached`] for handlers: the database, else the
    /// verified LKG cache.
    pub async fn read<T, D, L>(&self, db: D, lkg: L) -> ApiResult<(T, Served)>
    where
        T: Send + 'static,
        D: FnOnce(&Manager) -> ApiResult<T> + Send + 'static,
        L: FnOnce(&FallbackView) -> ApiResult<T> + Send + 'static,
    {
        self.read_or_cached(db, lkg).await
    }
}
