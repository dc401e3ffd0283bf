//! Effective configuration: schema default < database value < environment
//! override, with the source of every value and secrets masked unless asked.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Manager, ManagerError, Result};
use crate::crypto::secret_box::SecretKeyRing;
use crate::domain::{ServiceName, Source, Version, SECRET_MASK};
use crate::schema::{EnvPolicy, FieldMeta, ServiceSchema};

/// How secret values appear in an effective configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretView {
    /// `"********"` when set, absent when not: every API read and the UI.
    Masked,
    /// Left out entirely: MQTT payloads and the LKG cache. A service fetches its
    /// secrets over authenticated REST.
    Omitted,
    /// Decrypted (absent when not set): the reveal call and service-scoped
    /// tokens only.
    Revealed,
}

/// A service's configuration as the service should see it.
#[derive(Debug, Clone, Serialize)]
pub struct EffectiveConfig {
    pub service: ServiceName,
    pub config: Map<String, Value>,
    pub version: Version,
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

/// A service's stored state, wherever it was read from (the database or the
/// last-known-good cache): database-held values plus sealed secrets.
#[derive(Debug, Clone)]
pub struct ServiceState {
    pub service: ServiceName,
    pub stored: Map<String, Value>,
    /// Secret key → sealed (`v1:...`) value.
    pub sealed_secrets: BTreeMap<String, String>,
    pub version: Version,
    pub updated_at: String,
    pub config_epoch: String,
}

/// What composing an effective configuration needs besides the state.
pub struct ComposeContext<'a> {
    pub schema: Option<&'a ServiceSchema>,
    pub env: &'a (dyn Fn(&str) -> Option<String> + Send + Sync),
    /// Which variables the schema may read through `env`.
    pub env_policy: &'a EnvPolicy,
    pub secrets: Option<&'a SecretKeyRing>,
}

/// Composes the effective configuration: schema defaults, then stored values,
/// then secrets as `view` asks, then environment overrides (read-only).
pub fn compose(
    ctx: &ComposeContext<'_>,
    state: &ServiceState,
    view: SecretView,
    include_fields: bool,
) -> Result<EffectiveConfig> {
    let mut config = Map::new();
    let mut sources = BTreeMap::new();
    let mut read_only_keys = Vec::new();
    let fields = ctx.schema.map(ServiceSchema::view);
    if let Some(fields) = &fields {
        for f in fields.fields() {
            if !f.is_secret {
                config.insert(f.key.clone(), f.default.clone());
                sources.insert(f.key.clone(), Source::Default);
            }
        }
    }
    for (k, v) in &state.stored {
        config.insert(k.clone(), v.clone());
        sources.insert(k.clone(), Source::Database);
    }
    if let (Some(schema), Some(fields)) = (ctx.schema, &fields) {
        if view != SecretView::Omitted {
            for key in fields.secret_keys() {
                // An unset secret is absent from `config` (decision 2 of
                // docs/adopting.md): `null` would fail a service model that
                // declares `str = ""`, while an absent key lets the model's
                // default apply. `sources` still says `default`.
                let Some(sealed) = state.sealed_secrets.get(key) else {
                    sources.insert(key.to_owned(), Source::Default);
                    continue;
                };
                let value = match view {
                    SecretView::Masked => Value::String(SECRET_MASK.into()),
                    _ => open_secret(ctx.secrets, &state.service, key, sealed)?,
                };
                sources.insert(key.to_owned(), Source::Database);
                config.insert(key.to_owned(), value);
            }
        }
        let env = super::policed_env(schema, ctx.env, ctx.env_policy);
        for (k, v) in env.values {
            let secret = fields.is_secret(&k);
            if secret && (view == SecretView::Omitted || v.is_null()) {
                // Omitted from MQTT and the LKG cache; a secret the
                // environment sets empty (`null`) has no value: absent too.
                config.remove(&k);
            } else if secret && view == SecretView::Masked {
                config.insert(k.clone(), Value::String(SECRET_MASK.into()));
            } else {
                config.insert(k.clone(), v);
            }
            sources.insert(k.clone(), Source::Env);
            read_only_keys.push(k);
        }
    }
    Ok(EffectiveConfig {
        service: state.service.clone(),
        config,
        version: state.version,
        updated_at: state.updated_at.clone(),
        config_epoch: state.config_epoch.clone(),
        sources,
        read_only_keys,
        fields: include_fields.then(|| fields.map(|f| f.fields().to_vec()).unwrap_or_default()),
    })
}

/// Decrypts one sealed secret.
pub(super) fn open_secret(
    ring: Option<&SecretKeyRing>,
    service: &ServiceName,
    key: &str,
    sealed: &str,
) -> Result<Value> {
    let ring =
        ring.ok_or_else(|| ManagerError::SecretsUnavailable("no master key configured".into()))?;
    let plain = ring.open(service, key, sealed).map_err(|e| {
        ManagerError::SecretsUnavailable(format!("{service}/{key} cannot be decrypted: {e}"))
    })?;
    let text = String::from_utf8(plain.to_vec())
        .map_err(|_| ManagerError::SecretsUnavailable(format!("{service}/{key} is not UTF-8")))?;
    Ok(Value::String(text))
}

impl Manager {
    /// The stored state of `service` from the database.
    pub fn service_state(&self, service: &ServiceName) -> Result<ServiceState> {
        let stored = self
            .stored_or_empty(service)?
            .ok_or_else(|| ManagerError::NotFound(format!("configuration of {service}")))?;
        let sealed_secrets = if self.schemas.get(service.as_str()).is_some() {
            self.store
                .list_secrets(Some(service))?
                .into_iter()
                .map(|s| (s.key, s.ciphertext))
                .collect()
        } else {
            BTreeMap::new()
        };
        Ok(ServiceState {
            service: stored.service,
            stored: stored.config,
            sealed_secrets,
            version: stored.version,
            updated_at: stored.updated_at,
            config_epoch: stored.config_epoch,
        })
    }

    /// The context to compose effective configurations with.
    pub fn compose_context<'a>(&'a self, schema: Option<&'a ServiceSchema>) -> ComposeContext<'a> {
        ComposeContext {
            schema,
            env: &*self.options.env,
            env_policy: &self.options.env_policy,
            secrets: self.options.secrets.as_deref(),
        }
    }

    /// The effective configuration of `service`.
    pub fn get_effective(
        &self,
        service: &ServiceName,
        secrets: SecretView,
        include_fields: bool,
    ) -> Result<EffectiveConfig> {
        let state = self.service_state(service)?;
        let schema = self.schemas.get(service.as_str());
        compose(
            &self.compose_context(schema.as_deref()),
            &state,
            secrets,
            include_fields,
        )
    }

    pub(super) fn decrypt_secret(
        &self,
        service: &ServiceName,
        key: &str,
        sealed: &str,
    ) -> Result<Value> {
        open_secret(self.options.secrets.as_deref(), service, key, sealed)
    }

    /// The reveal call: one secret in clear text (`Ok(None)` when it is not
    /// set), audited as `secret.reveal` with `actor` and `reason`, whether it
    /// succeeded or not — the one place this rule lives, whatever front end
    /// asks.
    pub fn reveal_secret_audited(
        &self,
        service: &ServiceName,
        key: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Option<Value>> {
        crate::domain::validate_key(key)
            .map_err(|e| ManagerError::BadRequest(format!("invalid key: {e}")))?;
        let value = self.reveal_secret(service, key);
        self.store.record_audit(&crate::store::NewAudit {
            actor: actor.to_owned(),
            action: crate::audit::AuditAction::SecretReveal,
            target: Some(format!("{service}/{key}")),
            outcome: if value.is_ok() {
                crate::audit::AuditOutcome::Ok
            } else {
                crate::audit::AuditOutcome::Error
            },
            detail: Some(serde_json::json!({ "reason": reason })),
        })?;
        value
    }

    /// One secret in clear text, not audited: only for
    /// [`Manager::reveal_secret_audited`] and tests.
    pub(crate) fn reveal_secret(&self, service: &ServiceName, key: &str) -> Result<Option<Value>> {
        let schema = self
            .schemas
            .get(service.as_str())
            .ok_or_else(|| ManagerError::UnknownService(service.to_string()))?;
        if !schema
            .view()
            .field(key)
            .ok_or_else(|| ManagerError::NotFound(format!("field {key} of {service}")))?
            .is_secret
        {
            return Err(ManagerError::BadRequest(format!(
                "{key} is not a secret field"
            )));
        }
        if let Some(v) = self.options.env_overrides(&schema).values.get(key) {
            return Ok(Some(v.clone()));
        }
        let sealed = self
            .store
            .list_secrets(Some(service))?
            .into_iter()
            .find(|s| s.key == key);
        sealed
            .map(|s| self.decrypt_secret(service, key, &s.ciphertext))
            .transpose()
    }
}
