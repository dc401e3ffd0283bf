//! Export and import: every service's stored configuration (and optionally
//! the profiles) as one JSON document, for backups an operator can read,
//! moving settings between robots, and reviewing changes in version control.
//!
//! ```json
//! {
//!   "format": "config-manager-export",
//!   "format_version": 1,
//!   "exported_at": "2026-01-15T09:30:00.000Z",
//!   "config_epoch": "550e8400-e29b-41d4-a716-446655440000",
//!   "includes_secrets": false,
//!   "services": { "tts-worker": { "version": 7, "config": { "volume_percent": 60, "eleven_api_key": "********" } } },
//!   "profiles": [ { "name": "night", "description": null, "config_snapshot": { … } } ]
//! }
//! ```
//!
//! `config` holds the values the database stores (schema defaults already
//! filled in by earlier writes), never environment overrides. A secret that is
//! set appears as `"********"` unless the export was asked to include secrets;
//! an unset one is absent. On import `"********"` (or an absent key) keeps the
//! target's current secret, `null` clears it, any other value replaces it.
//!
//! An import validates every service first and then writes all of them in one
//! transaction (`Store::save_configs`): either every service gets its new
//! version (change type `import`) or none does. Services the document does not
//! name are left alone. Profiles, when present, are saved after the configs
//! commit; they are validated up front, so only a database fault can leave
//! configs imported without their profiles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::restore::without_env_keys;
use super::{validate_profile_name, Manager, ManagerError, PutRequest, Result};
use crate::audit::{AuditAction, AuditOutcome};
use crate::change_type::ChangeType;
use crate::domain::{now_rfc3339, ServiceName, Version, SECRET_MASK};
use crate::schema::FieldError;
use crate::store::{ConfigWrite, NewAudit, StoreError, StoredConfig};

/// Value of the document's `format` member.
pub const EXPORT_FORMAT: &str = "config-manager-export";

/// The only document version so far.
pub const EXPORT_FORMAT_VERSION: u32 = 1;

/// An export document (see the module docs for its shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportDocument {
    pub format: String,
    pub format_version: u32,
    #[serde(default)]
    pub exported_at: Option<String>,
    /// Epoch of the database the document came from. Versions are only
    /// comparable within one epoch (see [`ImportOptions::expect_versions`]).
    #[serde(default)]
    pub config_epoch: Option<String>,
    #[serde(default)]
    pub includes_secrets: bool,
    pub services: BTreeMap<String, ExportedService>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<ExportedProfile>>,
}

/// One service in an export document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedService {
    /// The version that was exported. Informational unless the import asks
    /// for [`ImportOptions::expect_versions`].
    #[serde(default)]
    pub version: Option<Version>,
    pub config: Map<String, Value>,
}

/// One profile in an export document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedProfile {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub config_snapshot: Map<String, Value>,
}

/// What an export contains.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportOptions {
    /// Decrypted secret values instead of `"********"`. The caller decides who
    /// may ask (the HTTP layer requires the write role and audits it).
    pub include_secrets: bool,
    pub include_profiles: bool,
}

/// How an import behaves.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Each service's `version` in the document must still be its current
    /// version (nobody changed it since the export). Requires the document to
    /// come from this database's epoch.
    pub expect_versions: bool,
    /// Validate everything, write nothing.
    pub dry_run: bool,
    pub actor: String,
    pub reason: Option<String>,
}

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ImportOutcome {
    /// Services that got a new version.
    pub services_updated: Vec<ImportedService>,
    /// Services in the document whose stored values already matched.
    pub services_unchanged: Vec<ServiceName>,
    pub profiles_saved: Vec<String>,
    /// `service/key` of every secret field the document sets or clears. In a
    /// dry run these count as updates whether or not the value differs from
    /// the stored one (which is never compared).
    pub secrets_written: Vec<String>,
    pub dry_run: bool,
}

/// A service an import changed.
#[derive(Debug, Clone, Serialize)]
pub struct ImportedService {
    pub service: ServiceName,
    /// The new version (in a dry run: the current one).
    pub version: Version,
}

impl Manager {
    /// Builds an export document of every stored service.
    /// Records what an export needs in the audit log (the one rule for the
    /// API and the offline CLI): an export with secrets in clear text is
    /// audited with the actor and the number of services; one without
    /// secrets is not.
    pub fn audit_export(
        &self,
        actor: &str,
        options: ExportOptions,
        doc: &ExportDocument,
    ) -> std::result::Result<(), StoreError> {
        if !options.include_secrets {
            return Ok(());
        }
        self.store.record_audit(&NewAudit {
            actor: actor.to_owned(),
            action: AuditAction::ConfigExport,
            target: None,
            outcome: AuditOutcome::Ok,
            detail: Some(serde_json::json!({
                "include_secrets": true,
                "services": doc.services.len(),
            })),
        })
    }

    pub fn export(&self, options: ExportOptions) -> Result<ExportDocument> {
        let mut services = BTreeMap::new();
        for stored in self.store.list_configs()? {
            let mut config = stored.config;
            self.export_secrets(&stored.service, options.include_secrets, &mut config)?;
            services.insert(
                stored.service.to_string(),
                ExportedService {
                    version: Some(stored.version),
                    config,
                },
            );
        }
        let profiles = if options.include_profiles {
            let mut out = Vec::new();
            for summary in self.store.list_profiles()? {
                let p = self.store.get_profile(&summary.profile_name)?;
                out.push(ExportedProfile {
                    name: p.summary.profile_name,
                    description: p.summary.description,
                    config_snapshot: p.config_snapshot,
                });
            }
            Some(out)
        } else {
            None
        };
        Ok(ExportDocument {
            format: EXPORT_FORMAT.into(),
            format_version: EXPORT_FORMAT_VERSION,
            exported_at: Some(now_rfc3339()),
            config_epoch: Some(self.epoch.to_string()),
            includes_secrets: options.include_secrets,
            services,
            profiles,
        })
    }

    /// Adds the service's set secrets to `config`: masked, or decrypted.
    fn export_secrets(
        &self,
        service: &ServiceName,
        reveal: bool,
        config: &mut Map<String, Value>,
    ) -> Result<()> {
        let Some(schema) = self.schemas.get(service.as_str()) else {
            return Ok(());
        };
        if schema.secret_keys().next().is_none() {
            return Ok(());
        }
        for secret in self.store.list_secrets(Some(service))? {
            if !schema.secret_keys().any(|k| k == secret.key) {
                continue;
            }
            let value = if reveal {
                self.decrypt_secret(service, &secret.key, &secret.ciphertext)?
            } else {
                Value::String(SECRET_MASK.into())
            };
            config.insert(secret.key, value);
        }
        Ok(())
    }

    /// Validates a whole document, then writes every service atomically.
    ///
    /// Validation problems of all services are reported together, as field
    /// errors whose pointers start at the document root
    /// (`/services/tts-worker/config/volume_percent`).
    ///
    /// Every dry run is audited (`config.import_dry_run`, outcome `ok` or
    /// `refused`, with the number of services and profiles): it checks secret
    /// values and is how a caller would probe the service.
    pub fn import(&self, doc: ExportDocument, options: &ImportOptions) -> Result<ImportOutcome> {
        if !options.dry_run {
            return self.import_unaudited(doc, options);
        }
        let detail = serde_json::json!({
            "services": doc.services.len(),
            "profiles": doc.profiles.as_ref().map_or(0, Vec::len),
        });
        let result = self.import_unaudited(doc, options);
        self.store.record_audit(&crate::store::NewAudit {
            actor: options.actor.clone(),
            action: AuditAction::ConfigImportDryRun,
            target: None,
            outcome: if result.is_ok() {
                AuditOutcome::Ok
            } else {
                AuditOutcome::Refused
            },
            detail: Some(detail),
        })?;
        result
    }

    fn import_unaudited(
        &self,
        doc: ExportDocument,
        options: &ImportOptions,
    ) -> Result<ImportOutcome> {
        if doc.format != EXPORT_FORMAT {
            return Err(ManagerError::BadRequest(format!(
                "not an export document: \"format\" must be \"{EXPORT_FORMAT}\""
            )));
        }
        if doc.format_version != EXPORT_FORMAT_VERSION {
            return Err(ManagerError::BadRequest(format!(
                "export format_version {} is not supported (this build reads {EXPORT_FORMAT_VERSION})",
                doc.format_version
            )));
        }
        if options.expect_versions && doc.config_epoch.as_deref() != Some(self.epoch.as_str()) {
            return Err(ManagerError::BadRequest(
                "expect_versions needs a document exported from this database (same config_epoch)"
                    .into(),
            ));
        }
        let mut errors = Vec::new();
        let mut writes = Vec::new();
        for (raw_name, entry) in doc.services {
            match self.prepare_import(&raw_name, entry, options) {
                Ok(write) => writes.push(write),
                Err(ImportProblem::Fields(e)) => errors.extend(e),
                Err(ImportProblem::Fatal(e)) => return Err(e),
            }
        }
        let profiles = doc.profiles.unwrap_or_default();
        for (i, p) in profiles.iter().enumerate() {
            if validate_profile_name(&p.name).is_err() {
                errors.push(FieldError::new(
                    format!("/profiles/{i}/name"),
                    "invalid profile name: 1-100 letters, digits, space, '.', '_' or '-'",
                ));
            }
            errors.extend(self.profile_snapshot_errors(
                &p.config_snapshot,
                &format!("/profiles/{i}/config_snapshot"),
            )?);
        }
        if !errors.is_empty() {
            return Err(ManagerError::Validation(errors));
        }
        if options.dry_run {
            return self.dry_run_outcome(&writes, &profiles);
        }
        let requested: Vec<ServiceName> = writes.iter().map(|w| w.service.clone()).collect();
        let secrets_written = written_secrets(&writes);
        let changed = self.save_changed(&writes)?;
        let mut profiles_saved = Vec::new();
        for p in profiles {
            self.store.save_profile(
                &p.name,
                p.description.as_deref(),
                &p.config_snapshot,
                &options.actor,
            )?;
            profiles_saved.push(p.name);
        }
        Ok(outcome(requested, changed, profiles_saved, secrets_written))
    }

    /// One service of the document as a store write, or its field errors.
    fn prepare_import(
        &self,
        raw_name: &str,
        entry: ExportedService,
        options: &ImportOptions,
    ) -> std::result::Result<ConfigWrite, ImportProblem> {
        let at = format!("/services/{}", pointer_escape(raw_name));
        let name = match self.resolve_service(raw_name) {
            Ok(n) => n,
            Err(ManagerError::InvalidName { reason, .. }) => {
                return Err(field(&at, format!("invalid service name: {reason}")))
            }
            Err(ManagerError::UnknownService(_)) => {
                return Err(field(
                    &at,
                    "unknown service (no schema, and unknown services are not allowed)",
                ))
            }
            Err(e) => return Err(ImportProblem::Fatal(e)),
        };
        let current = self
            .stored_or_empty(&name)?
            .map_or(Version::NONE, |c| c.version);
        let expected = if options.expect_versions {
            match entry.version {
                Some(v) => v,
                None => {
                    return Err(field(
                        &format!("{at}/version"),
                        "required by expect_versions",
                    ))
                }
            }
        } else {
            current
        };
        let config = without_env_keys(self, &name, entry.config);
        // A dry run never compares secret values with the stored ones: its
        // answer ("unchanged" or not) would tell whether a guess was right.
        let config = if options.dry_run {
            config
        } else {
            self.unchanged_secrets_masked(&name, config)?
        };
        let request = PutRequest {
            config,
            expected_version: Some(expected),
            merge: false,
            actor: options.actor.clone(),
            reason: Some(
                options
                    .reason
                    .clone()
                    .unwrap_or_else(|| "import of an export document".into()),
            ),
            change_type: ChangeType::Import,
        };
        match self.prepare_write(&name, request) {
            Ok(w) => Ok(w),
            Err(ManagerError::Validation(errs)) => Err(ImportProblem::Fields(
                errs.into_iter()
                    .map(|e| FieldError::new(format!("{at}/config{}", e.pointer), &e.message))
                    .collect(),
            )),
            Err(e) => Err(ImportProblem::Fatal(e)),
        }
    }

    /// Replaces imported secret values equal to the stored ones by the mask,
    /// so re-importing an export with secrets does not create new versions
    /// (sealing is randomized: the same value would look like a change).
    fn unchanged_secrets_masked(
        &self,
        service: &ServiceName,
        mut config: Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        let Some(schema) = self.schemas.get(service.as_str()) else {
            return Ok(config);
        };
        let candidates: Vec<String> = schema
            .secret_keys()
            .filter(|k| {
                config
                    .get(*k)
                    .is_some_and(|v| v.is_string() && v.as_str() != Some(SECRET_MASK))
            })
            .map(str::to_owned)
            .collect();
        if candidates.is_empty() {
            return Ok(config);
        }
        for secret in self.store.list_secrets(Some(service))? {
            if !candidates.contains(&secret.key) {
                continue;
            }
            let current = self.decrypt_secret(service, &secret.key, &secret.ciphertext)?;
            if config.get(&secret.key) == Some(&current) {
                config.insert(secret.key, Value::String(SECRET_MASK.into()));
            }
        }
        Ok(config)
    }

    /// The outcome of a dry run: which services would change.
    fn dry_run_outcome(
        &self,
        writes: &[ConfigWrite],
        profiles: &[ExportedProfile],
    ) -> Result<ImportOutcome> {
        let mut updated = Vec::new();
        let mut unchanged = Vec::new();
        for w in writes {
            let current = self.store.get_config(&w.service).ok();
            let same =
                current.as_ref().is_some_and(|c| c.config == w.config) && w.secrets.is_empty();
            if same {
                unchanged.push(w.service.clone());
            } else {
                updated.push(ImportedService {
                    service: w.service.clone(),
                    version: current.map_or(Version::NONE, |c| c.version),
                });
            }
        }
        Ok(ImportOutcome {
            services_updated: updated,
            services_unchanged: unchanged,
            profiles_saved: profiles.iter().map(|p| p.name.clone()).collect(),
            secrets_written: written_secrets(writes),
            dry_run: true,
        })
    }
}

/// Why one service of an import cannot be written.
enum ImportProblem {
    /// Reported with the other services' problems (422).
    Fields(Vec<FieldError>),
    /// Stops the import (database fault, conflict, …).
    Fatal(ManagerError),
}

impl From<ManagerError> for ImportProblem {
    fn from(e: ManagerError) -> Self {
        ImportProblem::Fatal(e)
    }
}

fn field(pointer: &str, message: impl AsRef<str>) -> ImportProblem {
    ImportProblem::Fields(vec![FieldError::new(pointer, message)])
}

fn outcome(
    requested: Vec<ServiceName>,
    changed: Vec<StoredConfig>,
    profiles_saved: Vec<String>,
    secrets_written: Vec<String>,
) -> ImportOutcome {
    let services_unchanged = requested
        .into_iter()
        .filter(|s| !changed.iter().any(|c| &c.service == s))
        .collect();
    ImportOutcome {
        services_updated: changed
            .into_iter()
            .map(|c| ImportedService {
                service: c.service,
                version: c.version,
            })
            .collect(),
        services_unchanged,
        profiles_saved,
        secrets_written,
        dry_run: false,
    }
}

/// `service/key` of every secret change in `writes`.
fn written_secrets(writes: &[ConfigWrite]) -> Vec<String> {
    writes
        .iter()
        .flat_map(|w| w.secrets.iter().map(|c| format!("{}/{}", w.service, c.key)))
        .collect()
}

/// RFC 6901 escaping of one pointer segment; long or odd names are cut so an
/// error never echoes a huge attacker-chosen string.
pub(super) fn pointer_escape(segment: &str) -> String {
    segment
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect::<String>()
        .replace('~', "~0")
        .replace('/', "~1")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;
    use crate::manager::test_support::{open_manager, test_options};

    /// A manager over a fresh database with its own master key.
    fn manager() -> (tempfile::TempDir, Manager) {
        open_manager(test_options())
    }

    fn set_secret(m: &Manager, value: &str) {
        let tts = ServiceName::parse("tts-worker").unwrap();
        let version = m
            .store()
            .get_config(&ServiceName::parse("tts-worker").unwrap())
            .unwrap()
            .version;
        let mut config = Map::new();
        config.insert("eleven_api_key".into(), json!(value));
        m.put(
            &tts,
            PutRequest {
                config,
                expected_version: Some(version),
                merge: true,
                actor: "op".into(),
                reason: None,
                change_type: ChangeType::Update,
            },
        )
        .unwrap();
    }

    #[test]
    fn secrets_are_masked_unless_asked_and_move_between_master_keys() {
        let (_d1, a) = manager();
        set_secret(&a, "vendor-secret-1");
        let masked = a.export(ExportOptions::default()).unwrap();
        assert_eq!(
            masked.services["tts-worker"].config["eleven_api_key"],
            SECRET_MASK
        );
        assert!(!serde_json::to_string(&masked)
            .unwrap()
            .contains("vendor-secret-1"));
        let full = a
            .export(ExportOptions {
                include_secrets: true,
                include_profiles: true,
            })
            .unwrap();
        assert_eq!(
            full.services["tts-worker"].config["eleven_api_key"],
            "vendor-secret-1"
        );
        // Another database with another master key gets the same values.
        let (_d2, b) = manager();
        let out = b.import(full.clone(), &opts()).unwrap();
        assert_eq!(out.services_updated.len(), 1, "{out:?}");
        let again = b
            .export(ExportOptions {
                include_secrets: true,
                include_profiles: true,
            })
            .unwrap();
        for (name, svc) in &full.services {
            assert_eq!(svc.config, again.services[name].config, "{name}");
        }
        // Re-importing the same secret is not a change.
        let out = b.import(full, &opts()).unwrap();
        assert!(out.services_updated.is_empty(), "{out:?}");
        // The mask keeps the stored secret.
        let out = b.import(masked, &opts()).unwrap();
        assert!(out.services_updated.is_empty(), "{out:?}");
    }

    fn opts() -> ImportOptions {
        ImportOptions {
            actor: "test".into(),
            ..ImportOptions::default()
        }
    }

    #[test]
    fn round_trip_and_atomic_failure() {
        let (_dir, m) = manager();
        let doc = m.export(ExportOptions::default()).unwrap();
        assert_eq!(doc.format, EXPORT_FORMAT);
        assert!(doc.services.contains_key("tts-worker"));
        // Re-importing the same document changes nothing.
        let out = m.import(doc.clone(), &opts()).unwrap();
        assert!(out.services_updated.is_empty(), "{out:?}");
        // One bad service fails the whole import; nothing is written.
        let mut bad = doc.clone();
        bad.services
            .get_mut("tts-worker")
            .unwrap()
            .config
            .insert("volume_percent".into(), json!(60));
        bad.services
            .get_mut("router")
            .unwrap()
            .config
            .insert("no_such_field".into(), json!(1));
        let err = m.import(bad, &opts()).unwrap_err();
        let ManagerError::Validation(errors) = err else {
            panic!("expected validation errors, got {err:?}");
        };
        assert!(errors
            .iter()
            .all(|e| e.pointer.starts_with("/services/router/config")));
        let tts = m
            .store()
            .get_config(&ServiceName::parse("tts-worker").unwrap())
            .unwrap();
        assert_eq!(tts.version, Version::FIRST);
        // Stale expected versions conflict.
        let mut changed = doc.clone();
        changed
            .services
            .get_mut("tts-worker")
            .unwrap()
            .config
            .insert("volume_percent".into(), json!(61));
        changed.services.get_mut("tts-worker").unwrap().version = Some(Version::NONE);
        let err = m
            .import(
                changed,
                &ImportOptions {
                    expect_versions: true,
                    ..opts()
                },
            )
            .unwrap_err();
        assert!(
            matches!(err, ManagerError::Conflict { current } if current == Version::FIRST),
            "{err:?}"
        );
    }

    #[test]
    fn wrong_format_is_refused() {
        let (_dir, m) = manager();
        let mut doc = m.export(ExportOptions::default()).unwrap();
        doc.format = "something-else".into();
        assert!(matches!(
            m.import(doc, &opts()),
            Err(ManagerError::BadRequest(_))
        ));
    }
}
