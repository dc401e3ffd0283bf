//! The service layer's blocking runners with the handlers' error type:
//! [`ApiState`] wraps [`AppState::run_blocking`] and friends (generic over
//! the error type, defined in the service crate) so every handler closure
//! returns `ApiResult` and `?` converts domain errors to problem documents.
//! An extension trait, because the state belongs to the service crate.

use config_manager_core::manager::{FallbackView, Manager};

use super::error::ApiResult;
use config_manager_service::runner::Served;
use config_manager_service::state::AppState;
use config_manager_service::Changes;

/// Handler-facing runs on the [`AppState`].
pub trait ApiState {
    /// [`AppState::run_blocking`] for handlers: 503 outside normal mode, a
    /// database fault switches the service to read-only fallback.
    fn run<T, F>(&self, f: F) -> impl std::future::Future<Output = ApiResult<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&Manager) -> ApiResult<T> + Send + 'static;

    /// [`AppState::write_blocking`] for handlers: [`ApiState::run`] that
    /// notifies the services the outcome changed. Every configuration write
    /// goes through it; no handler calls `notify_changed` itself.
    fn write<T, F>(&self, f: F) -> impl std::future::Future<Output = ApiResult<T>> + Send
    where
        T: Changes + Send + 'static,
        F: FnOnce(&Manager) -> ApiResult<T> + Send + 'static;

    /// [`AppState::read_or_cached`] for handlers: the database, else the
    /// verified LKG cache.
    fn read<T, D, L>(
        &self,
        db: D,
        lkg: L,
    ) -> impl std::future::Future<Output = ApiResult<(T, Served)>> + Send
    where
        T: Send + 'static,
        D: FnOnce(&Manager) -> ApiResult<T> + Send + 'static,
        L: FnOnce(&FallbackView) -> ApiResult<T> + Send + 'static;
}

impl ApiState for AppState {
    fn run<T, F>(&self, f: F) -> impl std::future::Future<Output = ApiResult<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&Manager) -> ApiResult<T> + Send + 'static,
    {
        self.run_blocking(f)
    }

    fn write<T, F>(&self, f: F) -> impl std::future::Future<Output = ApiResult<T>> + Send
    where
        T: Changes + Send + 'static,
        F: FnOnce(&Manager) -> ApiResult<T> + Send + 'static,
    {
        self.write_blocking(f)
    }

    fn read<T, D, L>(
        &self,
        db: D,
        lkg: L,
    ) -> impl std::future::Future<Output = ApiResult<(T, Served)>> + Send
    where
        T: Send + 'static,
        D: FnOnce(&Manager) -> ApiResult<T> + Send + 'static,
        L: FnOnce(&FallbackView) -> ApiResult<T> + Send + 'static,
    {
        self.read_or_cached(db, lkg)
    }
}
