//! Client settings, built in code or read once from the environment.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use config_manager_core::applied::InstanceId;
use config_manager_core::crypto::signing::{normalize_pem, TrustedKeys, VerifyingKey};
use config_manager_core::domain::ServiceName;
use config_manager_core::envelope::freshness::FreshnessPolicy;
use config_manager_core::envelope::DEFAULT_MAX_ENVELOPE_BYTES;
use thiserror::Error;

use crate::mqtt_url::MqttEndpoint;

/// Why the environment does not describe a usable client. Each variant names
/// the variable; none echoes a secret value.
#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

fn invalid(var: &'static str, reason: impl fmt::Display) -> SettingsError {
    SettingsError::Invalid {
        var,
        reason: reason.to_string(),
    }
}

/// The `X-API-Token` value. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Variables of the manager (or of TARS' own config library) that a client
/// does not read any more (decision 3 of issue 24): the client keeps its own
/// verified copy instead of reading the manager's HMAC-keyed file. One shared
/// `.env` reaches every container, so they are often present; start-up names
/// them once in the log.
pub const IGNORED_VARIABLES: [&str; 4] = [
    "CONFIG_LKG_CACHE_PATH",
    "LKG_HMAC_KEY_BASE64",
    "LKG_HMAC_KEY_ID",
    "CONFIG_DB_PATH",
];

/// Everything the client needs. Start from [`ClientSettings::new`] or
/// [`ClientSettings::from_env`] and adjust fields as needed.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub service: ServiceName,
    /// Base URL of the manager, e.g. `http://config-manager:8081`.
    pub manager_url: Option<String>,
    pub api_token: Option<ApiToken>,
    pub mqtt: Option<MqttEndpoint>,
    /// Public keys whose signatures are accepted (several during a rollover).
    pub trusted_keys: TrustedKeys,
    /// The client's own copy of the last verified signed envelope
    /// (`CONFIG_CACHE_PATH`, else `CONFIG_CACHE_DIR/<service>.json`, else the
    /// default directory of [`crate::copy::default_dir`]); `None`: no copy.
    pub cache_path: Option<PathBuf>,
    /// Variables of [`IGNORED_VARIABLES`] present in the environment, logged
    /// once at start-up (names only).
    pub ignored_variables: Vec<&'static str>,
    pub freshness: FreshnessPolicy,
    /// Larger payloads are rejected unparsed.
    pub max_payload_bytes: usize,
    /// Time limit of the start-up REST request.
    pub rest_timeout: Duration,
    pub mqtt_keep_alive: Duration,
    /// MQTT client id; default `<service>-cfg-<random>`, unique per process so
    /// two instances never disconnect each other.
    pub mqtt_client_id: Option<String>,
    /// Id of this running instance in applied-state reports; `None` means
    /// [`InstanceId::default_for`] the host name and the service, which stays
    /// the same across restarts on one host. Set it when several instances of
    /// one service run on the same host.
    pub instance_id: Option<InstanceId>,
    /// Publish applied-state reports on `system/config/<service>/applied/<instance_id>`
    /// (with an `offline` last will) so the manager shows what each instance
    /// runs. On by default; off for a deployment whose broker ACLs forbid it.
    pub report_applied: bool,
}

impl ClientSettings {
    /// Settings with defaults: no REST, no MQTT, no on-disk copy.
    pub fn new(service: ServiceName, trusted_keys: TrustedKeys) -> Self {
        Self {
            service,
            manager_url: None,
            api_token: None,
            mqtt: None,
            trusted_keys,
            cache_path: None,
            ignored_variables: Vec::new(),
            freshness: FreshnessPolicy::default(),
            max_payload_bytes: DEFAULT_MAX_ENVELOPE_BYTES,
            rest_timeout: Duration::from_secs(5),
            mqtt_keep_alive: Duration::from_secs(30),
            mqtt_client_id: None,
            instance_id: None,
            report_applied: true,
        }
    }

    /// The instance id reports use: the configured one, else the default for
    /// this host (see [`host_name`]).
    pub fn effective_instance_id(&self) -> InstanceId {
        self.instance_id
            .clone()
            .unwrap_or_else(|| InstanceId::default_for(&host_name(), &self.service))
    }

    /// Reads the process environment:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `SERVICE_NAME` | required: the service's name |
    /// | `CONFIG_SIGNATURE_PUBLIC_KEY` | required: PEM text (one or more `PUBLIC KEY` blocks) or comma-separated paths of PEM files |
    /// | `CONFIG_MANAGER_URL` | manager base URL for the start-up load |
    /// | `CONFIG_API_TOKEN` | token sent as `X-API-Token` |
    /// | `MQTT_URL` | `mqtt://[user:pass@]host:port` or `mqtts://…` |
    /// | `MQTT_CA_FILE` | CA PEM for `mqtts://` (default: system roots) |
    /// | `CONFIG_CACHE_DIR` | directory of the verified copies, file `<service>.json` (default `/var/lib/tars-config` when writable, else `$XDG_STATE_HOME/tars-config`, else `~/.local/state/tars-config`) |
    /// | `CONFIG_CACHE_PATH` | the copy's file for this one service (overrides the directory) |
    /// | `CONFIG_MAX_AGE_SECS`, `CONFIG_MAX_SKEW_SECS` | freshness window (300, 60) |
    /// | `CONFIG_ACCEPT_STALE_INITIAL` | `1` to apply a stale first message |
    /// | `CONFIG_INSTANCE_ID` | this instance's id in applied-state reports (default: host name + service) |
    /// | `CONFIG_REPORT_APPLIED` | `0` to publish no applied-state reports (default `1`) |
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Like [`ClientSettings::from_env`] with any variable source (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let service = get("SERVICE_NAME").ok_or(SettingsError::Missing("SERVICE_NAME"))?;
        let service = ServiceName::parse(service.trim()).map_err(|e| invalid("SERVICE_NAME", e))?;
        let keys = get("CONFIG_SIGNATURE_PUBLIC_KEY")
            .ok_or(SettingsError::Missing("CONFIG_SIGNATURE_PUBLIC_KEY"))?;
        let trusted =
            parse_trusted_keys(&keys).map_err(|e| invalid("CONFIG_SIGNATURE_PUBLIC_KEY", e))?;
        let mut s = Self::new(service, trusted);
        s.manager_url =
            get("CONFIG_MANAGER_URL").map(|u| u.trim().trim_end_matches('/').to_owned());
        s.api_token = get("CONFIG_API_TOKEN").map(|t| ApiToken::new(t.trim()));
        if let Some(url) = get("MQTT_URL") {
            let mut endpoint = MqttEndpoint::parse(&url).map_err(|e| invalid("MQTT_URL", e))?;
            endpoint.ca_file = get("MQTT_CA_FILE").map(PathBuf::from);
            s.mqtt = Some(endpoint);
        }
        s.cache_path = Some(match (get("CONFIG_CACHE_PATH"), get("CONFIG_CACHE_DIR")) {
            (Some(path), _) => PathBuf::from(path.trim()),
            (None, Some(dir)) => PathBuf::from(dir.trim()).join(format!("{}.json", s.service)),
            (None, None) => crate::copy::default_dir(&get).join(format!("{}.json", s.service)),
        });
        s.ignored_variables = IGNORED_VARIABLES
            .into_iter()
            .filter(|name| get(name).is_some())
            .collect();
        if let Some(v) = get("CONFIG_MAX_AGE_SECS") {
            s.freshness.max_age = Duration::from_secs(
                v.trim()
                    .parse()
                    .map_err(|e| invalid("CONFIG_MAX_AGE_SECS", e))?,
            );
        }
        if let Some(v) = get("CONFIG_MAX_SKEW_SECS") {
            s.freshness.max_skew = Duration::from_secs(
                v.trim()
                    .parse()
                    .map_err(|e| invalid("CONFIG_MAX_SKEW_SECS", e))?,
            );
        }
        if let Some(v) = get("CONFIG_ACCEPT_STALE_INITIAL") {
            s.freshness.accept_stale_initial = parse_flag(&v)
                .ok_or_else(|| invalid("CONFIG_ACCEPT_STALE_INITIAL", "expected 1 or 0"))?;
        }
        if let Some(v) = get("CONFIG_INSTANCE_ID") {
            s.instance_id =
                Some(InstanceId::parse(v.trim()).map_err(|e| invalid("CONFIG_INSTANCE_ID", e))?);
        }
        if let Some(v) = get("CONFIG_REPORT_APPLIED") {
            s.report_applied = parse_flag(&v)
                .ok_or_else(|| invalid("CONFIG_REPORT_APPLIED", "expected 1 or 0"))?;
        }
        Ok(s)
    }
}

fn parse_flag(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "true" | "yes" => Some(true),
        "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// The host name as the kernel reports it (what Python's
/// `socket.gethostname()` returns, so both clients derive the same default
/// instance id), or an empty string when it cannot be read; the default id is
/// then the service name alone.
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_default()
}

/// Reads trusted public keys from PEM text (one or more `PUBLIC KEY` blocks,
/// `\n`-escaped as in `.env` files allowed) or from comma-separated paths of
/// files holding such PEM text.
pub fn parse_trusted_keys(value: &str) -> Result<TrustedKeys, String> {
    let value = normalize_pem(value);
    let texts: Vec<String> = if value.contains("-----BEGIN") {
        vec![value]
    } else {
        value
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| std::fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}")))
            .collect::<Result<_, _>>()?
    };
    let mut keys = TrustedKeys::new();
    for text in &texts {
        for block in pem_blocks(text) {
            keys.insert(VerifyingKey::from_spki_pem(block).map_err(|e| e.to_string())?);
        }
    }
    if keys.is_empty() {
        return Err("no \"-----BEGIN PUBLIC KEY-----\" block found".into());
    }
    Ok(keys)
}

fn pem_blocks(text: &str) -> Vec<&str> {
    const END: &str = "-----END PUBLIC KEY-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN PUBLIC KEY-----") {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        blocks.push(&rest[start..end]);
        rest = &rest[end..];
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use config_manager_core::crypto::signing::SigningKey;
    use config_manager_core::crypto::KeyId;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn pem() -> (String, KeyId) {
        let vk = SigningKey::generate().verifying_key();
        (vk.to_spki_pem().unwrap(), vk.key_id().clone())
    }

    #[test]
    fn full_environment() {
        let (a, id_a) = pem();
        let (b, id_b) = pem();
        let s = ClientSettings::from_lookup(lookup(&[
            ("SERVICE_NAME", "tts-worker".into()),
            (
                "CONFIG_SIGNATURE_PUBLIC_KEY",
                format!("{a}{b}").replace('\n', "\\n"),
            ),
            ("CONFIG_MANAGER_URL", "http://127.0.0.1:8081/".into()),
            ("CONFIG_API_TOKEN", "tok-123".into()),
            ("MQTT_URL", "mqtts://u:p@broker:8883".into()),
            ("MQTT_CA_FILE", "/etc/ca.pem".into()),
            ("CONFIG_LKG_CACHE_PATH", "/var/lib/lkg.json".into()),
            ("LKG_HMAC_KEY_BASE64", "c2VjcmV0".into()),
            ("CONFIG_DB_PATH", "/data/config.db".into()),
            ("CONFIG_CACHE_DIR", "/srv/copies".into()),
            ("CONFIG_MAX_AGE_SECS", "120".into()),
            ("CONFIG_ACCEPT_STALE_INITIAL", "1".into()),
        ]))
        .unwrap();
        assert_eq!(s.service.as_str(), "tts-worker");
        assert!(s.trusted_keys.get(&id_a).is_some() && s.trusted_keys.get(&id_b).is_some());
        assert_eq!(s.manager_url.as_deref(), Some("http://127.0.0.1:8081"));
        let mqtt = s.mqtt.as_ref().unwrap();
        assert!(mqtt.tls);
        assert_eq!(
            mqtt.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(s.freshness.max_age, Duration::from_secs(120));
        assert!(s.freshness.accept_stale_initial);
        assert_eq!(
            s.cache_path.as_deref(),
            Some(std::path::Path::new("/srv/copies/tts-worker.json"))
        );
        assert_eq!(
            s.ignored_variables,
            [
                "CONFIG_LKG_CACHE_PATH",
                "LKG_HMAC_KEY_BASE64",
                "CONFIG_DB_PATH"
            ]
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("tok-123"), "{shown}");
    }

    #[test]
    fn keys_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, id_a) = pem();
        let (b, id_b) = pem();
        let pa = dir.path().join("a.pem");
        let pb = dir.path().join("b.pem");
        std::fs::write(&pa, a).unwrap();
        std::fs::write(&pb, b).unwrap();
        let keys = parse_trusted_keys(&format!("{}, {}", pa.display(), pb.display())).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.get(&id_a).is_some() && keys.get(&id_b).is_some());
    }

    #[test]
    fn errors_name_the_variable() {
        let err = ClientSettings::from_lookup(lookup(&[])).unwrap_err();
        assert_eq!(err.to_string(), "SERVICE_NAME is not set");
        let err = ClientSettings::from_lookup(lookup(&[
            ("SERVICE_NAME", "tts-worker".into()),
            (
                "CONFIG_SIGNATURE_PUBLIC_KEY",
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into(),
            ),
        ]))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("CONFIG_SIGNATURE_PUBLIC_KEY is invalid"),
            "{err}"
        );
        let (a, _) = pem();
        let err = ClientSettings::from_lookup(lookup(&[
            ("SERVICE_NAME", "tts-worker".into()),
            ("CONFIG_SIGNATURE_PUBLIC_KEY", a.clone()),
            ("MQTT_URL", "mqtt://u:secretpw@h:x".into()),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().starts_with("MQTT_URL is invalid")
                && !err.to_string().contains("secretpw")
        );
        // The manager's LKG variables are no error any more: ignored.
        let s = ClientSettings::from_lookup(lookup(&[
            ("SERVICE_NAME", "tts-worker".into()),
            ("CONFIG_SIGNATURE_PUBLIC_KEY", a.clone()),
            ("CONFIG_LKG_CACHE_PATH", "/x".into()),
            ("CONFIG_CACHE_PATH", "/y/copy.json".into()),
            ("CONFIG_CACHE_DIR", "/z".into()),
        ]))
        .unwrap();
        assert_eq!(s.ignored_variables, ["CONFIG_LKG_CACHE_PATH"]);
        assert_eq!(
            s.cache_path.as_deref(),
            Some(std::path::Path::new("/y/copy.json"))
        );
        // Without either: the default directory, named after the service.
        let s = ClientSettings::from_lookup(lookup(&[
            ("SERVICE_NAME", "tts-worker".into()),
            ("CONFIG_SIGNATURE_PUBLIC_KEY", a),
            ("XDG_STATE_HOME", "/state".into()),
        ]))
        .unwrap();
        let path = s.cache_path.unwrap();
        assert!(path.ends_with("tars-config/tts-worker.json"), "{path:?}");
    }

    #[test]
    fn instance_id_and_reporting() {
        let (a, _) = pem();
        let base = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("SERVICE_NAME", "tts-worker".to_owned()),
                ("CONFIG_SIGNATURE_PUBLIC_KEY", a.clone()),
            ];
            pairs.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
            ClientSettings::from_lookup(lookup(&pairs))
        };
        let s = base(&[]).unwrap();
        assert!(s.report_applied);
        assert_eq!(s.instance_id, None);
        let expected = InstanceId::default_for(&host_name(), &s.service);
        assert_eq!(s.effective_instance_id(), expected);
        assert!(expected.as_str().ends_with("tts-worker"));

        let s = base(&[
            ("CONFIG_INSTANCE_ID", " robot-7.tts_1 "),
            ("CONFIG_REPORT_APPLIED", "0"),
        ])
        .unwrap();
        assert_eq!(s.effective_instance_id().as_str(), "robot-7.tts_1");
        assert!(!s.report_applied);

        for bad in ["a/b", "-x", "+", "a#", "ä", &"x".repeat(65)] {
            let err = base(&[("CONFIG_INSTANCE_ID", bad)]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("CONFIG_INSTANCE_ID is invalid: "),
                "{bad:?}: {err}"
            );
        }
        let err = base(&[("CONFIG_REPORT_APPLIED", "maybe")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CONFIG_REPORT_APPLIED is invalid: expected 1 or 0"
        );
    }
}
