//! The service's JSON Schema: fetched from the manager at start
//! (`GET /api/config/services/<service>/schema`), kept beside the envelope
//! copy (`<service>.schema.json`, 0600, atomic) for when the manager is down.
//! The schema only says which variable a field goes to, its type and its
//! default; the values themselves come from the verified configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use config_manager_client::ClientSettings;
use serde_json::Value;

/// Largest schema the agent reads (the manager's built-in ones are ~30 KiB).
const MAX_SCHEMA_BYTES: usize = 1024 * 1024;

/// Where the schema came from.
#[derive(Debug)]
pub enum Loaded {
    Rest(Value),
    Copy(Value),
    /// The manager answered that it knows no such service.
    UnknownService,
    None,
}

/// The schema copy's path: beside the envelope copy, `.json` → `.schema.json`.
pub fn copy_path(envelope_copy: &Path) -> PathBuf {
    let stem = envelope_copy
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "service".into());
    envelope_copy.with_file_name(format!("{stem}.schema.json"))
}

/// Fetches the schema (and refreshes its copy), else reads the copy.
pub async fn load(settings: &ClientSettings) -> Loaded {
    let copy = settings.cache_path.as_deref().map(copy_path);
    if let Some(base) = &settings.manager_url {
        match fetch(settings, base).await {
            Ok(Fetched::Schema(doc)) => {
                if let Some(path) = &copy {
                    let body = doc.to_string().into_bytes();
                    let path = path.clone();
                    let written = tokio::task::spawn_blocking(move || {
                        config_manager_client::copy::write_atomic(&path, &body)
                    })
                    .await;
                    if !matches!(written, Ok(Ok(()))) {
                        tracing::warn!("could not write the schema copy");
                    }
                }
                return Loaded::Rest(doc);
            }
            Ok(Fetched::Unknown) => return Loaded::UnknownService,
            Ok(Fetched::NoSchema) => {
                tracing::warn!(service = %settings.service, "the manager has no schema for this service: variables are the field keys upper-cased");
                return Loaded::None;
            }
            Err(reason) => {
                tracing::warn!(service = %settings.service, %reason, "could not fetch the schema");
            }
        }
    }
    if let Some(path) = copy {
        let read = tokio::task::spawn_blocking(move || read_copy(&path)).await;
        if let Ok(Some(doc)) = read {
            return Loaded::Copy(doc);
        }
    }
    Loaded::None
}

fn read_copy(path: &Path) -> Option<Value> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() > MAX_SCHEMA_BYTES {
        return None;
    }
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

enum Fetched {
    Schema(Value),
    NoSchema,
    Unknown,
}

async fn fetch(settings: &ClientSettings, base: &str) -> Result<Fetched, String> {
    let client = reqwest::Client::builder()
        .timeout(settings.rest_timeout.max(Duration::from_secs(1)))
        .build()
        .map_err(|e| e.to_string())?;
    let service = &settings.service;
    let get = |path: String| {
        let mut request = client.get(format!("{base}/api/config/services/{service}{path}"));
        if let Some(token) = &settings.api_token {
            request = request.header("X-API-Token", token.expose());
        }
        request
    };
    let response = get("/schema".into())
        .send()
        .await
        .map_err(|e| format!("schema request failed: {}", without_url(&e)))?;
    match response.status().as_u16() {
        200 => {
            let bytes = response.bytes().await.map_err(|e| without_url(&e))?;
            if bytes.len() > MAX_SCHEMA_BYTES {
                return Err("schema larger than 1 MiB".into());
            }
            let doc: Value =
                serde_json::from_slice(&bytes).map_err(|_| "schema is not JSON".to_owned())?;
            if !doc.is_object() {
                return Err("schema is not a JSON object".into());
            }
            Ok(Fetched::Schema(doc))
        }
        404 => {
            // No schema: does the manager know the service at all?
            let config = get(String::new())
                .send()
                .await
                .map_err(|e| format!("config request failed: {}", without_url(&e)))?;
            if config.status().as_u16() == 404 {
                Ok(Fetched::Unknown)
            } else {
                Ok(Fetched::NoSchema)
            }
        }
        status => Err(format!("the manager answered {status}")),
    }
}

/// reqwest's message without the URL (which is not secret, but kept short).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<manager>");
    }
    text
}
