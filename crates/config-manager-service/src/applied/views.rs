//! What the board shows: the desired configuration of a service, the sync
//! state and drift of each instance against it, and the per-service summary.

use std::collections::{BTreeMap, HashMap};

use config_manager_core::applied::{AppliedReport, AppliedStatus, ClientInfo, InstanceId};
use config_manager_core::domain::{format_rfc3339, parse_rfc3339, ServiceName, Version};
use serde::Serialize;
use time::OffsetDateTime;

use super::Entry;

/// The configuration the manager wants a service to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub config_epoch: String,
    pub version: Version,
    /// When that version was written, for "pending for N s".
    pub updated_at: Option<OffsetDateTime>,
}

impl Desired {
    /// As the API shows it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "config_epoch": self.config_epoch,
            "version": self.version,
            "updated_at": self.updated_at.map(format_rfc3339),
        })
    }
}

/// Sync state of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    InSync,
    Pending,
    Rejected,
    Offline,
}

impl SyncState {
    pub const ALL: [SyncState; 4] = [
        SyncState::InSync,
        SyncState::Pending,
        SyncState::Rejected,
        SyncState::Offline,
    ];

    /// The JSON word and metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::InSync => "in_sync",
            SyncState::Pending => "pending",
            SyncState::Rejected => "rejected",
            SyncState::Offline => "offline",
        }
    }
}

/// How an instance that is not in sync differs from the desired config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Drift {
    /// Same epoch, older version: the update has not arrived (yet).
    Behind,
    /// Same epoch, newer version than the database: the database went back
    /// (a restore); the instance will not take an older version by itself.
    Ahead,
    /// Another epoch: a rebuild happened since (or the instance belongs to
    /// another manager's data).
    OtherEpoch,
    /// The instance runs no configuration yet.
    Nothing,
    /// The manager has no configuration for the service.
    NoDesired,
}

/// One instance as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub instance_id: InstanceId,
    pub state: SyncState,
    /// Set when the instance runs something other than the desired config.
    pub drift: Option<Drift>,
    /// What the instance said (`applied`, `rejected`, `offline`).
    pub status: AppliedStatus,
    pub config_epoch: Option<String>,
    pub version: Option<Version>,
    pub reason: Option<String>,
    pub rejected_version: Option<Version>,
    pub applied_at: Option<String>,
    pub client: ClientInfo,
    /// Fields whose value the instance's environment holds
    /// (`CONFIG_PINNED_ENV`), key → variable: a change of them in the manager
    /// does not reach this instance. Empty when none.
    pub pinned: BTreeMap<String, String>,
    /// With `rejected`: the field keys that failed the instance's own
    /// validation (names only). Empty otherwise.
    pub fields: Vec<String>,
    /// When the manager received the report (its clock).
    pub received_at: String,
    /// Seconds since `received_at`.
    pub age_seconds: u64,
    /// While `pending`: seconds since the desired version was written.
    pub pending_seconds: Option<u64>,
}

/// Per-service counts and one word for the list (`GET /services`, the UI's
/// dot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// `in_sync`, `pending`, `rejected`, `offline` or `no_reports`: the worst
    /// state of any instance, in that order of precedence (rejected first).
    pub state: &'static str,
    pub instances: usize,
    pub in_sync: usize,
    pub pending: usize,
    pub rejected: usize,
    pub offline: usize,
    /// The longest wait of a pending instance.
    pub pending_seconds: Option<u64>,
    /// "applied by `in_sync` of `reachable`": instances that are not offline.
    pub reachable: usize,
}

impl Summary {
    /// The summary of these instances.
    pub fn of(views: &[InstanceView]) -> Self {
        let mut s = Summary {
            instances: views.len(),
            ..Default::default()
        };
        for v in views {
            match v.state {
                SyncState::InSync => s.in_sync += 1,
                SyncState::Pending => {
                    s.pending += 1;
                    s.pending_seconds = s.pending_seconds.max(v.pending_seconds);
                }
                SyncState::Rejected => s.rejected += 1,
                SyncState::Offline => s.offline += 1,
            }
        }
        s.reachable = s.instances - s.offline;
        s.state = if s.instances == 0 {
            "no_reports"
        } else if s.rejected > 0 {
            "rejected"
        } else if s.pending > 0 {
            "pending"
        } else if s.offline > 0 {
            "offline"
        } else {
            "in_sync"
        };
        s
    }
}

/// Instances by sync state over every service (the metrics gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub in_sync: u64,
    pub pending: u64,
    pub rejected: u64,
    pub offline: u64,
}

/// The desired config of every service with a stored configuration, from
/// the database (the epoch is the manager's: what the publisher signs).
/// Blocking.
pub fn desired_from_manager(
    m: &config_manager_core::manager::Manager,
) -> Result<HashMap<ServiceName, Desired>, config_manager_core::manager::ManagerError> {
    let epoch = m.epoch().as_str().to_owned();
    Ok(m.store()
        .list_current_versions()?
        .into_iter()
        .filter(|c| c.version >= Version::FIRST)
        .map(|c| {
            (
                c.service,
                Desired {
                    config_epoch: epoch.clone(),
                    version: c.version,
                    updated_at: parse_rfc3339(&c.updated_at).ok(),
                },
            )
        })
        .collect())
}

/// The same from the verified last-known-good cache (read-only fallback).
pub fn desired_from_fallback(
    f: &config_manager_core::manager::FallbackView,
) -> HashMap<ServiceName, Desired> {
    f.list_services()
        .into_iter()
        .filter_map(|service| {
            let d = desired_of_fallback(f, &service)?;
            Some((service, d))
        })
        .collect()
}

/// One service's desired config from the database (`None`: none stored).
pub fn desired_of_manager(
    m: &config_manager_core::manager::Manager,
    service: &ServiceName,
) -> Result<Option<Desired>, config_manager_core::manager::ManagerError> {
    match m.store().get_config(service) {
        Ok(c) => Ok((c.version >= Version::FIRST).then(|| Desired {
            config_epoch: m.epoch().as_str().to_owned(),
            version: c.version,
            updated_at: parse_rfc3339(&c.updated_at).ok(),
        })),
        Err(config_manager_core::store::StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One service's desired config from the last-known-good cache.
pub fn desired_of_fallback(
    f: &config_manager_core::manager::FallbackView,
    service: &ServiceName,
) -> Option<Desired> {
    let e = f
        .get_effective(
            service,
            config_manager_core::manager::SecretView::Omitted,
            false,
        )
        .ok()?;
    Some(Desired {
        config_epoch: f.epoch().as_str().to_owned(),
        version: Some(e.version).filter(|v| *v >= Version::FIRST)?,
        updated_at: parse_rfc3339(&e.updated_at).ok(),
    })
}

fn secs_between(earlier: OffsetDateTime, now: OffsetDateTime) -> u64 {
    u64::try_from((now - earlier).whole_seconds()).unwrap_or(0)
}

pub(super) fn view(
    id: &InstanceId,
    e: &Entry,
    desired: Option<&Desired>,
    now: OffsetDateTime,
) -> InstanceView {
    let r = &e.report;
    let drift = drift_of(r, desired);
    let state = match r.status {
        AppliedStatus::Offline => SyncState::Offline,
        AppliedStatus::Rejected => SyncState::Rejected,
        AppliedStatus::Applied if drift.is_none() => SyncState::InSync,
        AppliedStatus::Applied => SyncState::Pending,
    };
    let pending_seconds = match (state, drift, desired) {
        (SyncState::Pending, Some(Drift::Behind | Drift::OtherEpoch | Drift::Nothing), Some(d)) => {
            d.updated_at.map(|t| secs_between(t, now))
        }
        _ => None,
    };
    InstanceView {
        instance_id: id.clone(),
        state,
        drift,
        status: r.status,
        config_epoch: r.config_epoch.as_ref().map(|e| e.as_str().to_owned()),
        version: r.version,
        reason: r.reason.clone(),
        rejected_version: r.rejected_version,
        applied_at: r.applied_at.clone(),
        client: r.client.clone(),
        pinned: r.pinned.clone().unwrap_or_default(),
        fields: r.fields.clone().unwrap_or_default(),
        received_at: format_rfc3339(e.received_at),
        age_seconds: secs_between(e.received_at, now),
        pending_seconds,
    }
}

/// How what the instance runs differs from `desired` (`None`: it is the same).
fn drift_of(r: &AppliedReport, desired: Option<&Desired>) -> Option<Drift> {
    let Some(d) = desired else {
        return Some(Drift::NoDesired);
    };
    let (Some(epoch), Some(version)) = (&r.config_epoch, r.version) else {
        return Some(Drift::Nothing);
    };
    if !epoch.as_str().eq_ignore_ascii_case(&d.config_epoch) {
        return Some(Drift::OtherEpoch);
    }
    match version.cmp(&d.version) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Less => Some(Drift::Behind),
        std::cmp::Ordering::Greater => Some(Drift::Ahead),
    }
}
