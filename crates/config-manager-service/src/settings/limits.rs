//! The limits handed to the HTTP server, the abuse guards and the
//! applied-state board: plain data, read from `CONFIG_HTTP_*`,
//! `CONFIG_LOGIN_*`, `CONFIG_AUDIT_*` and `CONFIG_APPLIED_*`.

use std::time::Duration;

use super::env::{EnvSource, SettingsError};
use super::table::{
    CONFIG_APPLIED_MAX_INSTANCES, CONFIG_APPLIED_MAX_INSTANCES_PER_SERVICE,
    CONFIG_AUDIT_DENIAL_WINDOW_SECS, CONFIG_AUDIT_MAX_ROWS, CONFIG_AUDIT_RETENTION_DAYS,
    CONFIG_HTTP_HEADER_TIMEOUT_MS, CONFIG_HTTP_IDLE_TIMEOUT_MS, CONFIG_HTTP_MAX_CONNECTIONS,
    CONFIG_HTTP_MAX_CONNECTIONS_PER_ADDRESS, CONFIG_LOGIN_MAX_FAILURES, CONFIG_LOGIN_WINDOW_SECS,
};

/// The HTTP server's connection limits (`CONFIG_HTTP_*`).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Most open connections from one client address; 0: no per-address cap.
    pub max_connections_per_address: usize,
}

impl ServerLimits {
    /// Reads `CONFIG_HTTP_*`.
    pub fn from_env(env: &EnvSource) -> Result<Self, SettingsError> {
        Ok(Self {
            header_timeout: env.duration(CONFIG_HTTP_HEADER_TIMEOUT_MS)?,
            idle_timeout: env.duration(CONFIG_HTTP_IDLE_TIMEOUT_MS)?,
            max_connections: env.int(CONFIG_HTTP_MAX_CONNECTIONS)?,
            max_connections_per_address: env.int(CONFIG_HTTP_MAX_CONNECTIONS_PER_ADDRESS)?,
        })
    }
}

/// The abuse guards' settings: login rate limit, aggregated denials and
/// audit retention (`CONFIG_LOGIN_*`, `CONFIG_AUDIT_*`), used by
/// `crate::guard` and the auth bookkeeping.
#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    pub login_max_failures: u32,
    pub login_window: Duration,
    pub denial_window: Duration,
    /// 0: no age limit.
    pub audit_retention_days: u32,
    /// 0: no row limit.
    pub audit_max_rows: u64,
}

impl GuardSettings {
    /// Reads `CONFIG_LOGIN_*` and `CONFIG_AUDIT_*`.
    pub fn from_env(env: &EnvSource) -> Result<Self, SettingsError> {
        Ok(Self {
            login_max_failures: env.int(CONFIG_LOGIN_MAX_FAILURES)?,
            login_window: env.duration(CONFIG_LOGIN_WINDOW_SECS)?,
            denial_window: env.duration(CONFIG_AUDIT_DENIAL_WINDOW_SECS)?,
            audit_retention_days: env.int(CONFIG_AUDIT_RETENTION_DAYS)?,
            audit_max_rows: env.int(CONFIG_AUDIT_MAX_ROWS)?,
        })
    }
}

/// Default of `CONFIG_APPLIED_MAX_INSTANCES_PER_SERVICE` (from the table).
pub const DEFAULT_MAX_PER_SERVICE: usize =
    CONFIG_APPLIED_MAX_INSTANCES_PER_SERVICE.default_int() as usize;

/// Default of `CONFIG_APPLIED_MAX_INSTANCES` (from the table).
pub const DEFAULT_MAX_TOTAL: usize = CONFIG_APPLIED_MAX_INSTANCES.default_int() as usize;

/// The caps of the applied-state board (`CONFIG_APPLIED_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedLimits {
    pub max_per_service: usize,
    pub max_total: usize,
}

impl Default for AppliedLimits {
    fn default() -> Self {
        Self {
            max_per_service: DEFAULT_MAX_PER_SERVICE,
            max_total: DEFAULT_MAX_TOTAL,
        }
    }
}

impl AppliedLimits {
    /// Reads `CONFIG_APPLIED_MAX_INSTANCES_PER_SERVICE` and
    /// `CONFIG_APPLIED_MAX_INSTANCES`.
    pub fn from_env(env: &EnvSource) -> Result<Self, SettingsError> {
        Ok(Self {
            max_per_service: env.int(CONFIG_APPLIED_MAX_INSTANCES_PER_SERVICE)?,
            max_total: env.int(CONFIG_APPLIED_MAX_INSTANCES)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_the_table() {
        let none = EnvSource::of(&[]);
        assert_eq!(
            AppliedLimits::from_env(&none).unwrap(),
            AppliedLimits::default()
        );
        assert_eq!(DEFAULT_MAX_PER_SERVICE, 64);
        assert_eq!(DEFAULT_MAX_TOTAL, 4096);
        let http = ServerLimits::from_env(&none).unwrap();
        assert_eq!(http.header_timeout, Duration::from_secs(10));
        assert_eq!(http.idle_timeout, Duration::from_secs(60));
        let guard = GuardSettings::from_env(&none).unwrap();
        assert_eq!(guard.login_window, Duration::from_secs(60));
        assert_eq!(guard.audit_retention_days, 90);
    }

    /// Bad forms: not a whole number, a unit written out, out of range.
    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("CONFIG_HTTP_HEADER_TIMEOUT_MS", "10s"),
            ("CONFIG_HTTP_HEADER_TIMEOUT_MS", "99"),
            ("CONFIG_HTTP_IDLE_TIMEOUT_MS", "1.5"),
            ("CONFIG_HTTP_MAX_CONNECTIONS", "0"),
            ("CONFIG_LOGIN_WINDOW_SECS", "1m"),
            ("CONFIG_LOGIN_WINDOW_SECS", "86401"),
            ("CONFIG_AUDIT_DENIAL_WINDOW_SECS", "-1"),
            ("CONFIG_AUDIT_RETENTION_DAYS", "36501"),
        ] {
            let e = EnvSource::of(&[(var, value)]);
            let err = ServerLimits::from_env(&e)
                .err()
                .or_else(|| GuardSettings::from_env(&e).err())
                .unwrap_or_else(|| panic!("{var}={value} accepted"));
            assert_eq!(err.var, var);
        }
    }
}
