//! The applied-state report: what one running instance of a service says it
//! applied (`contracts/mqtt-applied-state.schema.json`).
//!
//! The client libraries build and publish it on
//! `system/config/<service>/applied/<instance_id>`; the manager parses it with
//! [`AppliedReport::parse`] and shows it to operators. It is *advisory*: any
//! client allowed to publish on the topic can claim anything, so the manager
//! never acts on it, and the parser is strict and bounded because the payload
//! comes from the network.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use std::collections::BTreeMap;

use crate::domain::{parse_rfc3339, validate_key, Epoch, NameError, ServiceName, Version};

/// Largest payload the manager reads. A report without `pinned`/`fields` is
/// well under 1 KiB; 16 KiB leaves room for both lists at realistic name
/// lengths (64 entries each) while keeping every stored report small.
pub const MAX_APPLIED_REPORT_BYTES: usize = 16 * 1024;

/// Most entries of `pinned` and of `fields` (decision 4 of issue 24).
pub const MAX_REPORT_FIELDS: usize = 64;

/// Longest environment-variable name in `pinned`.
pub const MAX_ENV_NAME_LEN: usize = 128;

/// Longest instance id (it is one MQTT topic level and a URL path segment).
pub const MAX_INSTANCE_ID_LEN: usize = 64;

/// Prefix of every config topic; the report topic is
/// `system/config/<service>/applied/<instance_id>`.
const TOPIC_PREFIX: &str = "system/config/";
const APPLIED_LEVEL: &str = "applied";

/// The subscription filter the manager uses for every report.
pub const APPLIED_TOPIC_FILTER: &str = "system/config/+/applied/+";

/// The topic an instance reports on.
pub fn applied_topic(service: &ServiceName, instance: &InstanceId) -> String {
    format!("{TOPIC_PREFIX}{service}/{APPLIED_LEVEL}/{instance}")
}

/// Splits a report topic into its service and instance, or `None` when the
/// topic is not one (wrong shape or a level outside the grammars).
pub fn parse_applied_topic(topic: &str) -> Option<(ServiceName, InstanceId)> {
    let rest = topic.strip_prefix(TOPIC_PREFIX)?;
    let mut levels = rest.split('/');
    let service = ServiceName::parse(levels.next()?).ok()?;
    if levels.next()? != APPLIED_LEVEL {
        return None;
    }
    let instance = InstanceId::parse(levels.next()?).ok()?;
    if levels.next().is_some() {
        return None;
    }
    Some((service, instance))
}

/// Id of one running instance of a service, such as `robot-7-tts-worker`.
///
/// Grammar `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`: one MQTT topic level without
/// wildcards, and safe in a URL path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct InstanceId(String);

impl InstanceId {
    /// Checks `raw` against the instance-id grammar.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > MAX_INSTANCE_ID_LEN {
            return Err(NameError::TooLong {
                max: MAX_INSTANCE_ID_LEN,
            });
        }
        if !is_token(raw, |c| c == '.' || c == '_' || c == '-') {
            return Err(NameError::InvalidInstance);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The default id: the host name lower-cased with every character outside
    /// `[a-z0-9-]` turned into `-`, then `-` and the service name, cut to the
    /// grammar's length. Stable across restarts of the same service on the
    /// same host, which is what an operator expects to see.
    pub fn default_for(host: &str, service: &ServiceName) -> Self {
        let host: String = host
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| {
                if c.is_ascii_lowercase() || c.is_ascii_digit() {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let host = host.trim_matches('-');
        let mut id = if host.is_empty() {
            service.as_str().to_owned()
        } else {
            format!("{host}-{service}")
        };
        // Cut from the host part so the service name stays readable at the end.
        if id.len() > MAX_INSTANCE_ID_LEN {
            id = id.split_off(id.len() - MAX_INSTANCE_ID_LEN);
            id = id.trim_start_matches('-').to_owned();
        }
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// ASCII alphanumeric first, then alphanumerics or one of `extra`.
fn is_token(raw: &str, extra: impl Fn(char) -> bool) -> bool {
    let mut chars = raw.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || extra(c))
}

/// What the instance says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppliedStatus {
    /// It runs `config_epoch`/`version`.
    Applied,
    /// It refused the last update (`reason`) and keeps running `version`.
    Rejected,
    /// It is gone: its last-will, or a clean stop.
    Offline,
}

impl AppliedStatus {
    /// The word of the contract (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Rejected => "rejected",
            Self::Offline => "offline",
        }
    }
}

/// Which client library sent the report, so operators see who runs what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientInfo {
    pub name: String,
    pub version: String,
}

/// One applied-state report (the whole payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliedReport {
    pub service: ServiceName,
    pub instance_id: InstanceId,
    // Every nullable member is required, as in the JSON Schema: serde would
    // otherwise read a missing one as null (`present` turns that off).
    #[serde(deserialize_with = "present")]
    pub config_epoch: Option<Epoch>,
    #[serde(deserialize_with = "present")]
    pub version: Option<Version>,
    pub status: AppliedStatus,
    /// The client's rejection label with `Rejected`; never a value or a secret.
    #[serde(deserialize_with = "present")]
    pub reason: Option<String>,
    #[serde(deserialize_with = "present")]
    pub rejected_version: Option<Version>,
    #[serde(deserialize_with = "present")]
    pub applied_at: Option<String>,
    pub client: ClientInfo,
    /// Optional: fields whose value the instance's environment holds
    /// (`CONFIG_PINNED_ENV`), config key → variable name, so the operator
    /// sees why a change does not reach them. Absent when none; never `null`.
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub pinned: Option<BTreeMap<String, String>>,
    /// Optional, only with `rejected`: the config keys that failed the
    /// instance's own validation (names, never values). Never `null`.
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub fields: Option<Vec<String>>,
}

/// An optional member that, when present, is not `null`.
fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Checks an environment-variable name: `^[A-Za-z_][A-Za-z0-9_]{0,127}$`.
pub fn is_env_name(raw: &str) -> bool {
    let mut chars = raw.chars();
    raw.len() <= MAX_ENV_NAME_LEN
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A nullable member that must be present (`null` or a value).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// Why a report was refused. Never echoes the payload.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AppliedReportError {
    #[error("report is larger than {MAX_APPLIED_REPORT_BYTES} bytes")]
    TooLarge,
    #[error("report is not a valid applied-state object: {0}")]
    Invalid(String),
    #[error("report names another service or instance than its topic")]
    TopicMismatch,
}

impl AppliedReport {
    /// Parses and checks a payload received on the topic of `service`/`instance`.
    pub fn parse(
        payload: &[u8],
        service: &ServiceName,
        instance: &InstanceId,
    ) -> Result<Self, AppliedReportError> {
        if payload.len() > MAX_APPLIED_REPORT_BYTES {
            return Err(AppliedReportError::TooLarge);
        }
        let report: Self = serde_json::from_slice(payload)
            .map_err(|e| AppliedReportError::Invalid(short_serde_error(&e)))?;
        if &report.service != service || &report.instance_id != instance {
            return Err(AppliedReportError::TopicMismatch);
        }
        report.check().map_err(AppliedReportError::Invalid)?;
        Ok(report)
    }

    /// The rules the JSON shape alone does not express.
    fn check(&self) -> Result<(), String> {
        if self.version == Some(Version::NONE) || self.rejected_version == Some(Version::NONE) {
            return Err("versions start at 1".into());
        }
        if self.version.is_some() != self.config_epoch.is_some() {
            return Err("version and config_epoch are both set or both null".into());
        }
        if let Some(at) = &self.applied_at {
            if at.len() > 40 || parse_rfc3339(at).is_err() {
                return Err("applied_at is not an RFC 3339 time".into());
            }
        }
        match (self.status, &self.reason) {
            (AppliedStatus::Rejected, None) => return Err("a rejection needs a reason".into()),
            (AppliedStatus::Rejected, Some(reason)) if !is_reason(reason) => {
                return Err("reason is not a label ([a-z][a-z0-9_]{0,63})".into())
            }
            (AppliedStatus::Applied | AppliedStatus::Offline, Some(_)) => {
                return Err("only a rejection has a reason".into())
            }
            _ => {}
        }
        if self.status != AppliedStatus::Rejected && self.rejected_version.is_some() {
            return Err("only a rejection has a rejected_version".into());
        }
        if self.status == AppliedStatus::Applied && self.version.is_none() {
            return Err("an applied report names its version".into());
        }
        if let Some(pinned) = &self.pinned {
            if pinned.len() > MAX_REPORT_FIELDS {
                return Err(format!("pinned has more than {MAX_REPORT_FIELDS} entries"));
            }
            if pinned.keys().any(|k| validate_key(k).is_err()) {
                return Err("pinned names a field outside the config-key grammar".into());
            }
            if !pinned.values().all(|v| is_env_name(v)) {
                return Err(
                    "pinned names a variable outside ^[A-Za-z_][A-Za-z0-9_]{0,127}$".into(),
                );
            }
        }
        if let Some(fields) = &self.fields {
            if self.status != AppliedStatus::Rejected {
                return Err("only a rejection has fields".into());
            }
            if fields.len() > MAX_REPORT_FIELDS {
                return Err(format!("fields has more than {MAX_REPORT_FIELDS} entries"));
            }
            if fields.iter().any(|k| validate_key(k).is_err()) {
                return Err("fields names a field outside the config-key grammar".into());
            }
            let unique: std::collections::BTreeSet<&String> = fields.iter().collect();
            if unique.len() != fields.len() {
                return Err("fields names a field twice".into());
            }
        }
        // As the schema: '+' (build metadata) only in the version.
        for (what, value, plus) in [
            ("client.name", &self.client.name, false),
            ("client.version", &self.client.version, true),
        ] {
            let ok = value.len() <= 64
                && is_token(value, |c| {
                    matches!(c, '.' | '_' | '-') || (plus && c == '+')
                });
            if !ok {
                return Err(format!("{what} is not a short token"));
            }
        }
        Ok(())
    }

    /// The payload as published (compact JSON).
    pub fn to_json(&self) -> String {
        // Only strings, integers and nulls: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A rejection label: `^[a-z][a-z0-9_]{0,63}$`.
fn is_reason(raw: &str) -> bool {
    let mut chars = raw.chars();
    raw.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// serde's message names fields and types, never values longer than a token;
/// cut it anyway so a hostile payload cannot grow logs.
fn short_serde_error(e: &serde_json::Error) -> String {
    let mut text = e.to_string();
    if text.len() > 160 {
        let mut cut = 160;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> ServiceName {
        ServiceName::parse("tts-worker").unwrap()
    }

    fn inst() -> InstanceId {
        InstanceId::parse("robot-7-tts-worker").unwrap()
    }

    const EXAMPLE: &str = include_str!("../../../contracts/examples/applied-state.json");

    #[test]
    fn the_contract_example_parses_and_round_trips() {
        let report = AppliedReport::parse(EXAMPLE.as_bytes(), &svc(), &inst()).unwrap();
        assert_eq!(report.status, AppliedStatus::Rejected);
        assert_eq!(report.version.map(Version::get), Some(7));
        assert_eq!(report.rejected_version.map(Version::get), Some(8));
        let again = AppliedReport::parse(report.to_json().as_bytes(), &svc(), &inst()).unwrap();
        assert_eq!(again, report);
    }

    #[test]
    fn topics() {
        assert_eq!(
            applied_topic(&svc(), &inst()),
            "system/config/tts-worker/applied/robot-7-tts-worker"
        );
        assert_eq!(
            parse_applied_topic("system/config/tts-worker/applied/robot-7-tts-worker"),
            Some((svc(), inst()))
        );
        for bad in [
            "system/config/tts-worker",
            "system/config/tts-worker/applied",
            "system/config/tts-worker/applied/",
            "system/config/tts-worker/applied/a/b",
            "system/config/TTS/applied/a",
            "system/config/tts-worker/other/a",
            "system/health/tts-worker/applied/a",
        ] {
            assert_eq!(parse_applied_topic(bad), None, "{bad}");
        }
    }

    #[test]
    fn instance_ids() {
        assert!(InstanceId::parse("a").is_ok());
        assert!(InstanceId::parse("Robot_7.tts-worker").is_ok());
        for bad in [
            "",
            "-a",
            ".a",
            "a/b",
            "a+b",
            "a#",
            "a b",
            "ä",
            &"a".repeat(65),
        ] {
            assert!(InstanceId::parse(bad).is_err(), "{bad:?}");
        }
        let id = InstanceId::default_for("Robot-7.local", &svc());
        assert_eq!(id.as_str(), "robot-7-local-tts-worker");
        assert_eq!(InstanceId::default_for("", &svc()).as_str(), "tts-worker");
        let long = InstanceId::default_for(&"h".repeat(200), &svc());
        assert!(InstanceId::parse(long.as_str()).is_ok());
        assert!(long.as_str().ends_with("-tts-worker"));
    }

    fn with(
        change: impl FnOnce(&mut serde_json::Value),
    ) -> Result<AppliedReport, AppliedReportError> {
        let mut value: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
        change(&mut value);
        AppliedReport::parse(value.to_string().as_bytes(), &svc(), &inst())
    }

    #[test]
    fn bad_reports_are_refused() {
        use serde_json::json;
        let invalid = |r: Result<AppliedReport, AppliedReportError>| {
            matches!(r, Err(AppliedReportError::Invalid(_)))
        };
        assert!(invalid(with(|v| v["extra"] = json!(1))));
        assert!(invalid(with(|v| v["status"] = json!("weird"))));
        assert!(invalid(with(|v| v["version"] = json!(0))));
        assert!(invalid(with(|v| v["version"] = json!(-1))));
        assert!(invalid(with(|v| v["version"] = json!("7"))));
        assert!(invalid(with(|v| v["config_epoch"] = json!("not-a-uuid"))));
        assert!(invalid(with(|v| v["config_epoch"] = json!(null))));
        assert!(invalid(with(|v| v["applied_at"] = json!("yesterday"))));
        assert!(invalid(with(
            |v| v["applied_at"] = json!("9999-12-31T23:59:59-23:59")
        )));
        assert!(invalid(with(|v| v["reason"] = json!(null))));
        assert!(invalid(with(
            |v| v["reason"] = json!("Value was secret123!")
        )));
        assert!(invalid(with(|v| {
            v["status"] = json!("applied");
        })));
        assert!(invalid(with(|v| {
            v["status"] = json!("applied");
            v["reason"] = json!(null);
        })));
        assert!(invalid(with(|v| v["client"]["name"] = json!("a b"))));
        assert!(invalid(with(|v| {
            v.as_object_mut().unwrap().remove("client");
        })));
        for nullable in [
            "config_epoch",
            "version",
            "reason",
            "rejected_version",
            "applied_at",
        ] {
            assert!(
                invalid(with(|v| {
                    v.as_object_mut().unwrap().remove(nullable);
                })),
                "{nullable} may be null but not missing"
            );
        }
        assert!(matches!(
            with(|v| v["service"] = json!("stt-worker")),
            Err(AppliedReportError::TopicMismatch)
        ));
        assert!(matches!(
            with(|v| v["instance_id"] = json!("other")),
            Err(AppliedReportError::TopicMismatch)
        ));
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_APPLIED_REPORT_BYTES));
        assert_eq!(
            AppliedReport::parse(big.as_bytes(), &svc(), &inst()),
            Err(AppliedReportError::TooLarge)
        );
        assert!(invalid(AppliedReport::parse(b"\xff", &svc(), &inst())));
        assert!(invalid(AppliedReport::parse(b"[]", &svc(), &inst())));
    }

    #[test]
    fn pinned_and_fields_round_trip() {
        use serde_json::json;
        let report = with(|v| {
            v["pinned"] = json!({"tts_volume": "TTS_VOLUME", "log_level": "_LOG_LEVEL"});
            v["fields"] = json!(["tts_volume", "voice"]);
            v["reason"] = json!("crashed");
        })
        .unwrap();
        let pinned = report.pinned.as_ref().unwrap();
        assert_eq!(pinned["tts_volume"], "TTS_VOLUME");
        assert_eq!(report.fields.as_deref().unwrap().len(), 2);
        assert_eq!(report.reason.as_deref(), Some("crashed"));
        let again = AppliedReport::parse(report.to_json().as_bytes(), &svc(), &inst()).unwrap();
        assert_eq!(again, report);
        // Absent members stay absent when written back.
        let plain = with(|_| {}).unwrap();
        assert!(!plain.to_json().contains("pinned"));
        assert!(!plain.to_json().contains("fields"));
        // Pinned fields with any status.
        let applied = with(|v| {
            v["status"] = json!("applied");
            v["reason"] = json!(null);
            v["rejected_version"] = json!(null);
            v["pinned"] = json!({"a": "A"});
        })
        .unwrap();
        assert_eq!(applied.pinned.unwrap().len(), 1);
        // Exactly at the bounds.
        let at_max: serde_json::Map<String, serde_json::Value> = (0..MAX_REPORT_FIELDS)
            .map(|i| (format!("f{i}"), json!(format!("V{i}"))))
            .collect();
        assert!(with(|v| v["pinned"] = json!(at_max)).is_ok());
        let long_var = format!("V{}", "a".repeat(MAX_ENV_NAME_LEN - 1));
        assert!(with(|v| v["pinned"] = json!({"a": long_var})).is_ok());
    }

    #[test]
    fn bad_pinned_and_fields_are_refused() {
        use serde_json::json;
        let invalid = |r: Result<AppliedReport, AppliedReportError>| {
            matches!(r, Err(AppliedReportError::Invalid(_)))
        };
        // Wrong types, null.
        for bad in [
            json!(null),
            json!([]),
            json!("A"),
            json!({"a": 1}),
            json!({"a": null}),
            json!({"a": ["A"]}),
        ] {
            assert!(invalid(with(|v| v["pinned"] = bad.clone())), "pinned {bad}");
        }
        for bad in [
            json!(null),
            json!({}),
            json!("a"),
            json!([1]),
            json!([null]),
            json!([["a"]]),
        ] {
            assert!(invalid(with(|v| v["fields"] = bad.clone())), "fields {bad}");
        }
        // Bad names.
        for key in ["", "1a", "a-b", "a.b", "ä", "a b", &"a".repeat(129)] {
            assert!(
                invalid(with(|v| v["pinned"] = json!({key: "A"}))),
                "{key:?}"
            );
            assert!(invalid(with(|v| v["fields"] = json!([key]))), "{key:?}");
        }
        let too_long_var = format!("V{}", "a".repeat(MAX_ENV_NAME_LEN));
        for var in ["", "1A", "A-B", "A B", "A=B", "Ä", too_long_var.as_str()] {
            assert!(
                invalid(with(|v| v["pinned"] = json!({"a": var}))),
                "{var:?}"
            );
        }
        // Too many entries.
        let over: serde_json::Map<String, serde_json::Value> = (0..=MAX_REPORT_FIELDS)
            .map(|i| (format!("f{i}"), json!("V")))
            .collect();
        assert!(invalid(with(|v| v["pinned"] = json!(over))));
        let over: Vec<String> = (0..=MAX_REPORT_FIELDS).map(|i| format!("f{i}")).collect();
        assert!(invalid(with(|v| v["fields"] = json!(over))));
        // Duplicates; fields outside a rejection.
        assert!(invalid(with(|v| v["fields"] = json!(["a", "a"]))));
        assert!(invalid(with(|v| {
            v["status"] = json!("applied");
            v["reason"] = json!(null);
            v["rejected_version"] = json!(null);
            v["fields"] = json!(["a"]);
        })));
        // Unknown members are still refused next to the new ones.
        assert!(invalid(with(|v| {
            v["pinned"] = json!({"a": "A"});
            v["pinned_extra"] = json!(1);
        })));
    }

    #[test]
    fn applied_and_offline_forms() {
        use serde_json::json;
        let applied = with(|v| {
            v["status"] = json!("applied");
            v["reason"] = json!(null);
            v["rejected_version"] = json!(null);
        })
        .unwrap();
        assert_eq!(applied.status, AppliedStatus::Applied);
        let offline_nothing_yet = with(|v| {
            v["status"] = json!("offline");
            v["reason"] = json!(null);
            v["rejected_version"] = json!(null);
            v["version"] = json!(null);
            v["config_epoch"] = json!(null);
            v["applied_at"] = json!(null);
        })
        .unwrap();
        assert_eq!(offline_nothing_yet.version, None);
    }
}
