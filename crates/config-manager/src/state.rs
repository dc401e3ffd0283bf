//! The application state handed to every handler: one cloneable value.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use config_manager_core::manager::Manager;

use crate::http::error::{ApiError, ApiResult};
use crate::settings::Settings;
use crate::status::StatusBoard;

/// Told about every committed change, after the commit (the MQTT publisher and
/// the LKG writer listen here). Must not block.
pub trait ChangeSink: Send + Sync {
    /// `services` changed in the database.
    fn configs_changed(&self, services: &[String]);
}

/// A sink that ignores changes (no MQTT configured, tests).
pub struct NoSink;

impl ChangeSink for NoSink {
    fn configs_changed(&self, _services: &[String]) {}
}

struct Inner {
    manager: RwLock<Arc<Manager>>,
    settings: Arc<Settings>,
    sink: Arc<dyn ChangeSink>,
    status: StatusBoard,
    started: Instant,
}

/// Shared state of the HTTP layer.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    pub fn new(
        manager: Manager,
        settings: Arc<Settings>,
        sink: Arc<dyn ChangeSink>,
        status: StatusBoard,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                manager: RwLock::new(Arc::new(manager)),
                settings,
                sink,
                status,
                started: Instant::now(),
            }),
        }
    }

    /// The current manager (a rebuild may replace it).
    pub fn manager(&self) -> Arc<Manager> {
        self.inner
            .manager
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The live status board.
    pub fn status(&self) -> &StatusBoard {
        &self.inner.status
    }

    pub fn max_body_bytes(&self) -> usize {
        self.inner.settings.max_body_bytes
    }

    pub fn uptime_seconds(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }

    /// Tells the sink that `services` changed.
    pub fn notify_changed(&self, services: &[String]) {
        if !services.is_empty() {
            self.inner.sink.configs_changed(services);
        }
    }

    /// Runs blocking database work on the blocking pool, never on the executor.
    pub async fn run<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Manager) -> ApiResult<T> + Send + 'static,
    {
        let manager = self.manager();
        tokio::task::spawn_blocking(move || f(&manager))
            .await
            .map_err(|e| ApiError::Internal(format!("blocking task failed: {e}")))?
    }
}
