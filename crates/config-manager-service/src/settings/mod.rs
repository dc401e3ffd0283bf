//! Settings: read once from the environment (with the `.env` file underneath),
//! checked once, and handed out as typed values. Every error names the variable
//! and never prints its value.
//!
//! Every variable is an entry of the settings table ([`table`]), read through
//! [`EnvSource`] by its handle; the parts' settings are parsed here as plain
//! data for the modules that use them ([`mqtt`], [`backup`], [`limits`]), so
//! this module imports none of them.

pub mod backup;
mod env;
pub mod limits;
pub mod mqtt;
pub mod render;
pub mod table;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use config_manager_core::crypto::mac::{MacKey, MacKeyRing};
use config_manager_core::crypto::secret_box::{MasterKey, SecretKeyRing};
use config_manager_core::crypto::signing::{SigningKey, VerifyingKey};
use config_manager_core::crypto::KeyId;
use config_manager_core::schema::{EnvPattern, EnvPolicy};

use crate::auth::tokens::TokenTable;

pub(crate) use env::bad;
pub use env::{EnvSource, SettingsError};
pub use limits::{AppliedLimits, GuardSettings, ServerLimits};
pub use mqtt::MqttSettings;
pub use table::Setting;
use table::*;

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
    pub mqtt: Option<MqttSettings>,
    pub allow_auto_rebuild: bool,
    pub allow_unknown_services: bool,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    /// How often the database monitor checks the file.
    pub monitor_interval: Duration,
    /// Secrets re-encrypted per transaction during a master-key rotation.
    pub rotation_batch: usize,
    /// `LITESTREAM_*` and `BACKUP_SNAPSHOT_*` (see [`backup`]).
    pub backup: backup::BackupSettings,
    /// `CONFIG_ENV_ALLOW`: variables schemas registered over the API may read
    /// through `x-env` (default none).
    pub env_allow: Vec<EnvPattern>,
    /// Connection limits of the HTTP server (`http::server`).
    pub http_limits: ServerLimits,
    /// Login rate limit and audit aggregation/retention (`guard`, `auth`).
    pub guard: GuardSettings,
    /// Caps of the applied-state board (`applied`).
    pub applied_limits: AppliedLimits,
    /// `CONFIG_SCHEMA_CACHE_SIZE`: for how many schemas the compiled
    /// validator and the field metadata are kept (least recently used
    /// evicted; see `config_manager_core::schema::cache`).
    pub schema_cache_size: usize,
    /// `CONFIG_TEST_FAILPOINT`: a crash point for the fault tests (hidden;
    /// never set outside tests).
    pub failpoint: Option<Failpoint>,
    /// One warning for each deprecated variable name in use (`serve` logs
    /// them once it has a log).
    pub deprecations: Vec<String>,
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
        match env.choice(CONFIG_TEST_FAILPOINT) {
            Ok(None) => Ok(None),
            Ok(Some(_)) => Ok(Some(Self::AfterCommit)),
            Err(_) => Err(bad(
                CONFIG_TEST_FAILPOINT.name,
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

/// Default largest accepted request body (from the table).
pub const DEFAULT_MAX_BODY_BYTES: usize = CONFIG_MAX_BODY_BYTES.default_int() as usize;

impl Settings {
    /// Validates every variable. Keys must already exist (see `first_run`).
    pub fn from_env(env: &EnvSource, env_file: PathBuf) -> Result<Self, SettingsError> {
        let master_id = key_id(env, CONFIG_MASTER_KEY_ID)?;
        let master = MasterKey::from_base64(env.required(CONFIG_MASTER_KEY_BASE64)?)
            .map_err(|e| bad(CONFIG_MASTER_KEY_BASE64.name, e.to_string()))?;
        let mut master_keys = SecretKeyRing::new(master_id, master);
        if let Some((id, key)) = previous_key(
            env,
            CONFIG_MASTER_KEY_PREVIOUS_BASE64,
            CONFIG_MASTER_KEY_PREVIOUS_ID,
            MasterKey::from_base64,
        )? {
            master_keys = master_keys.with_previous(id, key);
        }
        let lkg_keys = lkg_keys(env)?;
        let signing_key = SigningKey::from_pkcs8_pem(env.required(CONFIG_SIGNATURE_PRIVATE_KEY)?)
            .map_err(|e| bad(CONFIG_SIGNATURE_PRIVATE_KEY.name, e.to_string()))?;
        let verifying_key = match env.get(CONFIG_SIGNATURE_PUBLIC_KEY) {
            Some(pem) => VerifyingKey::from_spki_pem(pem)
                .map_err(|e| bad(CONFIG_SIGNATURE_PUBLIC_KEY.name, e.to_string()))?,
            None => signing_key.verifying_key(),
        };
        if verifying_key.key_id() != signing_key.key_id() {
            return Err(bad(
                CONFIG_SIGNATURE_PUBLIC_KEY.name,
                "does not match CONFIG_SIGNATURE_PRIVATE_KEY",
            ));
        }
        let rebuild_token = env.required(REBUILD_TOKEN)?;
        if rebuild_token.len() < 16 {
            return Err(bad(REBUILD_TOKEN.name, "must be at least 16 characters"));
        }
        let tokens = TokenTable::parse(env.required(CONFIG_API_TOKENS)?)
            .map_err(|e| bad(CONFIG_API_TOKENS.name, e.to_string()))?;
        let log_format = match env.choice(LOG_FORMAT)? {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let mqtt = MqttSettings::from_env(env)?;
        let max_body_bytes = env.int(CONFIG_MAX_BODY_BYTES)?;
        let rotation_batch = env.int(CONFIG_ROTATION_BATCH)?;
        let monitor_interval = env.duration(CONFIG_MONITOR_INTERVAL_MS)?;
        let env_allow = EnvPolicy::parse_allow_list(env.get(CONFIG_ENV_ALLOW).unwrap_or(""))
            .map_err(|e| bad(CONFIG_ENV_ALLOW.name, e.to_string()))?;
        let http_limits = ServerLimits::from_env(env)?;
        let guard = GuardSettings::from_env(env)?;
        let applied_limits = AppliedLimits::from_env(env)?;
        let db_path = db_path_from(env);
        let backup = backup::BackupSettings::from_env(env, &db_path)?;
        let failpoint = Failpoint::parse(env)?;
        let schema_cache_size = env.int(CONFIG_SCHEMA_CACHE_SIZE)?;
        Ok(Self {
            host: env.parsed(CONFIG_MANAGER_HOST)?,
            port: env.int(CONFIG_MANAGER_PORT)?,
            db_path,
            backup,
            lkg_path: path(env, CONFIG_LKG_CACHE_PATH),
            schema_dir: env.get(CONFIG_SCHEMA_DIR).map(PathBuf::from),
            env_file,
            tokens,
            master_keys,
            lkg_keys,
            signing_key,
            verifying_key,
            rebuild_token: RedactedString(rebuild_token.to_owned()),
            mqtt,
            allow_auto_rebuild: env.flag(ALLOW_AUTO_REBUILD)?,
            allow_unknown_services: env.flag(CONFIG_ALLOW_UNKNOWN_SERVICES)?,
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
            deprecations: env.deprecations(),
        })
    }

    /// What `x-env` fields may read: never a variable of the settings table
    /// (or a deprecated name) nor their namespaces; API-registered schemas
    /// only what `CONFIG_ENV_ALLOW` lists.
    pub fn env_policy(&self) -> EnvPolicy {
        EnvPolicy::new(table::names(), self.env_allow.clone())
    }
}

/// A key id, or the table's default id (`master-1`, `lkg-1`); the previous
/// keys' ids have none and are then required.
fn key_id(env: &EnvSource, var: &'static Setting) -> Result<KeyId, SettingsError> {
    let raw = env.text(var).unwrap_or("");
    if raw.is_empty() {
        return Err(bad(var.name, "is required when the previous key is set"));
    }
    KeyId::parse(raw.trim()).map_err(|e| bad(var.name, e.to_string()))
}

/// A key ring's previous key (during a rotation): `key_var` when set, with
/// its id in `id_var` (then required).
fn previous_key<K, E: std::fmt::Display>(
    env: &EnvSource,
    key_var: &'static Setting,
    id_var: &'static Setting,
    parse: impl Fn(&str) -> Result<K, E>,
) -> Result<Option<(KeyId, K)>, SettingsError> {
    let Some(raw) = env.get(key_var) else {
        return Ok(None);
    };
    let id = key_id(env, id_var)?;
    let key = parse(raw).map_err(|e| bad(key_var.name, e.to_string()))?;
    Ok(Some((id, key)))
}

/// The LKG HMAC key ring from `LKG_HMAC_KEY_*`: the current key and, during
/// a rotation, the previous one (also for `verify-lkg`).
pub fn lkg_keys(env: &EnvSource) -> Result<MacKeyRing, SettingsError> {
    let lkg_id = key_id(env, LKG_HMAC_KEY_ID)?;
    let lkg = MacKey::from_base64(env.required(LKG_HMAC_KEY_BASE64)?)
        .map_err(|e| bad(LKG_HMAC_KEY_BASE64.name, e.to_string()))?;
    let mut lkg_keys = MacKeyRing::new(lkg_id, lkg);
    if let Some((id, key)) = previous_key(
        env,
        LKG_HMAC_KEY_PREVIOUS_BASE64,
        LKG_HMAC_KEY_PREVIOUS_ID,
        MacKey::from_base64,
    )? {
        lkg_keys = lkg_keys.with_previous(id, key);
    }
    Ok(lkg_keys)
}

fn path(env: &EnvSource, var: &'static Setting) -> PathBuf {
    PathBuf::from(env.text(var).unwrap_or_default())
}

/// `CONFIG_DB_PATH` (also for commands that need no keys, like `restore`).
pub fn db_path_from(env: &EnvSource) -> PathBuf {
    path(env, CONFIG_DB_PATH)
}

#[cfg(test)]
mod tests;
