//! Validated writes: PUT (replace) and PATCH (merge) of one service's values.

use serde_json::{Map, Value};

use super::{items_for, items_schemaless, strip_secrets, Manager, ManagerError, Result};
use crate::change_type::ChangeType;
use crate::crypto::canonical::object_to_canonical_bytes;
use crate::domain::{display_key, validate_key, ServiceName, Version, SECRET_MASK};
use crate::envelope::MAX_CONFIG_BYTES;
use crate::schema::FieldError;
use crate::store::{ConfigWrite, SecretChange, StoredConfig};

/// A write of one service's values.
#[derive(Debug, Clone)]
pub struct PutRequest {
    pub config: Map<String, Value>,
    /// Optimistic lock; `None` only for callers that deliberately overwrite.
    pub expected_version: Option<Version>,
    /// `true`: keys not in `config` keep their current value (PATCH).
    /// `false`: keys not in `config` go back to their default (PUT).
    pub merge: bool,
    pub actor: String,
    pub reason: Option<String>,
    pub change_type: ChangeType,
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub stored: StoredConfig,
    /// `false` when the write changed nothing (same version as before).
    pub changed: bool,
}

impl Manager {
    /// Validates and stores new values for `service`.
    ///
    /// Secret fields: `"********"` (or leaving the key out) keeps the stored
    /// secret, `null` clears it, any other value replaces it (encrypted).
    /// Fields overridden by the environment are read-only: sending a different
    /// value is a field error, sending the same value (or none) is fine.
    pub fn put(&self, service: &ServiceName, req: PutRequest) -> Result<WriteOutcome> {
        let write = self.prepare_write(service, req)?;
        let before = self.stored_or_empty(service)?.map(|s| s.version);
        let stored = self.store.save_config(&write, &self.epoch)?;
        Ok(WriteOutcome {
            changed: before != Some(stored.version),
            stored,
        })
    }

    /// Validates a write and turns it into a store write, without storing it.
    pub(super) fn prepare_write(
        &self,
        service: &ServiceName,
        req: PutRequest,
    ) -> Result<ConfigWrite> {
        let current = self.stored_or_empty(service)?;
        let current_config = current
            .as_ref()
            .map(|c| c.config.clone())
            .unwrap_or_default();
        let Some(schema) = self.schemas.get(service.as_str()) else {
            if !self.options.allow_unknown_services {
                return Err(ManagerError::UnknownService(service.to_string()));
            }
            let errors = key_errors(&req.config);
            if !errors.is_empty() {
                return Err(ManagerError::Validation(errors));
            }
            let mut config = if req.merge {
                current_config
            } else {
                Map::new()
            };
            config.extend(req.config);
            if let Some(e) = size_error(&config) {
                return Err(ManagerError::Validation(vec![e]));
            }
            return Ok(ConfigWrite {
                service: service.clone(),
                items: items_schemaless(service, &config),
                config,
                expected_version: req.expected_version,
                actor: req.actor,
                reason: req.reason,
                change_type: req.change_type,
                secrets: vec![],
            });
        };

        // One key rule everywhere (the schema property-name rule), also for
        // schemas that accept unknown properties.
        let key_problems = key_errors(&req.config);
        if !key_problems.is_empty() {
            return Err(ManagerError::Validation(key_problems));
        }
        let mut req = req;
        let view = schema.view();
        view.normalize_integers(&mut req.config);
        let integer_problems = view.integer_errors(&req.config);
        if !integer_problems.is_empty() {
            return Err(ManagerError::Validation(integer_problems));
        }
        let env = self.options.env_overrides(&schema);
        let mut errors = Vec::new();
        let mut candidate = if req.merge {
            current_config.clone()
        } else {
            Map::new()
        };
        let mut secret_changes = Vec::new();
        let mut to_validate = Map::new();
        for (key, value) in req.config {
            let field = view.field(&key);
            if let Some(env_value) = env.values.get(&key) {
                let same = value == *env_value
                    || (field.is_some_and(|f| f.is_secret)
                        && value == Value::String(SECRET_MASK.into()));
                if !same {
                    let var = field.and_then(|f| f.env_var.clone()).unwrap_or_default();
                    errors.push(FieldError::new(
                        format!("/{key}"),
                        format!("read-only: set by environment variable {var}"),
                    ));
                }
                continue;
            }
            match field {
                Some(f) if f.is_secret => {
                    match &value {
                        Value::String(s) if s == SECRET_MASK => continue,
                        // `null` and "" clear the secret (what a GET of an
                        // unset secret shows), so they skip validation.
                        Value::Null => {}
                        Value::String(s) if s.is_empty() => {}
                        _ => {
                            to_validate.insert(key.clone(), value.clone());
                        }
                    }
                    secret_changes.push((key, value));
                }
                _ => {
                    candidate.insert(key, value);
                }
            }
        }
        // Env-overridden keys keep their stored value, so it returns when the
        // variable is removed.
        for key in env.values.keys() {
            match current_config.get(key) {
                Some(v) => candidate.insert(key.clone(), v.clone()),
                None => candidate.remove(key),
            };
        }
        let candidate = strip_secrets(&view, candidate);
        let mut full = strip_secrets(&view, view.with_defaults(&candidate));
        full.extend(to_validate);
        if let Err(field_errors) = schema.validate(&Value::Object(full.clone())) {
            errors.extend(field_errors);
        }
        if !errors.is_empty() {
            errors.sort_by(|a, b| a.pointer.cmp(&b.pointer));
            errors.dedup_by(|a, b| a.pointer == b.pointer && a.message == b.message);
            return Err(ManagerError::Validation(errors));
        }
        let stored_config: Map<String, Value> = full
            .into_iter()
            .filter(|(k, _)| !view.is_secret(k))
            .collect();
        let mut published = stored_config.clone();
        for (key, value) in &env.values {
            if !view.is_secret(key) {
                published.insert(key.clone(), value.clone());
            }
        }
        if let Some(e) = size_error(&published) {
            return Err(ManagerError::Validation(vec![e]));
        }
        let secrets = secret_changes
            .into_iter()
            .map(|(key, value)| self.seal_secret(service, key, value))
            .collect::<Result<Vec<_>>>()?;
        Ok(ConfigWrite {
            service: service.clone(),
            items: items_for(service, &view, &stored_config),
            config: stored_config,
            expected_version: req.expected_version,
            actor: req.actor,
            reason: req.reason,
            change_type: req.change_type,
            secrets,
        })
    }

    fn seal_secret(
        &self,
        service: &ServiceName,
        key: String,
        value: Value,
    ) -> Result<SecretChange> {
        let plain = match value {
            Value::Null => return Ok(SecretChange { key, sealed: None }),
            Value::String(s) if s.is_empty() => return Ok(SecretChange { key, sealed: None }),
            Value::String(s) => s,
            other => other.to_string(),
        };
        let ring =
            self.options.secrets.as_ref().ok_or_else(|| {
                ManagerError::SecretsUnavailable("no master key configured".into())
            })?;
        let sealed = ring
            .seal(service.as_str(), &key, plain.as_bytes())
            .map_err(|e| ManagerError::SecretsUnavailable(e.to_string()))?;
        Ok(SecretChange {
            key,
            sealed: Some((sealed, ring.current_id().as_str().to_owned())),
        })
    }
}

/// One error per key of `config` that fails [`validate_key`], the rule schema
/// property names follow too. The key is shown escaped and shortened.
pub(crate) fn key_errors(config: &Map<String, Value>) -> Vec<FieldError> {
    config
        .keys()
        .filter_map(|key| {
            let why = validate_key(key).err()?;
            let shown = display_key(key);
            Some(FieldError::new(
                format!("/{}", shown.replace('~', "~0").replace('/', "~1")),
                format!("invalid key \"{shown}\": {why}"),
            ))
        })
        .collect()
}

/// The error for a configuration that would not fit an MQTT envelope
/// ([`MAX_CONFIG_BYTES`] of canonical JSON), so it is refused before it is
/// stored instead of being saved and never published.
pub(crate) fn size_error(published: &Map<String, Value>) -> Option<FieldError> {
    let size = match object_to_canonical_bytes(published) {
        Ok(bytes) => bytes.len(),
        Err(e) => {
            return Some(FieldError::new(
                "",
                format!("the configuration cannot be published: {e}"),
            ))
        }
    };
    (size > MAX_CONFIG_BYTES).then(|| {
        FieldError::new(
            "",
            format!(
                "the configuration is {size} bytes as published, more than the {MAX_CONFIG_BYTES}-byte limit of an MQTT config message"
            ),
        )
    })
}
