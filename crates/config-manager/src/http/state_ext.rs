//! The state's blocking runner with the handlers' error type: thin wrappers
//! around [`AppState::run_blocking`] and friends (defined in `state.rs`,
//! generic over the error type) so every handler closure returns `ApiResult`
//! and `?` converts domain errors to problem documents as before.

use config_manager_core::manager::{FallbackView, Manager};

use super::error::ApiResult;
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
