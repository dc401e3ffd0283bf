//! Profiles: save every service's stored values under a name, and activate a
//! profile atomically (all services change together or none does).

use crate::change_type::ChangeType;
use serde_json::{Map, Value};

use super::restore::without_env_keys;
use super::write::{key_errors, size_error};
use super::{strip_secrets, Manager, ManagerError, PutRequest, Result};
use crate::domain::{ServiceName, Version};
use crate::schema::FieldError;
use crate::store::{Profile, StoredConfig};

/// Longest profile name.
pub const MAX_PROFILE_NAME_LEN: usize = 100;

/// Checks a profile name: 1–100 characters of letters, digits, space, `.`, `_`
/// and `-`, starting with a letter or digit.
pub fn validate_profile_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_PROFILE_NAME_LEN
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ManagerError::InvalidName {
            what: "profile name",
            reason: format!(
                "must be 1-{MAX_PROFILE_NAME_LEN} characters of letters, digits, space, '.', '_' or '-', starting with a letter or digit"
            ),
        })
    }
}

impl Manager {
    /// Saves the current stored values of every service as profile `name`
    /// (secrets are not part of profiles).
    pub fn save_profile(
        &self,
        name: &str,
        description: Option<&str>,
        actor: &str,
    ) -> Result<Profile> {
        validate_profile_name(name)?;
        // Stored configs never hold secrets; stripping again keeps it so even
        // if a schema marked a field secret after it was stored.
        let snapshot: Map<String, Value> = self
            .store
            .list_configs()?
            .into_iter()
            .map(|c| {
                let config = match self.schemas.get(&c.service) {
                    Some(schema) => strip_secrets(&schema.view(), c.config),
                    None => c.config,
                };
                (c.service.to_string(), Value::Object(config))
            })
            .collect();
        Ok(self
            .store
            .save_profile(name, description, &snapshot, actor)?)
    }

    /// Activates a profile: every service in it gets the profile's values as a
    /// new version, in one transaction. Returns the services that changed.
    /// Secrets are never touched: a secret key in the snapshot is ignored and
    /// the stored secret stays.
    pub fn activate_profile(&self, name: &str, actor: &str) -> Result<Vec<StoredConfig>> {
        validate_profile_name(name)?;
        let profile = self.store.get_profile(name)?;
        let mut writes = Vec::new();
        for (service, config) in profile.config_snapshot {
            let Ok(service) = ServiceName::parse(&service) else {
                continue;
            };
            let Value::Object(config) = config else {
                return Err(ManagerError::BadRequest(format!(
                    "profile {name} holds a non-object config for {service}"
                )));
            };
            if !self.schemas.contains(service.as_str()) && !self.options.allow_unknown_services {
                continue;
            }
            let config = match self.schemas.get(service.as_str()) {
                Some(schema) => strip_secrets(&schema.view(), config),
                None => config,
            };
            let current = self
                .stored_or_empty(&service)?
                .map_or(Version::NONE, |c| c.version);
            writes.push(self.prepare_write(
                &service,
                PutRequest {
                    config: without_env_keys(self, &service, config),
                    expected_version: Some(current),
                    merge: false,
                    actor: actor.into(),
                    reason: Some(format!("activate profile {name}")),
                    change_type: ChangeType::Profile,
                },
            )?);
        }
        self.save_changed(&writes)
    }
}

impl Manager {
    /// Checks a profile snapshot as a write of each of its services would be
    /// checked (service name, known service, key rule, schema, size) and
    /// refuses secret fields: profiles never carry secrets. Errors point
    /// below `at` (`/profiles/0/config_snapshot`).
    pub(super) fn profile_snapshot_errors(
        &self,
        snapshot: &Map<String, Value>,
        at: &str,
    ) -> Result<Vec<FieldError>> {
        let mut errors = Vec::new();
        for (raw, config) in snapshot {
            let here = format!("{at}/{}", super::transfer::pointer_escape(raw));
            let service = match self.resolve_service(raw) {
                Ok(s) => s,
                Err(ManagerError::InvalidName { reason, .. }) => {
                    errors.push(FieldError::new(
                        here,
                        format!("invalid service name: {reason}"),
                    ));
                    continue;
                }
                Err(ManagerError::UnknownService(_)) => {
                    errors.push(FieldError::new(
                        here,
                        "unknown service (no schema, and unknown services are not allowed)",
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Value::Object(config) = config else {
                errors.push(FieldError::new(here, "must be an object"));
                continue;
            };
            let keys = key_errors(config);
            if !keys.is_empty() {
                errors.extend(
                    keys.into_iter()
                        .map(|e| FieldError::new(format!("{here}{}", e.pointer), &e.message)),
                );
                continue;
            }
            let Some(schema) = self.schemas.get(service.as_str()) else {
                if let Some(e) = size_error(config) {
                    errors.push(FieldError::new(here, &e.message));
                }
                continue;
            };
            let view = schema.view();
            let mut secret_found = false;
            for key in view.secret_keys().filter(|k| config.contains_key(*k)) {
                secret_found = true;
                errors.push(FieldError::new(
                    format!("{here}/{key}"),
                    "secret field: profiles never hold secrets (set secrets per service); remove it",
                ));
            }
            if secret_found {
                continue;
            }
            let mut config = without_env_keys(self, &service, config.clone());
            view.normalize_integers(&mut config);
            let full = view.with_defaults(&config);
            let integers = view.integer_errors(&config);
            if !integers.is_empty() {
                errors.extend(
                    integers
                        .into_iter()
                        .map(|e| FieldError::new(format!("{here}{}", e.pointer), &e.message)),
                );
            } else if let Err(found) = schema.validate(&Value::Object(full.clone())) {
                errors.extend(
                    found
                        .into_iter()
                        .map(|e| FieldError::new(format!("{here}{}", e.pointer), &e.message)),
                );
            } else if let Some(e) = size_error(&full) {
                errors.push(FieldError::new(here, &e.message));
            }
        }
        Ok(errors)
    }

    /// Removes secret fields from every stored profile (profiles imported
    /// before imports were checked could hold them in clear text). Runs each
    /// time a manager opens, so it also covers a field that a later schema
    /// marks secret; each profile it changes gets a `profile.secrets_removed`
    /// audit entry naming the keys (never the values). Returns the profiles
    /// it changed.
    pub(super) fn scrub_profile_secrets(&self) -> Result<Vec<String>> {
        let mut changed = Vec::new();
        for summary in self.store.list_profiles()? {
            let mut profile = match self.store.get_profile(&summary.profile_name) {
                Ok(p) => p,
                // An unreadable snapshot holds nothing to scrub (and
                // activation refuses it); only database faults stop the open.
                Err(e) if !e.is_fault() => continue,
                Err(e) => return Err(e.into()),
            };
            let mut removed = Vec::new();
            for (service, config) in profile.config_snapshot.iter_mut() {
                let (Some(schema), Value::Object(config)) = (self.schemas.get(service), config)
                else {
                    continue;
                };
                for key in schema.secret_keys() {
                    if config.remove(key).is_some() {
                        removed.push(format!("{service}/{key}"));
                    }
                }
            }
            if !removed.is_empty() {
                self.store.replace_profile_snapshot(
                    &summary.profile_name,
                    &profile.config_snapshot,
                    &removed,
                )?;
                changed.push(summary.profile_name);
            }
        }
        Ok(changed)
    }
}
