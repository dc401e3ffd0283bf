//! The start-up load: REST first, then the client's own verified copy of the
//! last signed envelope (`copy.rs`), then the caller's defaults. Each source that fails is logged with its reason and the next is
//! tried, so a service starts whenever any of them works.

use std::sync::Arc;

use config_manager_core::domain::{Epoch, Version};
use config_manager_core::envelope::freshness::AppliedState;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::settings::ClientSettings;
use crate::ClientError;

/// Where the config in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// `GET /api/config/services/<service>` at start-up.
    Rest,
    /// The client's own copy of the last verified signed envelope
    /// (signature checked again on load).
    OnDiskCopy,
    /// The caller's built-in defaults.
    Defaults,
    /// A verified MQTT update.
    Mqtt,
}

/// The config a client starts with.
pub(crate) struct Initial<T> {
    pub config: Arc<T>,
    pub raw: Map<String, Value>,
    pub applied: Option<AppliedState>,
    pub source: ConfigSource,
}

/// Body of `GET /api/config/services/<service>` (other members are ignored).
#[derive(Deserialize)]
struct RestConfig {
    service: String,
    config: Map<String, Value>,
    version: Version,
    config_epoch: Epoch,
}

pub(crate) async fn load_initial<T: DeserializeOwned>(
    settings: &ClientSettings,
    defaults: Option<T>,
) -> Result<Initial<T>, ClientError> {
    let mut failures = Vec::new();
    let service = &settings.service;
    if let Some(base) = &settings.manager_url {
        match fetch_rest(settings, base)
            .await
            .and_then(|(raw, state)| typed(raw, state))
        {
            Ok((config, raw, applied)) => {
                tracing::info!(%service, version = applied.version.get(), "loaded configuration from the config-manager");
                return Ok(initial(config, raw, Some(applied), ConfigSource::Rest));
            }
            Err(reason) => {
                tracing::warn!(%service, %reason, "could not load configuration over REST");
                failures.push(format!("REST: {reason}"));
            }
        }
    }
    if let Some(path) = &settings.cache_path {
        let read = {
            let (path, service, trusted, max) = (
                path.clone(),
                service.clone(),
                settings.trusted_keys.clone(),
                settings.max_payload_bytes,
            );
            tokio::task::spawn_blocking(move || crate::copy::read(&path, &service, &trusted, max))
                .await
        };
        match read {
            Ok(Ok(envelope)) => {
                let state = AppliedState::of(&envelope);
                match typed(envelope.config, state) {
                    Ok((config, raw, applied)) => {
                        tracing::info!(%service, version = applied.version.get(), path = %path.display(), "loaded configuration from the verified on-disk copy");
                        return Ok(initial(
                            config,
                            raw,
                            Some(applied),
                            ConfigSource::OnDiskCopy,
                        ));
                    }
                    Err(reason) => {
                        tracing::warn!(%service, %reason, "could not use the on-disk copy");
                        failures.push(format!("copy: {reason}"));
                    }
                }
            }
            Ok(Err(crate::copy::CopyError::Io { error, .. }))
                if error.kind() == std::io::ErrorKind::NotFound =>
            {
                tracing::info!(%service, path = %path.display(), "no on-disk copy yet");
            }
            Ok(Err(reason)) => {
                tracing::warn!(%service, %reason, "could not use the on-disk copy");
                failures.push(format!("copy: {reason}"));
            }
            Err(reason) => failures.push(format!("copy: {reason}")),
        }
    }
    match defaults {
        Some(config) => {
            tracing::warn!(%service, "starting on built-in defaults until a fresh update arrives");
            Ok(initial(config, Map::new(), None, ConfigSource::Defaults))
        }
        None => Err(ClientError::NoInitialConfig(if failures.is_empty() {
            "no REST URL, on-disk copy or defaults configured".into()
        } else {
            failures.join("; ")
        })),
    }
}

fn initial<T>(
    config: T,
    raw: Map<String, Value>,
    applied: Option<AppliedState>,
    source: ConfigSource,
) -> Initial<T> {
    Initial {
        config: Arc::new(config),
        raw,
        applied,
        source,
    }
}

type Loaded<T> = (T, Map<String, Value>, AppliedState);

fn typed<T: DeserializeOwned>(
    raw: Map<String, Value>,
    state: AppliedState,
) -> Result<Loaded<T>, String> {
    let config = serde_json::from_value(Value::Object(raw.clone()))
        .map_err(|e| format!("config does not match the service's config type: {e}"))?;
    Ok((config, raw, state))
}

async fn fetch_rest(
    settings: &ClientSettings,
    base: &str,
) -> Result<(Map<String, Value>, AppliedState), String> {
    let client = reqwest::Client::builder()
        .timeout(settings.rest_timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{base}/api/config/services/{}", settings.service);
    let mut request = client.get(&url);
    if let Some(token) = &settings.api_token {
        request = request.header("X-API-Token", token.expose());
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    let body: RestConfig = response
        .json()
        .await
        .map_err(|e| format!("{url}: unexpected response: {e}"))?;
    if body.service != settings.service.as_str() {
        return Err(format!("{url} returned the config of {:?}", body.service));
    }
    // The REST body includes the service's secrets (scoped token) where the
    // MQTT envelope leaves them out, so its checksum is not comparable: `None`.
    let state = AppliedState {
        epoch: body.config_epoch,
        version: body.version,
        checksum: None,
    };
    Ok((body.config, state))
}
