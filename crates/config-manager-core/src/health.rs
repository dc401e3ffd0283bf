//! The health message the manager publishes (retained, QoS 1) on
//! `system/health/config-manager` and serves at `GET /api/config/health`.
//!
//! It carries every field of the earlier Python contract
//! (`contracts/mqtt-health-status.schema.json` lists them) so existing TARS
//! consumers keep working, plus `status`, `mqtt_connected`, `mqtt_configured`,
//! `uptime_seconds` and `manager_version`. The same struct, with `status: "offline"`, is the
//! MQTT last-will, so a consumer tells a dead manager from a degraded one
//! without a second topic.

use serde::{Deserialize, Serialize};

use crate::domain::Epoch;

/// Topic of the retained health message.
pub const HEALTH_TOPIC: &str = "system/health/config-manager";

/// State of the database file as last checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseStatus {
    Healthy,
    Locked,
    Corrupted,
    SchemaMismatch,
    /// The file is gone (an addition to the Python contract's four values).
    Missing,
    /// The file is there but cannot be opened right now: permissions, no file
    /// descriptor left, an I/O error (an addition, like `missing`). Never
    /// a reason to rebuild.
    Unavailable,
}

/// How the manager is serving requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperationalMode {
    Normal,
    ReadOnlyFallback,
    Rebuilding,
}

/// State of continuous backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LitestreamStatus {
    Healthy,
    Error,
    Disabled,
}

impl DatabaseStatus {
    /// The wire word: the JSON value (health over REST and MQTT) and the
    /// Prometheus label, e.g. `schema-mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseStatus::Healthy => "healthy",
            DatabaseStatus::Locked => "locked",
            DatabaseStatus::Corrupted => "corrupted",
            DatabaseStatus::SchemaMismatch => "schema-mismatch",
            DatabaseStatus::Missing => "missing",
            DatabaseStatus::Unavailable => "unavailable",
        }
    }

    /// In a sentence ("the database is unavailable (schema mismatch)"), as
    /// problem documents say it.
    pub fn describe(self) -> &'static str {
        match self {
            DatabaseStatus::SchemaMismatch => "schema mismatch",
            other => other.as_str(),
        }
    }

    /// The fault as a noun, for events and log lines ("database fault:
    /// lock", "automatic rebuild: database corruption").
    pub fn fault_word(self) -> &'static str {
        match self {
            DatabaseStatus::Healthy => "healthy",
            DatabaseStatus::Locked => "lock",
            DatabaseStatus::Corrupted => "corruption",
            DatabaseStatus::SchemaMismatch => "schema mismatch",
            DatabaseStatus::Missing => "file missing",
            DatabaseStatus::Unavailable => "file unavailable",
        }
    }

    /// What health's `err` says about the fault: no paths, no SQL, no values.
    pub fn public_cause(self) -> &'static str {
        match self {
            DatabaseStatus::Healthy => "database healthy",
            DatabaseStatus::Locked => "database is locked by another process",
            DatabaseStatus::Corrupted => "database integrity check failed",
            DatabaseStatus::SchemaMismatch => "database schema does not match",
            DatabaseStatus::Missing => "database file is missing or was replaced",
            DatabaseStatus::Unavailable => {
                "database file cannot be opened (permissions, too many open files or an I/O error)"
            }
        }
    }
}

impl OperationalMode {
    /// The wire word (JSON value, Prometheus label), e.g. `read-only-fallback`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationalMode::Normal => "normal",
            OperationalMode::ReadOnlyFallback => "read-only-fallback",
            OperationalMode::Rebuilding => "rebuilding",
        }
    }
}

impl LitestreamStatus {
    /// The wire word (JSON value, Prometheus label).
    pub fn as_str(self) -> &'static str {
        match self {
            LitestreamStatus::Healthy => "healthy",
            LitestreamStatus::Error => "error",
            LitestreamStatus::Disabled => "disabled",
        }
    }
}

/// Whether the manager process is up. `Offline` is only ever sent as the
/// MQTT last-will (or on graceful shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManagerStatus {
    Online,
    Offline,
}

/// The health payload. Field order is the wire order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthStatus {
    /// `false` when the database is unhealthy, the manager is in fallback or
    /// rebuilding, or it is offline.
    pub ok: bool,
    pub status: ManagerStatus,
    pub database_status: DatabaseStatus,
    pub operational_mode: OperationalMode,
    /// The epoch of the data served; `None` (`""` on the wire) when neither
    /// a database nor a last-known-good cache says which.
    #[serde(with = "epoch_or_empty")]
    pub config_epoch: Option<Epoch>,
    /// Version number of the loaded service schemas (≥ 1).
    pub schema_version: u32,
    /// Whether the last-known-good cache verified (HMAC) at its last check.
    pub lkg_cache_valid: bool,
    pub litestream_status: LitestreamStatus,
    /// RFC 3339 time of the last successful backup, if any.
    pub last_backup: Option<String>,
    /// What just changed (for state transitions), if anything.
    pub event: Option<String>,
    /// Why the manager is unhealthy, if it is. Never contains secrets.
    pub err: Option<String>,
    /// Background tasks that ended unexpectedly and are being restarted
    /// (e.g. `monitor`, `applied-state subscriber`); omitted when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub degraded_tasks: Vec<String>,
    /// Whether the manager's MQTT connection is up (as seen over REST; on MQTT
    /// it is `true` except in the last-will).
    pub mqtt_connected: bool,
    /// Whether the manager has a broker to publish to (`MQTT_URL` set). With
    /// `mqtt_connected` it tells "disconnected" (a fault) from "not used".
    pub mqtt_configured: bool,
    pub uptime_seconds: u64,
    /// The manager's release (`CARGO_PKG_VERSION`).
    pub manager_version: String,
}

impl HealthStatus {
    /// The `ok` value implied by the other fields.
    pub fn derived_ok(&self) -> bool {
        self.status == ManagerStatus::Online
            && self.database_status == DatabaseStatus::Healthy
            && self.operational_mode == OperationalMode::Normal
            && self.degraded_tasks.is_empty()
    }

    /// The last-will form of this message: same facts, marked offline.
    pub fn to_offline(&self, event: impl Into<String>) -> Self {
        Self {
            ok: false,
            status: ManagerStatus::Offline,
            mqtt_connected: false,
            event: Some(event.into()),
            ..self.clone()
        }
    }
}

/// `Option<Epoch>` as the health payload has always carried it: the epoch,
/// or `""` when unknown.
mod epoch_or_empty {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::domain::Epoch;

    pub fn serialize<S: Serializer>(epoch: &Option<Epoch>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(epoch.as_ref().map_or("", Epoch::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Epoch>, D::Error> {
        let raw = String::deserialize(d)?;
        if raw.is_empty() {
            return Ok(None);
        }
        Epoch::parse(&raw)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn as_str_is_the_serde_word() {
        use DatabaseStatus as D;
        for s in [
            D::Healthy,
            D::Locked,
            D::Corrupted,
            D::SchemaMismatch,
            D::Missing,
            D::Unavailable,
        ] {
            assert_eq!(json!(s), json!(s.as_str()));
        }
        use OperationalMode as M;
        for m in [M::Normal, M::ReadOnlyFallback, M::Rebuilding] {
            assert_eq!(json!(m), json!(m.as_str()));
        }
        use LitestreamStatus as L;
        for l in [L::Healthy, L::Error, L::Disabled] {
            assert_eq!(json!(l), json!(l.as_str()));
        }
    }

    pub(crate) fn example() -> HealthStatus {
        HealthStatus {
            ok: true,
            status: ManagerStatus::Online,
            database_status: DatabaseStatus::Healthy,
            operational_mode: OperationalMode::Normal,
            config_epoch: Some(Epoch::parse("550e8400-e29b-41d4-a716-446655440000").unwrap()),
            schema_version: 1,
            lkg_cache_valid: true,
            litestream_status: LitestreamStatus::Disabled,
            last_backup: None,
            event: None,
            err: None,
            degraded_tasks: Vec::new(),
            mqtt_connected: true,
            mqtt_configured: true,
            uptime_seconds: 42,
            manager_version: "0.1.0".into(),
        }
    }

    #[test]
    fn wire_form_uses_contract_spellings() {
        let mut h = example();
        h.database_status = DatabaseStatus::SchemaMismatch;
        h.operational_mode = OperationalMode::ReadOnlyFallback;
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["database_status"], json!("schema-mismatch"));
        assert_eq!(v["operational_mode"], json!("read-only-fallback"));
        assert_eq!(v["status"], json!("online"));
        assert_eq!(v["last_backup"], json!(null));
        let back: HealthStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn offline_form_and_derived_ok() {
        let h = example();
        assert!(h.derived_ok());
        let will = h.to_offline("connection lost");
        assert!(!will.ok && !will.mqtt_connected && !will.derived_ok());
        assert_eq!(will.status, ManagerStatus::Offline);
        assert_eq!(will.config_epoch, h.config_epoch);
    }

    #[test]
    fn contract_example_parses() {
        let text = include_str!("../../../contracts/examples/health-status.json");
        let parsed: HealthStatus = serde_json::from_str(text).unwrap();
        assert_eq!(parsed.ok, parsed.derived_ok());
    }
}
