//! The start-up load: REST first, then the LKG file, then the caller's
//! defaults. Each source that fails is logged with its reason and the next is
//! tried, so a service starts whenever any of them works.

use std::sync::Arc;

use config_manager_core::crypto::mac::MacKeyRing;
use config_manager_core::crypto::KeyId;
use config_manager_core::domain::{Epoch, ServiceName};
use config_manager_core::envelope::freshness::AppliedState;
use config_manager_core::lkg::LkgCache;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::settings::{ClientSettings, LkgSource};
use crate::ClientError;

/// Where the config in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// `GET /api/config/services/<service>` at start-up.
    Rest,
    /// The manager's last-known-good cache file (HMAC verified).
    Lkg,
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
    version: u64,
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
                tracing::info!(%service, version = applied.version, "loaded configuration from the config-manager");
                return Ok(initial(config, raw, Some(applied), ConfigSource::Rest));
            }
            Err(reason) => {
                tracing::warn!(%service, %reason, "could not load configuration over REST");
                failures.push(format!("REST: {reason}"));
            }
        }
    }
    if let Some(lkg) = &settings.lkg {
        match read_lkg(service, lkg).and_then(|(raw, state)| typed(raw, state)) {
            Ok((config, raw, applied)) => {
                tracing::info!(%service, version = applied.version, path = %lkg.path.display(), "loaded configuration from the last-known-good cache");
                return Ok(initial(config, raw, Some(applied), ConfigSource::Lkg));
            }
            Err(reason) => {
                tracing::warn!(%service, %reason, "could not load configuration from the last-known-good cache");
                failures.push(format!("LKG: {reason}"));
            }
        }
    }
    match defaults {
        Some(config) => {
            tracing::warn!(%service, "starting on built-in defaults until a fresh update arrives");
            Ok(initial(config, Map::new(), None, ConfigSource::Defaults))
        }
        None => Err(ClientError::NoInitialConfig(if failures.is_empty() {
            "no REST URL, LKG file or defaults configured".into()
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

fn read_lkg(
    service: &ServiceName,
    source: &LkgSource,
) -> Result<(Map<String, Value>, AppliedState), String> {
    let key_id = match &source.key_id {
        Some(id) => id.clone(),
        None => key_id_in_file(&source.path)?,
    };
    let ring = MacKeyRing::new(key_id, source.key.clone());
    let cache = LkgCache::read_verified(&source.path, &ring).map_err(|e| e.to_string())?;
    let contents = cache.contents();
    let entry = contents
        .services
        .get(service)
        .ok_or_else(|| format!("{} has no entry for {service}", source.path.display()))?;
    let state = AppliedState {
        epoch: contents.config_epoch.clone(),
        version: entry.version,
        checksum: None,
    };
    Ok((entry.config.clone(), state))
}

/// The `key_id` a cache file names, for when the client was given the key
/// without its id. The HMAC check that follows is what decides.
fn key_id_in_file(path: &std::path::Path) -> Result<KeyId, String> {
    #[derive(Deserialize)]
    struct Head {
        key_id: KeyId,
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice::<Head>(&bytes)
        .map(|h| h.key_id)
        .map_err(|e| format!("{}: unparseable: {e}", path.display()))
}
