//! Restores: put back the old values of chosen history entries, or every
//! service (or one) as it was at a point in time. Restores always create new
//! versions; history is never rewritten.

use crate::change_type::ChangeType;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Manager, ManagerError, PutRequest, Result};
use crate::domain::{ServiceName, Version, SECRET_MASK};
use crate::store::{ConfigWrite, StoredConfig};

/// What a restore changed.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    pub service: ServiceName,
    pub keys_restored: Vec<String>,
    pub new_version: Version,
}

impl Manager {
    /// Puts back the `old_value` of each history entry (all of `service`).
    /// Secret entries cannot be restored: history only holds their mask.
    pub fn restore_history(
        &self,
        service: &ServiceName,
        ids: &[i64],
        actor: &str,
        reason: Option<String>,
    ) -> Result<RestoreOutcome> {
        if ids.is_empty() {
            return Err(ManagerError::BadRequest(
                "history_entries must not be empty".into(),
            ));
        }
        let entries = self.store.get_history_entries(ids)?;
        let current = self
            .stored_or_empty(service)?
            .ok_or_else(|| ManagerError::NotFound(format!("configuration of {service}")))?;
        let mut config = current.config.clone();
        let mut keys = Vec::new();
        for e in &entries {
            if &e.service != service {
                return Err(ManagerError::BadRequest(format!(
                    "history entry {} belongs to another service",
                    e.id
                )));
            }
            let masked = Some(Value::String(SECRET_MASK.into()));
            if e.old_value == masked || e.new_value == masked {
                return Err(ManagerError::BadRequest(format!(
                    "history entry {} is a secret change; secrets cannot be restored from history",
                    e.id
                )));
            }
            match &e.old_value {
                Some(v) => config.insert(e.key.clone(), v.clone()),
                None => config.remove(&e.key),
            };
            keys.push(e.key.clone());
        }
        keys.sort();
        keys.dedup();
        let outcome = self.put(
            service,
            PutRequest {
                config: without_env_keys(self, service, config),
                expected_version: Some(current.version),
                merge: false,
                actor: actor.into(),
                reason: reason.or_else(|| Some(format!("restore of history entries {ids:?}"))),
                change_type: ChangeType::Restore,
            },
        )?;
        Ok(RestoreOutcome {
            service: service.clone(),
            keys_restored: keys,
            new_version: outcome.stored.version,
        })
    }

    /// Restores `service` (or every service) to its stored values at `at`
    /// (RFC 3339), atomically. Services that did not exist then are left alone
    /// and not listed. Secrets keep their current values.
    pub fn restore_at(
        &self,
        service: Option<&ServiceName>,
        at: &str,
        actor: &str,
        reason: Option<String>,
    ) -> Result<Vec<StoredConfig>> {
        let at_utc = crate::domain::parse_rfc3339(at)
            .map_err(|e| ManagerError::BadRequest(format!("timestamp {e}")))?;
        let at = crate::domain::format_rfc3339(at_utc);
        let names: Vec<ServiceName> = match service {
            Some(s) => vec![s.clone()],
            None => self.list_services()?,
        };
        let reason = reason.unwrap_or_else(|| format!("point-in-time restore to {at}"));
        let mut writes = Vec::new();
        for name in names {
            let Some(snapshot) = self.store.find_config_at(&name, &at)? else {
                if service.is_some() {
                    return Err(ManagerError::NotFound(format!("{name} at {at}")));
                }
                continue;
            };
            let current = self
                .stored_or_empty(&name)?
                .map_or(Version::NONE, |c| c.version);
            writes.push(self.prepare_write(
                &name,
                PutRequest {
                    config: without_env_keys(self, &name, snapshot.config),
                    expected_version: Some(current),
                    merge: false,
                    actor: actor.into(),
                    reason: Some(reason.clone()),
                    change_type: ChangeType::Restore,
                },
            )?);
        }
        self.save_changed(&writes)
    }

    /// Stores a batch atomically and returns only the services it changed.
    pub(super) fn save_changed(&self, writes: &[ConfigWrite]) -> Result<Vec<StoredConfig>> {
        let before: Vec<Version> = writes
            .iter()
            .map(|w| w.expected_version.unwrap_or(Version::NONE))
            .collect();
        let saved = self.store.save_configs(writes, &self.epoch)?;
        Ok(saved
            .into_iter()
            .zip(before)
            .filter(|(s, v)| s.version != *v)
            .map(|(s, _)| s)
            .collect())
    }
}

/// Drops keys that the environment overrides now, so an old snapshot does not
/// collide with today's read-only values.
pub(super) fn without_env_keys(
    m: &Manager,
    service: &ServiceName,
    mut config: Map<String, Value>,
) -> Map<String, Value> {
    if let Some(schema) = m.schemas.get(service.as_str()) {
        for key in m.options.env_overrides(&schema).values.keys() {
            config.remove(key);
        }
    }
    config
}
