//! `config-manager serve`: first run, settings, database, HTTP server, and a
//! graceful shutdown on SIGTERM/ctrl-c.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use config_manager_core::manager::{process_env, Manager, ManagerOptions};
use config_manager_core::schema::SchemaRegistry;
use config_manager_core::store::Store;
use tokio::net::TcpListener;

use crate::first_run;
use crate::settings::{EnvSource, LogFormat, Settings};
use crate::state::{AppState, ChangeSink, NoSink};
use crate::status::StatusBoard;

/// Entry point of `serve`; returns the process exit code.
pub fn main(env_file: PathBuf) -> ExitCode {
    let (settings, notes) = match prepare(env_file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    init_logging(settings.log_format);
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

/// Text logs by default, JSON lines with `LOG_FORMAT=json`; level from `RUST_LOG`.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Loads the schemas: built-ins plus `CONFIG_SCHEMA_DIR`.
pub fn load_schemas(settings: &Settings) -> anyhow::Result<SchemaRegistry> {
    let mut schemas = SchemaRegistry::builtin().context("built-in schemas")?;
    if let Some(dir) = &settings.schema_dir {
        let loaded = schemas
            .load_dir(dir)
            .with_context(|| format!("CONFIG_SCHEMA_DIR {}", dir.display()))?;
        tracing::info!(count = loaded.len(), dir = %dir.display(), "loaded service schemas");
    }
    Ok(schemas)
}

async fn run(settings: Arc<Settings>) -> anyhow::Result<()> {
    let schemas = load_schemas(&settings)?;
    let options = ManagerOptions {
        allow_unknown_services: settings.allow_unknown_services,
        env: process_env(),
        secrets: Some(Arc::new(settings.master_keys.clone())),
    };
    let db_path = settings.db_path.clone();
    let manager = tokio::task::spawn_blocking(move || -> anyhow::Result<Manager> {
        let store = Store::open(&db_path)
            .with_context(|| format!("opening the database {}", db_path.display()))?;
        Ok(Manager::open(store, schemas, options)?)
    })
    .await??;
    tracing::info!(
        epoch = %manager.epoch(),
        schema_version = manager.schema_version(),
        db = %settings.db_path.display(),
        "database ready"
    );
    let sink: Arc<dyn ChangeSink> = Arc::new(NoSink);
    let status = StatusBoard::new();
    let state = AppState::new(manager, settings.clone(), sink, status);
    let addr = std::net::SocketAddr::new(settings.host, settings.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, crate::http::router(state.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server")?;
    tracing::info!("shutting down");
    let manager = state.manager();
    tokio::task::spawn_blocking(move || manager.store().checkpoint()).await??;
    Ok(())
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
