//! The database-file backend of `config …` (`--offline`): for a robot whose
//! service is stopped (maintenance, recovery, provisioning an image).
//!
//! **Refusing while a service holds the database.** A running service keeps
//! its SQLite connections open for its whole life, and every open connection
//! to a WAL database holds a shared lock on the file. Before opening the
//! store, the CLI asks SQLite for an *exclusive* lock (`locking_mode =
//! EXCLUSIVE` + `BEGIN EXCLUSIVE`) without waiting; if any other process has
//! the file open, that fails with `SQLITE_BUSY` and the CLI refuses. This
//! needs no cooperation from the service, works whatever port it listens on,
//! and also catches a second CLI. The probe is released before the store is
//! opened (the store's own connections would otherwise block on it), so a
//! service started in that instant could still open the file; SQLite's own
//! locking keeps the data consistent even then — what the service would miss
//! is the change notification (MQTT publish), not the change.
//!
//! Offline writes go through the same manager as the service (schema
//! validation, history, audit with actor `cli-offline`, secrets sealed with
//! the master key from the settings). They are published on MQTT and written
//! to the LKG cache when the service next starts.

use std::path::Path;

use config_manager_core::change_type::ChangeType;
use config_manager_core::domain::{ServiceName, Version};
use config_manager_core::manager::{
    EnvImportRequest, ExportDocument, ExportOptions, ImportOptions, Manager, ManagerError,
    PutRequest, SecretView,
};
use config_manager_core::store::{in_use_by_another_process, ExclusiveProbeError, Store};
use serde_json::{json, Value};

use super::config::{Backend, EnvImport, SetRequest};
use super::{load_env, CliError, CliResult};
use config_manager_service::settings::Settings;

/// Audit identity of offline changes.
pub const OFFLINE_ACTOR: &str = "cli-offline";

/// A manager over the database file, opened only when nobody else has it.
pub struct Offline {
    manager: Manager,
}

impl Offline {
    /// Reads the service's settings, checks the database is free, opens it.
    pub fn open(env_file: &Path) -> CliResult<Self> {
        let env = load_env(env_file)?;
        let settings = Settings::from_env(&env, env_file.to_path_buf()).map_err(|e| {
            CliError::Usage(format!(
                "--offline needs the service's settings and keys ({e}); run the CLI where the service's .env is, or pass --env-file"
            ))
        })?;
        for warning in &settings.deprecations {
            eprintln!("config-manager: warning: {warning}");
        }
        let db = &settings.db_path;
        if !db.exists() {
            return Err(CliError::Usage(format!(
                "no database at {} (CONFIG_DB_PATH); start the service once to create it",
                db.display()
            )));
        }
        ensure_not_in_use(db)?;
        let schemas =
            crate::serve::load_schemas(&settings).map_err(|e| CliError::Usage(format!("{e:#}")))?;
        let store = Store::open_existing(db)
            .map_err(|e| CliError::Failed(format!("opening {}: {e}", db.display())))?;
        let options = crate::serve::manager_options(&settings);
        let manager = Manager::open(store, schemas, options).map_err(failed)?;
        Ok(Self { manager })
    }
}

/// Fails when another process has `db` open (see the module docs).
pub fn ensure_not_in_use(db: &Path) -> CliResult {
    let in_use = || {
        CliError::Failed(format!(
            "the database {} is in use by another process (a running config-manager?); \
             go through the service instead (drop --offline), or stop it first",
            db.display()
        ))
    };
    match in_use_by_another_process(db) {
        Ok(false) => Ok(()),
        Ok(true) => Err(in_use()),
        Err(ExclusiveProbeError::Open(e)) => {
            Err(CliError::Failed(format!("opening {}: {e}", db.display())))
        }
        Err(ExclusiveProbeError::Check(e)) => {
            Err(CliError::Failed(format!("checking {}: {e}", db.display())))
        }
    }
}

fn failed(e: ManagerError) -> CliError {
    match e {
        ManagerError::Validation(errors) => {
            let mut msg = String::from("configuration is invalid");
            for e in errors {
                msg.push_str(&format!("\n  {}: {}", e.pointer, e.message));
            }
            CliError::Failed(msg)
        }
        other => CliError::Failed(other.to_string()),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> CliResult<Value> {
    serde_json::to_value(value).map_err(|e| CliError::Failed(format!("cannot encode: {e}")))
}

impl Backend for Offline {
    fn get(&self, service: &ServiceName) -> CliResult<Value> {
        let m = &self.manager;
        let name = m.resolve_service(service).map_err(failed)?;
        to_json(
            &m.get_effective(&name, SecretView::Masked, false)
                .map_err(failed)?,
        )
    }

    fn set(&self, service: &ServiceName, change: SetRequest) -> CliResult<Value> {
        let m = &self.manager;
        let name = m.resolve_service(service).map_err(failed)?;
        let current = match change.expect_version {
            Some(v) => v,
            None => m
                .store()
                .get_config(&name)
                .map_or(Version::NONE, |c| c.version),
        };
        let outcome = m
            .put(
                &name,
                PutRequest {
                    config: change.config,
                    expected_version: Some(current),
                    merge: true,
                    actor: OFFLINE_ACTOR.into(),
                    reason: change.reason,
                    change_type: ChangeType::Update,
                },
            )
            .map_err(failed)?;
        Ok(json!({
            "success": true,
            "service": outcome.stored.service,
            "version": outcome.stored.version,
            "config_epoch": m.epoch().as_str(),
            "message": if outcome.changed { "saved" } else { "no changes" },
        }))
    }

    fn export(&self, include_secrets: bool, include_profiles: bool) -> CliResult<Value> {
        let m = &self.manager;
        let options = ExportOptions {
            include_secrets,
            include_profiles,
        };
        let doc = m.export(options).map_err(failed)?;
        m.audit_export(OFFLINE_ACTOR, options, &doc)
            .map_err(|e| CliError::Failed(format!("cannot audit the export: {e}")))?;
        to_json(&doc)
    }

    fn import(&self, doc: ExportDocument, options: ImportOptions) -> CliResult<Value> {
        let m = &self.manager;
        let options = ImportOptions {
            actor: OFFLINE_ACTOR.into(),
            ..options
        };
        let outcome = m.import(doc, &options).map_err(failed)?;
        let mut out = to_json(&outcome)?;
        if let Value::Object(o) = &mut out {
            o.insert("success".into(), Value::Bool(true));
            o.insert("config_epoch".into(), json!(m.epoch().as_str()));
        }
        Ok(out)
    }

    fn import_env(&self, service: &ServiceName, request: EnvImport) -> CliResult<Value> {
        let m = &self.manager;
        let name = m.resolve_service(service).map_err(failed)?;
        let outcome = m
            .import_env(
                &name,
                EnvImportRequest {
                    text: request.text,
                    dry_run: request.dry_run,
                    expected_version: None,
                    actor: OFFLINE_ACTOR.into(),
                    reason: request
                        .reason
                        .or_else(|| Some("import of a .env file".to_owned())),
                },
            )
            .map_err(failed)?;
        let mut out = to_json(&outcome)?;
        if let Value::Object(o) = &mut out {
            o.insert("success".into(), Value::Bool(true));
            o.insert("config_epoch".into(), json!(m.epoch().as_str()));
        }
        Ok(out)
    }
}
