//! Effective configuration: schema default < database value < environment
//! override, with the source of every value and secrets masked unless asked.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Manager, ManagerError, Result};
use crate::domain::{ServiceName, Source, SECRET_MASK};
use crate::schema::FieldMeta;

/// How secret values appear in an effective configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretView {
    /// `"********"` when set, `null` when not: every API read and the UI.
    Masked,
    /// Left out entirely: MQTT payloads and the LKG cache. A service fetches its
    /// secrets over authenticated REST.
    Omitted,
    /// Decrypted: the reveal call and service-scoped tokens only.
    Revealed,
}

/// A service's configuration as the service should see it.
#[derive(Debug, Clone, Serialize)]
pub struct EffectiveConfig {
    pub service: String,
    pub config: Map<String, Value>,
    pub version: i64,
    pub updated_at: String,
    pub config_epoch: String,
    /// Where each value came from.
    pub sources: BTreeMap<String, Source>,
    /// Keys whose environment override wins and that the API will not change.
    pub read_only_keys: Vec<String>,
    /// Field metadata, when asked for (`include_fields`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldMeta>>,
}

impl Manager {
    /// The effective configuration of `service`.
    pub fn get_effective(
        &self,
        service: &ServiceName,
        secrets: SecretView,
        include_fields: bool,
    ) -> Result<EffectiveConfig> {
        let stored = self
            .stored_or_empty(service)?
            .ok_or_else(|| ManagerError::NotFound(format!("configuration of {service}")))?;
        let mut config = Map::new();
        let mut sources = BTreeMap::new();
        let mut read_only_keys = Vec::new();
        let schema = self.schemas.get(service.as_str());
        if let Some(schema) = &schema {
            for f in schema.fields() {
                if !f.is_secret {
                    config.insert(f.key.clone(), f.default.clone());
                    sources.insert(f.key.clone(), Source::Default);
                }
            }
        }
        for (k, v) in &stored.config {
            config.insert(k.clone(), v.clone());
            sources.insert(k.clone(), Source::Database);
        }
        if let Some(schema) = &schema {
            self.apply_secrets(
                service,
                schema.secret_keys(),
                secrets,
                &mut config,
                &mut sources,
            )?;
            let env = schema.resolve_env(&*self.options.env);
            for (k, v) in env.values {
                let secret = schema.field(&k).is_some_and(|f| f.is_secret);
                let shown = match (secret, secrets) {
                    (true, SecretView::Omitted) => None,
                    (true, SecretView::Masked) => Some(Value::String(SECRET_MASK.into())),
                    _ => Some(v),
                };
                if let Some(v) = shown {
                    config.insert(k.clone(), v);
                } else {
                    config.remove(&k);
                }
                sources.insert(k.clone(), Source::Env);
                read_only_keys.push(k);
            }
        }
        Ok(EffectiveConfig {
            service: stored.service,
            config,
            version: stored.version,
            updated_at: stored.updated_at,
            config_epoch: stored.config_epoch,
            sources,
            read_only_keys,
            fields: include_fields.then(|| schema.map(|s| s.fields().to_vec()).unwrap_or_default()),
        })
    }

    /// Puts secret values into `config` as `view` asks.
    fn apply_secrets<'a>(
        &self,
        service: &ServiceName,
        keys: impl Iterator<Item = &'a str>,
        view: SecretView,
        config: &mut Map<String, Value>,
        sources: &mut BTreeMap<String, Source>,
    ) -> Result<()> {
        let keys: BTreeSet<&str> = keys.collect();
        if keys.is_empty() || view == SecretView::Omitted {
            return Ok(());
        }
        let stored: BTreeMap<String, String> = self
            .store
            .list_secrets(Some(service.as_str()))?
            .into_iter()
            .map(|s| (s.key, s.ciphertext))
            .collect();
        for key in keys {
            let value = match (stored.get(key), view) {
                (None, _) => Value::Null,
                (Some(_), SecretView::Masked) => Value::String(SECRET_MASK.into()),
                (Some(sealed), _) => self.decrypt_secret(service, key, sealed)?,
            };
            sources.insert(
                key.to_owned(),
                if value.is_null() {
                    Source::Default
                } else {
                    Source::Database
                },
            );
            config.insert(key.to_owned(), value);
        }
        Ok(())
    }

    pub(super) fn decrypt_secret(
        &self,
        service: &ServiceName,
        key: &str,
        sealed: &str,
    ) -> Result<Value> {
        let ring =
            self.options.secrets.as_ref().ok_or_else(|| {
                ManagerError::SecretsUnavailable("no master key configured".into())
            })?;
        let plain = ring.open(service.as_str(), key, sealed).map_err(|e| {
            ManagerError::SecretsUnavailable(format!("{service}/{key} cannot be decrypted: {e}"))
        })?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| {
            ManagerError::SecretsUnavailable(format!("{service}/{key} is not UTF-8"))
        })?;
        Ok(Value::String(text))
    }

    /// One secret in clear text (the reveal call). `Ok(None)` when it is not set.
    pub fn reveal_secret(&self, service: &ServiceName, key: &str) -> Result<Option<Value>> {
        let schema = self
            .schemas
            .get(service.as_str())
            .ok_or_else(|| ManagerError::UnknownService(service.to_string()))?;
        let field = schema
            .field(key)
            .ok_or_else(|| ManagerError::NotFound(format!("field {key} of {service}")))?;
        if !field.is_secret {
            return Err(ManagerError::BadRequest(format!(
                "{key} is not a secret field"
            )));
        }
        if let Some(v) = schema.resolve_env(&*self.options.env).values.get(key) {
            return Ok(Some(v.clone()));
        }
        let sealed = self
            .store
            .list_secrets(Some(service.as_str()))?
            .into_iter()
            .find(|s| s.key == key);
        sealed
            .map(|s| self.decrypt_secret(service, key, &s.ciphertext))
            .transpose()
    }
}
