//! Profiles: save every service's stored values under a name, and activate a
//! profile atomically (all services change together or none does).

use serde_json::{Map, Value};

use super::restore::without_env_keys;
use super::{Manager, ManagerError, PutRequest, Result};
use crate::domain::ServiceName;
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
        let snapshot: Map<String, Value> = self
            .store
            .list_configs()?
            .into_iter()
            .map(|c| (c.service, Value::Object(c.config)))
            .collect();
        Ok(self
            .store
            .save_profile(name, description, &snapshot, actor)?)
    }

    /// Activates a profile: every service in it gets the profile's values as a
    /// new version, in one transaction. Returns the services that changed.
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
            let current = self.stored_or_empty(&service)?.map_or(0, |c| c.version);
            writes.push(self.prepare_write(
                &service,
                PutRequest {
                    config: without_env_keys(self, &service, config),
                    expected_version: Some(current),
                    merge: false,
                    actor: actor.into(),
                    reason: Some(format!("activate profile {name}")),
                    change_type: "profile".into(),
                },
            )?);
        }
        self.save_changed(&writes)
    }
}
