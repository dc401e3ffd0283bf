//! `config-manager serve`: first run, settings, database, HTTP server, and a
//! graceful shutdown on SIGTERM/ctrl-c.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use config_manager_core::health::{DatabaseStatus, OperationalMode};
use config_manager_core::lkg::LkgError;
use config_manager_core::manager::{process_env, Manager, ManagerOptions};
use config_manager_core::schema::SchemaRegistry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::first_run;
use crate::modes::startup::Opened;
use crate::service::supervise;
use crate::settings::{EnvSource, Settings};
use crate::state::{AppState, ChangeSink, DatabaseSetup};
use crate::status::StatusBoard;

/// Entry point of `serve`; returns the process exit code.
pub fn main(env_file: PathBuf) -> ExitCode {
    restrict_umask();
    let (settings, notes) = match prepare(env_file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Declared before the runtime, so it drops (and flushes) after it.
    let _log = crate::logging::init_logging(settings.log_format);
    for note in notes {
        tracing::warn!("{note}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("config-manager: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Arc::new(settings))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("config-manager: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every file the service creates from here on (database, WAL, SHM, epoch
/// file, moved-aside databases, snapshots, LKG, logs) is readable by its
/// owner only, whatever umask it was started with: the database holds the
/// encrypted secrets and the audit log (issue 14, finding 10).
fn restrict_umask() {
    #[cfg(unix)]
    {
        use rustix::fs::Mode;
        rustix::process::umask(Mode::from_raw_mode(0o077));
    }
}

/// First run and settings. Errors are printed here (before logging exists)
/// and become exit code 2.
fn prepare(env_file: PathBuf) -> Result<(Settings, Vec<String>), ExitCode> {
    let fail = |msg: String| {
        eprintln!("config-manager: {msg}");
        ExitCode::from(2)
    };
    let mut env = EnvSource::load(&env_file).map_err(|e| fail(e.to_string()))?;
    let generated = first_run::generate_missing(&mut env).map_err(fail)?;
    let mut notes = Vec::new();
    if !generated.values.is_empty() {
        if let Err(e) = first_run::append_to_env_file(&env_file, &generated) {
            first_run::print_instructions(&env_file, &generated, &e);
            return Err(ExitCode::from(2));
        }
        notes.push(format!(
            "first run: generated {} and wrote them to {} (mode 0600)",
            generated.names().join(", "),
            env_file.display()
        ));
        if generated.created_token {
            let msg = format!(
                "no CONFIG_API_TOKENS were configured: created one write token named 'admin'; \
                 find it in CONFIG_API_TOKENS in {}",
                env_file.display()
            );
            eprintln!("config-manager: {msg}");
            notes.push(msg);
        }
    }
    let settings = Settings::from_env(&env, env_file).map_err(|e| fail(e.to_string()))?;
    Ok((settings, notes))
}

/// Loads the schemas: built-ins plus `CONFIG_SCHEMA_DIR`.
pub fn load_schemas(settings: &Settings) -> anyhow::Result<SchemaRegistry> {
    let mut schemas = SchemaRegistry::builtin().context("built-in schemas")?;
    schemas.set_cache_capacity(settings.schema_cache_size);
    if let Some(dir) = &settings.schema_dir {
        // Parsed, not compiled: validators and field metadata are built
        // when first needed (and kept in a bounded cache), so start-up time
        // and memory do not grow with the number of schemas.
        let loaded = schemas
            .load_dir_deferred(dir)
            .with_context(|| format!("CONFIG_SCHEMA_DIR {}", dir.display()))?;
        let recorded = if schemas.pending_checks() > 0 {
            recorded_schema_hash(&settings.db_path)
        } else {
            None
        };
        let checked = schemas
            .check_pending(recorded.as_deref())
            .with_context(|| format!("CONFIG_SCHEMA_DIR {}", dir.display()))?;
        tracing::info!(
            count = loaded.len(),
            compiled_to_check = checked,
            dir = %dir.display(),
            "loaded service schemas"
        );
    }
    Ok(schemas)
}

/// The schema-set hash the database last recorded, if it can be read now.
/// When it equals the loaded set's, every schema of the set was checked when
/// it was recorded, and none needs compiling to start; anything else (no
/// database yet, unreadable, another set) checks them all.
fn recorded_schema_hash(db: &std::path::Path) -> Option<String> {
    if !db.exists() {
        return None;
    }
    let store = config_manager_core::store::Store::open_existing(db).ok()?;
    store.find_schema_version().ok()?.map(|v| v.schema_hash)
}

async fn run(settings: Arc<Settings>) -> anyhow::Result<()> {
    let service = Service::open(settings.clone()).await?;
    let addr = std::net::SocketAddr::new(settings.host, settings.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    serve_with_listener(service, listener, shutdown_signal()).await
}

/// What start-up builds before anything runs: the state (database opened,
/// or read-only fallback entered) and the MQTT publisher, not started yet.
pub struct Service {
    state: AppState,
    publisher: crate::mqtt::Publisher,
}

impl Service {
    /// Opens the database (or enters fallback), loads the schemas and builds
    /// the state, as the binary does at start-up; starts no task and binds
    /// nothing, so tests can build a real state in a temp dir in-process.
    pub async fn open(settings: Arc<Settings>) -> anyhow::Result<Self> {
        open_service(settings).await
    }

    /// The state every handler gets.
    pub fn state(&self) -> &AppState {
        &self.state
    }
}

async fn open_service(settings: Arc<Settings>) -> anyhow::Result<Service> {
    let schemas = load_schemas(&settings)?;
    let options = ManagerOptions {
        allow_unknown_services: settings.allow_unknown_services,
        env: process_env(),
        env_policy: Arc::new(settings.env_policy()),
        secrets: Some(Arc::new(settings.master_keys.clone())),
        auto_fix_schema: settings.allow_auto_rebuild,
    };
    let setup = DatabaseSetup { schemas, options };
    let opened = {
        let (s, setup) = (settings.clone(), setup.clone());
        tokio::task::spawn_blocking(move || crate::modes::startup::open(&s, &setup))
            .await
            .context("opening the database")?
            .with_context(|| format!("cannot open the database {}", settings.db_path.display()))?
    };
    let (manager, fault) = match opened {
        Opened::Ready(m) => (Some(m), None),
        Opened::Without(f) => (None, Some(f)),
    };
    let status = StatusBoard::new();
    if let Some(manager) = &manager {
        tracing::info!(
            epoch = %manager.epoch(),
            schema_version = manager.schema_version(),
            db = %settings.db_path.display(),
            "database ready"
        );
        for refusal in manager.env_refusals() {
            tracing::warn!(%refusal, "x-env override not read");
        }
        report_schema_change(manager, &status);
    }
    // Built before the state (which holds its sink), started after; it never
    // waits for the broker, so start-up does not depend on MQTT.
    let publisher = crate::mqtt::Publisher::new(settings.mqtt.as_ref())?;
    let sink: Arc<dyn ChangeSink> = publisher.sink();
    let state = AppState::new(
        manager,
        setup,
        fault.as_ref().and_then(|f| f.expected_epoch.clone()),
        settings.clone(),
        sink,
        status,
    );
    match &fault {
        // Nothing is written: the cache on disk is what reads come from.
        Some(fault) => crate::modes::startup::start_without_database(&state, fault).await,
        None => {
            crate::backup::record_epoch_file(&state).await;
            report_existing_lkg(&state).await;
            state.refresh_lkg().await;
            crate::mqtt::applied::load(&state).await;
        }
    }
    Ok(Service { state, publisher })
}

/// Serves `service` on `listener` until `shutdown` resolves, with every
/// background task (MQTT, database monitor, key rotation, backups, audit
/// upkeep); then stops them in order and checkpoints the database. `serve`
/// calls it with the configured address and SIGTERM/ctrl-c.
pub async fn serve_with_listener(
    service: Service,
    listener: TcpListener,
    shutdown_on: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let Service { state, publisher } = service;
    let settings = state.settings_arc();
    let mqtt = publisher.start(state.clone());
    let shutdown = CancellationToken::new();
    // Background tasks are supervised: one that ends unexpectedly is
    // restarted with backoff and named in health (service::supervise).
    let monitor = {
        let (st, interval, stop) = (state.clone(), settings.monitor_interval, shutdown.clone());
        supervise::spawn("monitor", &state, shutdown.clone(), move || {
            crate::modes::monitor::run(st.clone(), interval, stop.clone())
        })
    };
    let rotation = {
        let (st, stop) = (state.clone(), shutdown.clone());
        supervise::spawn_job("key rotation", &state, shutdown.clone(), move || {
            crate::keys::rotation::run(st.clone(), stop.clone())
        })
    };
    // Litestream and/or local snapshots; failures only show in health.
    let backup = crate::backup::BackupService::start(&settings.backup, &state, shutdown.clone());
    let guard = {
        let (st, stop) = (state.clone(), shutdown.clone());
        supervise::spawn("audit guard", &state, shutdown.clone(), move || {
            crate::service::guard::run(st.clone(), stop.clone())
        })
    };
    crate::http::server::serve(
        listener,
        crate::http::router(state.clone()),
        settings.http_limits,
        shutdown_on,
    )
    .await;
    tracing::info!("shutting down");
    shutdown.cancel();
    // Final counts of refused requests, before the database closes.
    let _ = guard.await;
    let _ = monitor.await;
    let _ = rotation.await;
    // Offline health, flushed, then a clean disconnect (no last-will).
    mqtt.shutdown().await;
    // Litestream uploads what is left and exits before the WAL checkpoint
    // below: a checkpoint Litestream did not do makes it take a full
    // snapshot, and it would hold up the checkpoint (docs/backup.md).
    backup.join().await;
    if let Some(manager) = state.manager() {
        tokio::task::spawn_blocking(move || manager.store().checkpoint()).await??;
    }
    Ok(())
}

/// Shows an incompatible schema change in health (read-only until fixed)
/// and logs a compatible one.
fn report_schema_change(manager: &Manager, status: &StatusBoard) {
    let report = manager.schema_report().clone();
    if !report.mismatches.is_empty() {
        tracing::error!(report = %report.summary(), "stored configuration does not satisfy the changed schemas; read-only until fixed");
        status.update(|s| {
            s.mode = OperationalMode::ReadOnlyFallback;
            s.database_status = DatabaseStatus::SchemaMismatch;
            s.event = Some("schema change incompatible with stored configuration".into());
            s.err = Some(format!("schema mismatch: {}", report.summary()));
        });
    } else if report.changed {
        tracing::info!(upgraded = ?report.upgraded, reset = report.reset.len(), "applied a schema change");
    }
}

/// Logs (and shows in health) an LKG file that exists but does not verify
/// before it is rewritten from the database.
async fn report_existing_lkg(state: &AppState) {
    let lkg = state.lkg().clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || lkg.load()).await {
        if !matches!(e, LkgError::Missing(_)) {
            tracing::warn!(error = %e, "the last-known-good cache failed verification and is not used; rewriting it from the database");
            state.status().update(|s| {
                s.event = Some(format!(
                    "last-known-good cache invalid at start-up ({e}); rewritten"
                ))
            });
        }
    }
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
