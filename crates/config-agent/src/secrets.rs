//! The secrets of a new version. MQTT envelopes leave secret fields out, so
//! without this a secret changed in the manager (web UI, PATCH) would reach
//! the program only at the agent's next start (the start-up REST load). With
//! a manager URL and a token, the agent reads the service's configuration
//! over REST for each verified update and takes **only the secret fields**
//! from it, and only when the answer is for the same epoch and version as
//! the verified envelope; every other value comes from the envelope. When
//! the read fails, the secrets the program has are kept (the client library
//! carries them over) and the agent logs why (never a value).

use std::time::Duration;

use config_manager_client::{ApiToken, ClientSettings};
use config_manager_core::domain::{ServiceName, Version};
use serde_json::{Map, Value};

use crate::render::FieldMap;

/// Largest configuration body read (the manager's limit on a config is far lower).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Reads a version's secrets over the authenticated REST API.
pub struct SecretSource {
    http: reqwest::Client,
    url: String,
    token: ApiToken,
    service: ServiceName,
}

impl SecretSource {
    /// `None` without a manager URL or a token (nothing could return secrets).
    pub fn new(settings: &ClientSettings) -> Option<Self> {
        let base = settings.manager_url.as_deref()?;
        let token = settings.api_token.clone()?;
        let http = reqwest::Client::builder()
            .timeout(settings.rest_timeout.max(Duration::from_secs(1)))
            .build()
            .ok()?;
        Some(Self {
            http,
            url: format!(
                "{}/api/config/services/{}",
                base.trim_end_matches('/'),
                settings.service
            ),
            token,
            service: settings.service.clone(),
        })
    }

    /// The secret fields of `version` (epoch `epoch`); an error says why not.
    pub async fn fetch(
        &self,
        fields: &FieldMap,
        epoch: &str,
        version: Version,
    ) -> Result<Map<String, Value>, String> {
        let response = self
            .http
            .get(&self.url)
            .header("X-API-Token", self.token.expose())
            .send()
            .await
            .map_err(|_| "the manager is unreachable".to_owned())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the manager answered {status}"));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|_| "the answer could not be read".to_owned())?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err("the answer is too large".into());
        }
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|_| "the answer is not JSON".to_owned())?;
        secrets_of(&body, &self.service, epoch, version, fields)
    }
}

/// The secret fields of a REST configuration body, if it is `service`'s
/// configuration at exactly (`epoch`, `version`). A secret the answer leaves
/// out is unset on the manager: `null` (the inherited variable applies, as
/// at start). A masked value (a token not scoped to the service) is not a
/// secret the agent can use.
pub fn secrets_of(
    body: &Value,
    service: &ServiceName,
    epoch: &str,
    version: Version,
    fields: &FieldMap,
) -> Result<Map<String, Value>, String> {
    if body.get("service").and_then(Value::as_str) != Some(service.as_str()) {
        return Err("the answer is for another service".into());
    }
    let same = body.get("config_epoch").and_then(Value::as_str) == Some(epoch)
        && body
            .get("version")
            .and_then(|v| serde_json::from_value::<Version>(v.clone()).ok())
            == Some(version);
    if !same {
        return Err("the manager holds another version by now".into());
    }
    let config = body
        .get("config")
        .and_then(Value::as_object)
        .ok_or_else(|| "the answer has no configuration".to_owned())?;
    Ok(fields
        .secret_keys()
        .filter_map(|key| {
            let value = config.get(key).cloned().unwrap_or(Value::Null);
            let masked = value
                .as_str()
                .is_some_and(|s| s == config_manager_core::domain::SECRET_MASK);
            (!masked).then(|| (key.to_owned(), value))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(name: &str) -> ServiceName {
        ServiceName::parse(name).unwrap()
    }

    fn v(n: i64) -> Version {
        Version::new(n).unwrap()
    }

    fn fields() -> FieldMap {
        FieldMap::from_schema(&json!({"properties": {
            "model": {"type": "string"},
            "api_key": {"type": ["string", "null"], "x-secret": true},
            "other_key": {"type": ["string", "null"], "writeOnly": true},
        }}))
    }

    #[test]
    fn only_secret_fields_of_the_same_version_are_taken() {
        let body = json!({"service": "llm-worker", "config_epoch": "e1", "version": 4,
            "config": {"model": "from-rest", "api_key": "sk-new"}});
        let got = secrets_of(&body, &svc("llm-worker"), "e1", v(4), &fields()).unwrap();
        // `other_key` is absent: unset on the manager, so null.
        assert_eq!(
            got,
            json!({"api_key": "sk-new", "other_key": null})
                .as_object()
                .unwrap()
                .clone()
        );
        // Another version, epoch or service: nothing.
        assert!(secrets_of(&body, &svc("llm-worker"), "e1", v(5), &fields()).is_err());
        assert!(secrets_of(&body, &svc("llm-worker"), "e2", v(4), &fields()).is_err());
        assert!(secrets_of(&body, &svc("router"), "e1", v(4), &fields()).is_err());
        assert!(secrets_of(
            &json!({"service": "llm-worker", "config_epoch": "e1", "version": 4}),
            &svc("llm-worker"),
            "e1",
            v(4),
            &fields()
        )
        .is_err());
        // A masked secret (token without the service's scope) is not used.
        let masked = json!({"service": "llm-worker", "config_epoch": "e1", "version": 4,
            "config": {"api_key": config_manager_core::domain::SECRET_MASK}});
        let got = secrets_of(&masked, &svc("llm-worker"), "e1", v(4), &fields()).unwrap();
        assert!(!got.contains_key("api_key"));
    }
}
