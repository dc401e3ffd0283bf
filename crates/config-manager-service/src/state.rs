//! The application state handed to every handler: one cloneable value.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use config_manager_core::domain::{Epoch, ServiceName};
use config_manager_core::health::OperationalMode;
use config_manager_core::manager::{FallbackView, Manager, ManagerOptions};
use config_manager_core::schema::SchemaRegistry;

use crate::auth::sessions::SessionStore;
use crate::lkg::LkgFile;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::status::StatusBoard;
use crate::{ServiceError, ServiceFailure};

/// Told about every committed change, after the commit (the MQTT publisher and
/// the LKG writer listen here). Must not block.
pub trait ChangeSink: Send + Sync {
    /// `services` changed in the database.
    fn configs_changed(&self, services: &[ServiceName]);
}

/// A sink that ignores changes (no MQTT configured, tests).
pub struct NoSink;

impl ChangeSink for NoSink {
    fn configs_changed(&self, _services: &[ServiceName]) {}
}

struct Inner {
    /// `None` while the service runs without a database: it started with one
    /// it could not open (or would not adopt) and waits for recovery.
    manager: RwLock<Option<Arc<Manager>>>,
    /// Schemas and options of a manager opened later (recovery, rebuild)
    /// when there is none to take them from.
    setup: DatabaseSetup,
    /// The epoch a database must have to be adopted when there is no manager
    /// (the device's epoch file, else the verified cache's).
    expected_epoch: RwLock<Option<Epoch>>,
    /// The verified LKG cache reads are served from in read-only fallback.
    fallback: RwLock<Option<Arc<FallbackView>>>,
    lkg: Arc<LkgFile>,
    cache: crate::read_cache::ReadCache,
    /// Serializes mode transitions (fallback, recovery, rebuild).
    transition: tokio::sync::Mutex<()>,
    settings: Arc<Settings>,
    sink: Arc<dyn ChangeSink>,
    status: StatusBoard,
    /// Web UI sessions (in memory only; a restart logs everyone out).
    sessions: SessionStore,
    /// Aggregated audit rows of refused requests (`auth::denials`).
    denials: crate::auth::denials::DenialLog,
    /// Failed-login counters per client address (`auth::login_limit`).
    login_limit: crate::auth::login_limit::LoginLimiter,
    started: Instant,
    metrics: Metrics,
    /// The latest applied-state report of every instance (issue 19).
    applied: crate::applied::AppliedBoard,
}

/// What opening a database needs besides the file.
#[derive(Clone)]
pub struct DatabaseSetup {
    pub schemas: SchemaRegistry,
    pub options: ManagerOptions,
}

/// The state every front end and background task shares: one cloneable
/// value (an `Arc`).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    /// `manager` is `None` when start-up could not open (or adopt) the
    /// database; `expected_epoch` is then what a database must have to be
    /// adopted by recovery.
    pub fn new(
        manager: Option<Manager>,
        setup: DatabaseSetup,
        expected_epoch: Option<Epoch>,
        settings: Arc<Settings>,
        sink: Arc<dyn ChangeSink>,
        status: StatusBoard,
    ) -> Self {
        let lkg = Arc::new(LkgFile::new(
            settings.lkg_path.clone(),
            settings.lkg_keys.clone(),
        ));
        let guard = settings.guard;
        let applied_limits = settings.applied_limits;
        Self {
            inner: Arc::new(Inner {
                manager: RwLock::new(manager.map(Arc::new)),
                setup,
                expected_epoch: RwLock::new(expected_epoch),
                fallback: RwLock::new(None),
                lkg,
                cache: crate::read_cache::ReadCache::default(),
                transition: tokio::sync::Mutex::new(()),
                settings,
                sink,
                status,
                sessions: SessionStore::default(),
                denials: crate::auth::denials::DenialLog::new(guard.denial_window),
                login_limit: crate::auth::login_limit::LoginLimiter::new(
                    guard.login_max_failures,
                    guard.login_window,
                ),
                started: Instant::now(),
                metrics: Metrics::new(),
                applied: crate::applied::AppliedBoard::new(applied_limits),
            }),
        }
    }

    /// The current manager (a rebuild may replace it); `None` while the
    /// service has no database (see [`AppState::new`]).
    pub fn manager(&self) -> Option<Arc<Manager>> {
        self.inner
            .manager
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Schemas and options for opening a manager: the current one's, else
    /// the ones start-up loaded.
    pub fn database_setup(&self) -> DatabaseSetup {
        match self.manager() {
            Some(m) => DatabaseSetup {
                schemas: m.schemas().clone(),
                options: m.options().clone(),
            },
            None => self.inner.setup.clone(),
        }
    }

    /// The epoch this service's data belongs to: the manager's, else the one
    /// a database must have to be adopted. `None` when nothing is known.
    pub fn expected_epoch(&self) -> Option<Epoch> {
        match self.manager() {
            Some(m) => Some(m.epoch().clone()),
            None => self
                .inner
                .expected_epoch
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The settings, shared (for tasks that outlive a borrow).
    pub fn settings_arc(&self) -> Arc<Settings> {
        self.inner.settings.clone()
    }

    /// Replaces the manager (after recovery or a rebuild).
    pub fn replace_manager(&self, manager: Manager) {
        *self
            .inner
            .manager
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(manager));
        self.inner.cache.clear();
        self.inner.applied.desired_changed();
    }

    /// The cache of serialized reads (normal mode only).
    pub fn read_cache(&self) -> &crate::read_cache::ReadCache {
        &self.inner.cache
    }

    /// The fallback view, when in read-only fallback with a valid cache.
    pub fn fallback(&self) -> Option<Arc<FallbackView>> {
        self.inner
            .fallback
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_fallback(&self, view: Option<FallbackView>) {
        *self
            .inner
            .fallback
            .write()
            .unwrap_or_else(|p| p.into_inner()) = view.map(Arc::new);
    }

    pub fn lkg(&self) -> &Arc<LkgFile> {
        &self.inner.lkg
    }

    /// Taken for the duration of a mode transition.
    pub async fn transition_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.transition.lock().await
    }

    /// Whether the database serves requests (normal mode).
    pub fn is_normal(&self) -> bool {
        self.inner.status.get().mode == OperationalMode::Normal
    }

    /// The live status board.
    pub fn status(&self) -> &StatusBoard {
        &self.inner.status
    }

    /// The web UI's session store.
    pub fn sessions(&self) -> &SessionStore {
        &self.inner.sessions
    }

    /// The aggregated audit of refused requests.
    pub fn denials(&self) -> &crate::auth::denials::DenialLog {
        &self.inner.denials
    }

    /// The login rate limiter.
    pub fn login_limit(&self) -> &crate::auth::login_limit::LoginLimiter {
        &self.inner.login_limit
    }

    pub fn max_body_bytes(&self) -> usize {
        self.inner.settings.max_body_bytes
    }

    /// The service's Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// What every instance says it runs (desired vs applied).
    pub fn applied(&self) -> &crate::applied::AppliedBoard {
        &self.inner.applied
    }

    pub fn uptime_seconds(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }

    /// After a commit: refreshes the LKG cache (before the change is
    /// acknowledged, so a rebuild never loses it) and tells the sink (MQTT).
    /// A failing cache write does not fail the request: the change is in the
    /// database; health reports the stale cache. Called by the write path
    /// (`changes`: `write_blocking`, `install_manager`) and the mode
    /// machine; crate-private, so no front end (HTTP, UI, CLI: other
    /// crates) can call it.
    pub(crate) async fn notify_changed(&self, services: &[ServiceName]) {
        if services.is_empty() {
            return;
        }
        if self.inner.settings.failpoint == Some(crate::settings::Failpoint::AfterCommit) {
            die_at_failpoint();
        }
        self.inner.cache.invalidate(services);
        self.inner.metrics.config_changed(services.len());
        self.inner.applied.add_known(services);
        self.inner.applied.desired_changed();
        // The publisher reads the committed state itself; waking it first lets
        // the MQTT message go out while the cache is being written.
        self.inner.sink.configs_changed(services);
        self.update_lkg(services).await;
    }

    /// Journals the changed services' entries in the LKG cache (a new
    /// snapshot when the journal cannot take them) and records its validity.
    async fn update_lkg(&self, services: &[ServiceName]) {
        let lkg = self.inner.lkg.clone();
        let Some(manager) = self.manager() else {
            return;
        };
        let services = services.to_vec();
        let result = tokio::task::spawn_blocking(move || lkg.update(&manager, &services)).await;
        self.record_lkg_write(result.map(|r| r.map(|_| ())));
    }

    /// Rewrites the LKG cache from the database and records its validity.
    /// Without a database there is nothing to write (and the cache on disk is
    /// what reads are served from): nothing is done.
    pub async fn refresh_lkg(&self) {
        let lkg = self.inner.lkg.clone();
        let Some(manager) = self.manager() else {
            return;
        };
        let result = tokio::task::spawn_blocking(move || lkg.refresh(&manager)).await;
        self.record_lkg_write(result);
    }

    fn record_lkg_write(
        &self,
        result: Result<Result<(), crate::lkg::RefreshError>, tokio::task::JoinError>,
    ) {
        let ok = matches!(result, Ok(Ok(())));
        if let Ok(Err(e)) = &result {
            tracing::warn!(error = %e, "could not refresh the last-known-good cache");
        }
        self.inner.metrics.lkg_write(ok);
        self.inner.status.update(|s| s.lkg_cache_valid = ok);
    }

    /// Like [`AppState::run_blocking`] in every mode (for the mode machinery
    /// itself).
    pub async fn run_blocking_unchecked<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: ServiceFailure,
        F: FnOnce(&Manager) -> Result<T, E> + Send + 'static,
    {
        let Some(manager) = self.manager() else {
            return Err(ServiceError::NoFallback.into());
        };
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || f(&manager))
            .await
            .map_err(|e| ServiceError::Internal(format!("blocking task failed: {e}")))?;
        // Only server-side failures count as failed operations; a 404 or a
        // 409 is the database answering correctly.
        let failed = matches!(&result, Err(e) if e.is_server_failure());
        self.inner.metrics.observe_db(started.elapsed(), !failed);
        result
    }
}

/// `CONFIG_TEST_FAILPOINT`: dies as a power cut or the OOM killer would,
/// without unwinding, flushing or answering.
fn die_at_failpoint() -> ! {
    tracing::warn!("CONFIG_TEST_FAILPOINT reached: killing the process");
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    std::process::abort()
}
