//! The REST backend of `config …`: the CLI is one more API client, with the
//! same token, roles, validation, audit and MQTT publishing as any other.

use std::path::Path;
use std::time::Duration;

use config_manager_core::domain::{ServiceName, Version};
use config_manager_core::manager::{ExportDocument, ImportOptions};
use reqwest::Method;
use serde_json::{json, Value};

use super::config::{Backend, EnvImport, SetRequest};
use super::{default_url, CliError, CliResult};
use config_manager_service::settings::EnvSource;

/// How long one request may take (an import of many services included).
const TIMEOUT: Duration = Duration::from_secs(60);

/// A client of one running service.
pub struct Remote {
    /// `…/api/config`
    api: String,
    token: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// A client of `url` (default: the local service on CONFIG_MANAGER_PORT).
    pub fn new(env_file: &Path, url: Option<String>, token: Option<String>) -> CliResult<Self> {
        // Only the port is read from .env here; a .env the CLI cannot parse
        // must not stop a client that was given --url.
        let env = EnvSource::load(env_file).unwrap_or_default();
        let base = url.unwrap_or_else(|| default_url(&env));
        let base = base.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::Usage(
                "--url must start with http:// or https://".into(),
            ));
        }
        let token = token
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                CliError::Usage(
                    "an API token is needed: set CONFIG_API_TOKEN (or pass --token), or use --offline"
                        .into(),
                )
            })?;
        if reqwest::header::HeaderValue::from_str(&token).is_err() {
            return Err(CliError::Usage(
                "the API token contains characters a header cannot carry".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("config-manager-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Failed(format!("cannot build the HTTP client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
        Ok(Self {
            api: format!("{base}{}", crate::http::API_PREFIX),
            token,
            http,
            runtime,
        })
    }

    /// `GET` of an API path (e.g. `/keys/status`).
    pub fn get_json(&self, path: &str) -> CliResult<Value> {
        self.call(Method::GET, path, &[], None)
    }

    /// One API call; a non-2xx answer becomes a [`CliError::Failed`] that
    /// shows the problem details (and every field error).
    fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> CliResult<Value> {
        let mut req = self.request(&method, path, query);
        if let Some(body) = body {
            req = req.json(body);
        }
        self.send(&method, path, req)
    }

    fn request(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.api);
        self.http
            .request(method.clone(), &url)
            .header("X-API-Token", &self.token)
            .query(query)
    }

    fn send(&self, method: &Method, path: &str, req: reqwest::RequestBuilder) -> CliResult<Value> {
        self.runtime.block_on(async {
            let resp = req.send().await.map_err(|e| {
                CliError::Failed(format!(
                    "cannot reach the service at {}: {}",
                    self.api,
                    error_chain(&e)
                ))
            })?;
            let status = resp.status();
            let text = resp
                .text()
                .await
                .map_err(|e| CliError::Failed(format!("reading the answer: {e}")))?;
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if status.is_success() {
                Ok(value)
            } else {
                Err(CliError::Failed(describe_problem(
                    method, path, status, &value,
                )))
            }
        })
    }
}

impl Backend for Remote {
    fn get(&self, service: &ServiceName) -> CliResult<Value> {
        self.call(Method::GET, &service_path(service), &[], None)
    }

    fn set(&self, service: &ServiceName, change: SetRequest) -> CliResult<Value> {
        let version = match change.expect_version {
            Some(v) => v,
            None => self
                .get(service)?
                .get("version")
                .and_then(|v| serde_json::from_value::<Version>(v.clone()).ok())
                .ok_or_else(|| CliError::Failed("the service sent no version".into()))?,
        };
        let body = json!({
            "config": change.config,
            "version": version,
            "reason": change.reason,
        });
        self.call(Method::PATCH, &service_path(service), &[], Some(&body))
    }

    fn export(&self, include_secrets: bool, include_profiles: bool) -> CliResult<Value> {
        self.call(
            Method::GET,
            "/export",
            &[
                ("include_secrets", include_secrets.to_string()),
                ("include_profiles", include_profiles.to_string()),
            ],
            None,
        )
    }

    fn import(&self, doc: ExportDocument, options: ImportOptions) -> CliResult<Value> {
        let body = serde_json::to_value(&doc)
            .map_err(|e| CliError::Failed(format!("cannot encode the document: {e}")))?;
        let mut query = vec![
            ("expect_versions", options.expect_versions.to_string()),
            ("dry_run", options.dry_run.to_string()),
        ];
        if let Some(reason) = options.reason {
            query.push(("reason", reason));
        }
        self.call(Method::POST, "/import", &query, Some(&body))
    }

    fn import_env(&self, service: &ServiceName, request: EnvImport) -> CliResult<Value> {
        let path = format!("{}/import-env", service_path(service));
        let mut query = vec![("dry_run", request.dry_run.to_string())];
        if let Some(reason) = request.reason {
            query.push(("reason", reason));
        }
        let req = self
            .request(&Method::POST, &path, &query)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(request.text);
        self.send(&Method::POST, &path, req)
    }
}

/// `/services/<name>`. A [`ServiceName`] (`[a-z][a-z0-9-]*`) is one path
/// segment as it is: nothing to encode.
fn service_path(service: &ServiceName) -> String {
    format!("/services/{service}")
}

/// `409 Conflict: version conflict … (current version 3)` plus one line per
/// field error.
fn describe_problem(
    method: &Method,
    path: &str,
    status: reqwest::StatusCode,
    body: &Value,
) -> String {
    let detail = body
        .get("detail")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| match body {
            Value::String(s) => s.chars().take(300).collect(),
            other => other.to_string().chars().take(300).collect(),
        });
    let mut msg = format!("{method} {path}: {status}: {detail}");
    if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        for e in errors {
            let pointer = e.get("pointer").and_then(Value::as_str).unwrap_or("");
            let message = e.get("message").and_then(Value::as_str).unwrap_or("");
            msg.push_str(&format!("\n  {pointer}: {message}"));
        }
    }
    msg
}

/// The error and its causes ("connection refused" is usually two levels down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_one_path_segment() {
        let name = ServiceName::parse("tts-worker").unwrap();
        assert_eq!(service_path(&name), "/services/tts-worker");
    }
}
