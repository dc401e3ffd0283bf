//! Settings: read once from the environment (with the `.env` file underneath),
//! checked once, and handed out as typed values. Every error names the variable
//! and never prints its value.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config_manager_core::crypto::mac::{MacKey, MacKeyRing};
use config_manager_core::crypto::secret_box::{MasterKey, SecretKeyRing};
use config_manager_core::crypto::signing::{SigningKey, VerifyingKey};
use config_manager_core::crypto::KeyId;
use config_manager_core::schema::{EnvPattern, EnvPolicy};
use thiserror::Error;

use crate::auth::tokens::TokenTable;

/// A setting that is present but unusable.
#[derive(Debug, Error)]
#[error("{var}: {reason}")]
pub struct SettingsError {
    pub var: &'static str,
    pub reason: String,
}

/// The error of `var` (shared by every settings parser: settings, MQTT,
/// backup).
pub(crate) fn bad(var: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        var,
        reason: reason.into(),
    }
}

/// The variables the service reads: the process environment wins over the
/// `.env` file, which fills in what the environment does not set.
#[derive(Clone, Default)]
pub struct EnvSource {
    vars: BTreeMap<String, String>,
    /// Every name looked up, so a test can compare what the parsers really
    /// read with [`ALL_VARIABLES`] (and so with `.env.example`).
    looked_up: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl std::fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvSource")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EnvSource {
    /// Reads `env_file` (if it exists) and lays the process environment over it.
    pub fn load(env_file: &Path) -> Result<Self, SettingsError> {
        let mut vars = BTreeMap::new();
        if env_file.exists() {
            let iter = dotenvy::from_path_iter(env_file).map_err(|e| {
                bad(
                    "CONFIG_ENV_FILE",
                    format!("cannot read {}: {e}", env_file.display()),
                )
            })?;
            for item in iter {
                let (k, v) = item.map_err(|e| {
                    bad(
                        "CONFIG_ENV_FILE",
                        format!(
                            "{} does not parse: {}",
                            env_file.display(),
                            redact_dotenv_error(&e)
                        ),
                    )
                })?;
                vars.insert(k, v);
            }
        }
        // An empty process variable does not hide a value from the file (a
        // compose file's `VAR=` would otherwise make first run generate a new
        // key on every start).
        vars.extend(std::env::vars().filter(|(_, v)| !v.trim().is_empty()));
        Ok(Self {
            vars,
            looked_up: Default::default(),
        })
    }

    /// Builds a source from explicit pairs (tests).
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        Self {
            vars: pairs.into_iter().collect(),
            looked_up: Default::default(),
        }
    }

    /// A variable's value; empty values count as unset.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.looked_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned());
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// Sets a value (first-run generation).
    pub fn set(&mut self, key: &str, value: String) {
        self.vars.insert(key.to_owned(), value);
    }

    fn flag(&self, key: &'static str) -> Result<bool, SettingsError> {
        self.flag_or(key, false)
    }

    /// A 0/1 (false/true, no/yes) variable, `default` when unset.
    pub(crate) fn flag_or(&self, key: &'static str, default: bool) -> Result<bool, SettingsError> {
        match self.get(key).map(str::trim) {
            None => Ok(default),
            Some("0") | Some("false") | Some("no") => Ok(false),
            Some("1") | Some("true") | Some("yes") => Ok(true),
            Some(_) => Err(bad(key, "must be 0 or 1")),
        }
    }

    /// An integer variable within `min..=max` (inclusive), or `default`.
    /// The error states the range and never echoes the value.
    pub(crate) fn ranged<T>(
        &self,
        var: &'static str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, SettingsError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let value = match self.get(var) {
            None => default,
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| bad(var, format!("must be a whole number from {min} to {max}")))?,
        };
        if value < min || value > max {
            return Err(bad(var, format!("must be between {min} and {max}")));
        }
        Ok(value)
    }

    /// A duration given as a whole number of `unit`s (`Duration::from_secs`,
    /// `Duration::from_millis`), within `min..=max` of them.
    pub(crate) fn duration(
        &self,
        var: &'static str,
        default: u64,
        min: u64,
        max: u64,
        unit: fn(u64) -> std::time::Duration,
    ) -> Result<std::time::Duration, SettingsError> {
        self.ranged(var, default, min, max).map(unit)
    }

    /// A variable that must be set.
    pub(crate) fn required(&self, var: &'static str) -> Result<&str, SettingsError> {
        self.get(var).ok_or_else(|| bad(var, "is not set"))
    }

    fn parse<T: std::str::FromStr>(
        &self,
        key: &'static str,
        default: T,
    ) -> Result<T, SettingsError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| bad(key, format!("cannot parse '{}'", v.trim()))),
        }
    }
}

/// dotenvy errors quote the offending line, which may hold a key: keep only
/// the position.
fn redact_dotenv_error(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(_, index) => format!("syntax error at character {index}"),
        dotenvy::Error::Io(io) => io.to_string(),
        _ => "invalid content".into(),
    }
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Every setting of `serve`, validated.
#[derive(Debug)]
pub struct Settings {
    pub host: IpAddr,
    pub port: u16,
    pub db_path: PathBuf,
    pub lkg_path: PathBuf,
    pub schema_dir: Option<PathBuf>,
    pub env_file: PathBuf,
    pub tokens: TokenTable,
    pub master_keys: SecretKeyRing,
    pub lkg_keys: MacKeyRing,
    pub signing_key: SigningKey,
    pub verifying_key: VerifyingKey,
    pub rebuild_token: RedactedString,
    /// `MQTT_URL` and the other `MQTT_*` variables; `None` when no URL is set.
    pub mqtt: Option<crate::mqtt::MqttSettings>,
    pub allow_auto_rebuild: bool,
    pub allow_unknown_services: bool,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    /// How often the database monitor checks the file.
    pub monitor_interval: std::time::Duration,
    /// Secrets re-encrypted per transaction during a master-key rotation.
    pub rotation_batch: usize,
    /// `LITESTREAM_*` and `BACKUP_SNAPSHOT_*` (see `backup::config`).
    pub backup: crate::backup::BackupSettings,
    /// `CONFIG_ENV_ALLOW`: variables schemas registered over the API may read
    /// through `x-env` (default none).
    pub env_allow: Vec<EnvPattern>,
    /// Connection limits of the HTTP server (`http::server`).
    pub http_limits: ServerLimits,
    /// Login rate limit and audit aggregation/retention (`http::guard`).
    pub guard: crate::guard::GuardSettings,
    /// Caps of the applied-state board (`applied`).
    pub applied_limits: crate::applied::AppliedLimits,
    /// `CONFIG_SCHEMA_CACHE_SIZE`: for how many schemas the compiled
    /// validator and the field metadata are kept (least recently used
    /// evicted; see `config_manager_core::schema::cache`).
    pub schema_cache_size: usize,
    /// `CONFIG_TEST_FAILPOINT`: a crash point for the fault tests (hidden;
    /// never set outside tests).
    pub failpoint: Option<Failpoint>,
}

/// A point where the fault tests make the process die (`SIGKILL`), to show
/// that what was acknowledged survives and what was not is repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// `after-commit`: after a change is committed to the database, before
    /// its last-known-good journal record is written and before the reply.
    AfterCommit,
}

impl Failpoint {
    fn parse(env: &EnvSource) -> Result<Option<Self>, SettingsError> {
        match env.get("CONFIG_TEST_FAILPOINT").map(str::trim) {
            None | Some("") => Ok(None),
            Some("after-commit") => Ok(Some(Self::AfterCommit)),
            Some(_) => Err(bad(
                "CONFIG_TEST_FAILPOINT",
                "must be empty or 'after-commit' (a fault-test hook)",
            )),
        }
    }
}

/// A string that never shows in `Debug` output or logs.
#[derive(Clone)]
pub struct RedactedString(pub String);

impl std::fmt::Debug for RedactedString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The HTTP server's connection limits (`CONFIG_HTTP_*`).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    pub max_connections: usize,
    /// Most open connections from one client address; 0: no per-address cap.
    pub max_connections_per_address: usize,
}

/// Default largest accepted request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

impl Settings {
    /// Validates every variable. Keys must already exist (see `first_run`).
    pub fn from_env(env: &EnvSource, env_file: PathBuf) -> Result<Self, SettingsError> {
        let master_id = key_id(env, "CONFIG_MASTER_KEY_ID", "master-1")?;
        let master = MasterKey::from_base64(env.required("CONFIG_MASTER_KEY_BASE64")?)
            .map_err(|e| bad("CONFIG_MASTER_KEY_BASE64", e.to_string()))?;
        let mut master_keys = SecretKeyRing::new(master_id, master);
        if let Some((id, key)) = previous_key(
            env,
            "CONFIG_MASTER_KEY_PREVIOUS_BASE64",
            "CONFIG_MASTER_KEY_PREVIOUS_ID",
            MasterKey::from_base64,
        )? {
            master_keys = master_keys.with_previous(id, key);
        }
        let lkg_id = key_id(env, "LKG_HMAC_KEY_ID", "lkg-1")?;
        let lkg = MacKey::from_base64(env.required("LKG_HMAC_KEY_BASE64")?)
            .map_err(|e| bad("LKG_HMAC_KEY_BASE64", e.to_string()))?;
        let mut lkg_keys = MacKeyRing::new(lkg_id, lkg);
        if let Some((id, key)) = previous_key(
            env,
            "LKG_HMAC_KEY_PREVIOUS_BASE64",
            "LKG_HMAC_KEY_PREVIOUS_ID",
            MacKey::from_base64,
        )? {
            lkg_keys = lkg_keys.with_previous(id, key);
        }
        let signing_key = SigningKey::from_pkcs8_pem(env.required("CONFIG_SIGNATURE_PRIVATE_KEY")?)
            .map_err(|e| bad("CONFIG_SIGNATURE_PRIVATE_KEY", e.to_string()))?;
        let verifying_key = match env.get("CONFIG_SIGNATURE_PUBLIC_KEY") {
            Some(pem) => VerifyingKey::from_spki_pem(pem)
                .map_err(|e| bad("CONFIG_SIGNATURE_PUBLIC_KEY", e.to_string()))?,
            None => signing_key.verifying_key(),
        };
        if verifying_key.key_id() != signing_key.key_id() {
            return Err(bad(
                "CONFIG_SIGNATURE_PUBLIC_KEY",
                "does not match CONFIG_SIGNATURE_PRIVATE_KEY",
            ));
        }
        let rebuild_token = env.required("REBUILD_TOKEN")?;
        if rebuild_token.len() < 16 {
            return Err(bad("REBUILD_TOKEN", "must be at least 16 characters"));
        }
        let tokens = TokenTable::parse(env.required("CONFIG_API_TOKENS")?)
            .map_err(|e| bad("CONFIG_API_TOKENS", e.to_string()))?;
        let log_format = match env.get("LOG_FORMAT").map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(bad("LOG_FORMAT", "must be 'text' or 'json'")),
        };
        let mqtt = crate::mqtt::MqttSettings::from_env(env)?;
        let max_body_bytes = env.ranged(
            "CONFIG_MAX_BODY_BYTES",
            DEFAULT_MAX_BODY_BYTES,
            1024,
            16 * 1024 * 1024,
        )?;
        let rotation_batch: usize = env.ranged("CONFIG_ROTATION_BATCH", 100, 1, 10_000)?;
        let monitor_interval = env.duration(
            "CONFIG_MONITOR_INTERVAL_MS",
            1000,
            50,
            60_000,
            Duration::from_millis,
        )?;
        let env_allow = EnvPolicy::parse_allow_list(env.get("CONFIG_ENV_ALLOW").unwrap_or(""))
            .map_err(|e| bad("CONFIG_ENV_ALLOW", e.to_string()))?;
        let http_limits = ServerLimits {
            header_timeout: env.duration(
                "CONFIG_HTTP_HEADER_TIMEOUT_MS",
                10_000,
                100,
                600_000,
                Duration::from_millis,
            )?,
            idle_timeout: env.duration(
                "CONFIG_HTTP_IDLE_TIMEOUT_MS",
                60_000,
                100,
                3_600_000,
                Duration::from_millis,
            )?,
            max_connections: env.ranged("CONFIG_HTTP_MAX_CONNECTIONS", 256, 1, 65_535)?,
            max_connections_per_address: env.ranged(
                "CONFIG_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
                64,
                0,
                65_535,
            )?,
        };
        let guard = crate::guard::GuardSettings {
            login_max_failures: env.ranged("CONFIG_LOGIN_MAX_FAILURES", 10, 1, 100_000)?,
            login_window: env.duration(
                "CONFIG_LOGIN_WINDOW_SECS",
                60,
                1,
                86_400,
                Duration::from_secs,
            )?,
            denial_window: env.duration(
                "CONFIG_AUDIT_DENIAL_WINDOW_SECS",
                60,
                1,
                3_600,
                Duration::from_secs,
            )?,
            audit_retention_days: env.ranged("CONFIG_AUDIT_RETENTION_DAYS", 90, 0, 36_500)?,
            audit_max_rows: env.ranged("CONFIG_AUDIT_MAX_ROWS", 100_000, 0, 100_000_000)?,
        };
        let applied_limits = crate::applied::AppliedLimits {
            max_per_service: env.ranged(
                "CONFIG_APPLIED_MAX_INSTANCES_PER_SERVICE",
                crate::applied::DEFAULT_MAX_PER_SERVICE,
                1,
                10_000,
            )?,
            max_total: env.ranged(
                "CONFIG_APPLIED_MAX_INSTANCES",
                crate::applied::DEFAULT_MAX_TOTAL,
                1,
                1_000_000,
            )?,
        };
        let db_path = db_path_from(env);
        let backup = crate::backup::BackupSettings::from_env(env, &db_path)?;
        let failpoint = Failpoint::parse(env)?;
        let schema_cache_size = env.ranged(
            "CONFIG_SCHEMA_CACHE_SIZE",
            config_manager_core::schema::cache::DEFAULT_CAPACITY,
            1,
            1_000_000,
        )?;
        Ok(Self {
            host: env.parse("CONFIG_MANAGER_HOST", IpAddr::from([127, 0, 0, 1]))?,
            port: env.parse("CONFIG_MANAGER_PORT", 8081)?,
            db_path,
            backup,
            lkg_path: path(env, "CONFIG_LKG_CACHE_PATH", "data/config.lkg.json"),
            schema_dir: env.get("CONFIG_SCHEMA_DIR").map(PathBuf::from),
            env_file,
            tokens,
            master_keys,
            lkg_keys,
            signing_key,
            verifying_key,
            rebuild_token: RedactedString(rebuild_token.to_owned()),
            mqtt,
            allow_auto_rebuild: env.flag("ALLOW_AUTO_REBUILD")?,
            allow_unknown_services: env.flag("CONFIG_ALLOW_UNKNOWN_SERVICES")?,
            max_body_bytes,
            log_format,
            monitor_interval,
            rotation_batch,
            env_allow,
            http_limits,
            guard,
            schema_cache_size,
            failpoint,
            applied_limits,
        })
    }

    /// What `x-env` fields may read: never a variable of [`ALL_VARIABLES`] or
    /// its namespace; API-registered schemas only what `CONFIG_ENV_ALLOW` lists.
    pub fn env_policy(&self) -> EnvPolicy {
        EnvPolicy::new(ALL_VARIABLES.iter().copied(), self.env_allow.clone())
    }
}

fn key_id(env: &EnvSource, var: &'static str, default: &str) -> Result<KeyId, SettingsError> {
    let raw = env.get(var).unwrap_or(default);
    if raw.is_empty() {
        return Err(bad(var, "is required when the previous key is set"));
    }
    KeyId::parse(raw.trim()).map_err(|e| bad(var, e.to_string()))
}

/// A key ring's previous key (during a rotation): `key_var` when set, with
/// its id in `id_var` (then required).
fn previous_key<K, E: std::fmt::Display>(
    env: &EnvSource,
    key_var: &'static str,
    id_var: &'static str,
    parse: impl Fn(&str) -> Result<K, E>,
) -> Result<Option<(KeyId, K)>, SettingsError> {
    let Some(raw) = env.get(key_var) else {
        return Ok(None);
    };
    let id = key_id(env, id_var, "")?;
    let key = parse(raw).map_err(|e| bad(key_var, e.to_string()))?;
    Ok(Some((id, key)))
}

fn path(env: &EnvSource, var: &str, default: &str) -> PathBuf {
    PathBuf::from(env.get(var).unwrap_or(default))
}

/// `CONFIG_DB_PATH` (also for commands that need no keys, like `restore`).
pub fn db_path_from(env: &EnvSource) -> PathBuf {
    path(env, "CONFIG_DB_PATH", "data/config.db")
}

/// Every variable the binary reads, for `.env.example` checks and `--help`.
pub const ALL_VARIABLES: &[&str] = &[
    "CONFIG_ENV_FILE",
    "CONFIG_MANAGER_HOST",
    "CONFIG_MANAGER_PORT",
    "CONFIG_DB_PATH",
    "CONFIG_LKG_CACHE_PATH",
    "CONFIG_SCHEMA_DIR",
    "CONFIG_SCHEMA_CACHE_SIZE",
    "CONFIG_API_TOKENS",
    "CONFIG_MASTER_KEY_BASE64",
    "CONFIG_MASTER_KEY_ID",
    "CONFIG_MASTER_KEY_PREVIOUS_BASE64",
    "CONFIG_MASTER_KEY_PREVIOUS_ID",
    "LKG_HMAC_KEY_BASE64",
    "LKG_HMAC_KEY_ID",
    "LKG_HMAC_KEY_PREVIOUS_BASE64",
    "LKG_HMAC_KEY_PREVIOUS_ID",
    "CONFIG_SIGNATURE_PRIVATE_KEY",
    "CONFIG_SIGNATURE_PUBLIC_KEY",
    "REBUILD_TOKEN",
    "MQTT_URL",
    "MQTT_CA_FILE",
    "MQTT_CLIENT_ID",
    "MQTT_REISSUE_SECS",
    "ALLOW_AUTO_REBUILD",
    "CONFIG_ALLOW_UNKNOWN_SERVICES",
    "CONFIG_MAX_BODY_BYTES",
    "CONFIG_MONITOR_INTERVAL_MS",
    "CONFIG_ROTATION_BATCH",
    "CONFIG_ENV_ALLOW",
    "CONFIG_HTTP_HEADER_TIMEOUT_MS",
    "CONFIG_HTTP_IDLE_TIMEOUT_MS",
    "CONFIG_HTTP_MAX_CONNECTIONS",
    "CONFIG_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
    "CONFIG_LOGIN_MAX_FAILURES",
    "CONFIG_LOGIN_WINDOW_SECS",
    "CONFIG_AUDIT_DENIAL_WINDOW_SECS",
    "CONFIG_AUDIT_RETENTION_DAYS",
    "CONFIG_AUDIT_MAX_ROWS",
    "CONFIG_TEST_FAILPOINT",
    "CONFIG_APPLIED_MAX_INSTANCES_PER_SERVICE",
    "CONFIG_APPLIED_MAX_INSTANCES",
    "LITESTREAM_MODE",
    "LITESTREAM_BIN",
    "LITESTREAM_ENDPOINT",
    "LITESTREAM_BUCKET",
    "LITESTREAM_PATH",
    "LITESTREAM_REGION",
    "LITESTREAM_ACCESS_KEY_ID",
    "LITESTREAM_SECRET_ACCESS_KEY",
    "LITESTREAM_FORCE_PATH_STYLE",
    "LITESTREAM_SYNC_INTERVAL",
    "LITESTREAM_RETENTION",
    "LITESTREAM_SOCKET",
    "LITESTREAM_CHECK_INTERVAL",
    "LITESTREAM_METRICS_ADDR",
    "BACKUP_SNAPSHOT_DIR",
    "BACKUP_SNAPSHOT_INTERVAL",
    "BACKUP_SNAPSHOT_KEEP",
    "LOG_FORMAT",
    "RUST_LOG",
    "CONFIG_MANAGER_URL",
    "CONFIG_API_TOKEN",
];

/// Variables of [`ALL_VARIABLES`] read before or beside [`Settings::from_env`]:
/// where the `.env` file is (`main`), the log filter (`logging`), and the
/// remote CLI's address and token (`cli/remote.rs`).
#[cfg(test)]
const READ_OUTSIDE_SETTINGS: &[&str] = &[
    "CONFIG_ENV_FILE",
    "RUST_LOG",
    "CONFIG_MANAGER_URL",
    "CONFIG_API_TOKEN",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `.env.example` documents exactly the variables the binary reads.
    #[test]
    fn env_example_lists_every_variable() {
        let example = include_str!("../../../.env.example");
        let documented: Vec<&str> = example
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains('='))
            .filter_map(|l| l.split('=').next())
            .collect();
        for var in ALL_VARIABLES {
            assert!(documented.contains(var), "{var} missing from .env.example");
        }
        for var in &documented {
            assert!(ALL_VARIABLES.contains(var), "{var} documented but not read");
        }
    }

    /// Every variable the parsers look up — service settings with MQTT and
    /// both backup kinds on — is in `ALL_VARIABLES` (and so, by the test
    /// above, in `.env.example`): a new variable cannot be read unlisted.
    #[test]
    fn every_variable_read_is_listed() {
        let dir = std::env::temp_dir();
        let mut env = EnvSource::from_pairs(
            [
                (
                    "CONFIG_API_TOKENS",
                    "admin=0123456789abcdef0123:config.write",
                ),
                ("MQTT_URL", "mqtt://127.0.0.1:1"),
                ("LITESTREAM_BUCKET", "backups"),
                ("LITESTREAM_ENDPOINT", "http://127.0.0.1:1"),
                ("BACKUP_SNAPSHOT_DIR", "snapshots"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        crate::first_run::generate_missing(&mut env).unwrap();
        // Mid-rotation: the previous keys (and so their ids) are read too.
        for (key, previous, id) in [
            (
                "CONFIG_MASTER_KEY_BASE64",
                "CONFIG_MASTER_KEY_PREVIOUS_BASE64",
                "CONFIG_MASTER_KEY_PREVIOUS_ID",
            ),
            (
                "LKG_HMAC_KEY_BASE64",
                "LKG_HMAC_KEY_PREVIOUS_BASE64",
                "LKG_HMAC_KEY_PREVIOUS_ID",
            ),
        ] {
            let current = env.get(key).unwrap().to_owned();
            env.set(previous, current);
            env.set(id, "old-1".into());
        }
        Settings::from_env(&env, dir.join(".env")).unwrap();
        let read = env.looked_up.lock().unwrap().clone();
        for var in &read {
            assert!(
                ALL_VARIABLES.contains(&var.as_str()),
                "{var} is read but not in ALL_VARIABLES"
            );
        }
        // And the other way round: every listed variable is read by these
        // parsers, or by one of the few readers outside them, so the list
        // (and `.env.example`) cannot keep a variable nothing reads.
        for var in ALL_VARIABLES {
            assert!(
                read.contains(*var) || READ_OUTSIDE_SETTINGS.contains(var),
                "{var} is listed but no parser looks it up"
            );
        }
    }

    #[test]
    fn errors_name_the_variable_not_the_value() {
        let env = EnvSource::from_pairs([(
            "CONFIG_MASTER_KEY_BASE64".to_owned(),
            "sekrit-but-bad".to_owned(),
        )]);
        let err = Settings::from_env(&env, PathBuf::from(".env")).unwrap_err();
        assert_eq!(err.var, "CONFIG_MASTER_KEY_BASE64");
        assert!(!err.to_string().contains("sekrit"));
    }
}
