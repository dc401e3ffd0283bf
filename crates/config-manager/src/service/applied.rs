//! Desired vs applied: the latest applied-state report of every running
//! instance (`contracts/mqtt-applied-state.schema.json`), kept in a bounded
//! map, and the sync state of each instance against the configuration the
//! manager wants it to run.
//!
//! Reports come from the network (`mqtt::applied` feeds them in) and are
//! advisory: the board only shows them. Its cost is bounded whatever a
//! publisher sends:
//! - **memory**: at most `max_per_service` instances per service and
//!   `max_total` in all. A report for a new instance beyond either cap
//!   takes the place of the instance that went offline longest ago (in the
//!   service, or anywhere for the total cap; its retained report is cleared
//!   like a forget, and the eviction counted), so instances that retired
//!   without a forget do not lock new ones out; when none is offline, the
//!   report is dropped and counted (`instance_limit`, `total_limit`).
//!   Services must be
//!   known (a schema or a stored config), so hostile service names cannot add
//!   entries either. Each report is at most 16 KiB before parsing and
//!   less after.
//! - **database writes**: a report only replaces the instance's entry in
//!   memory and marks it dirty; the persistence task writes the dirty entries
//!   in one transaction per interval ([`PERSIST_INTERVAL`]). A flood of
//!   reports from one instance costs one row per interval, not one per
//!   message: coalescing, not a per-instance rate limit, bounds the cost.
//!
//! Sync state of one instance (see [`SyncState`]): `in_sync` when it applied
//! the desired epoch and version; `pending` when it runs something else (an
//! older version, another epoch after a rebuild, or a version *ahead* of the
//! database after a restore, each told apart by [`Drift`]); `rejected` when
//! its last report is a rejection (even when it still runs the desired
//! version: a refused forged message is worth seeing); `offline` after its
//! last-will or clean stop.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use config_manager_core::applied::{
    parse_applied_topic, AppliedReport, AppliedReportError, AppliedStatus, ClientInfo, InstanceId,
};
use config_manager_core::domain::{format_rfc3339, parse_rfc3339, ServiceName};
use config_manager_core::store::{AppliedChange, StoredApplied};
use serde::Serialize;
use time::OffsetDateTime;

/// How often dirty entries are written to the database (and the desired
/// versions the metrics use are refreshed after a change).
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// Default of `CONFIG_APPLIED_MAX_INSTANCES_PER_SERVICE`.
pub const DEFAULT_MAX_PER_SERVICE: usize = 64;

/// Default of `CONFIG_APPLIED_MAX_INSTANCES`.
pub const DEFAULT_MAX_TOTAL: usize = 4096;

/// Pending forget requests waiting for the MQTT task (each clears one
/// retained topic); beyond this, a forget still works but its retained
/// message is left for the next one.
const MAX_CLEAR_REQUESTS: usize = 1024;

/// The caps of the board (settings).
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

/// Why a report was not kept: the `reason` label of the dropped-reports
/// counter (a closed set, so the metric's cardinality is fixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The topic is not `system/config/<service>/applied/<instance_id>` with
    /// valid levels.
    BadTopic,
    /// Over 16 KiB.
    TooLarge,
    /// Not a valid report.
    Invalid,
    /// The payload names another service or instance than its topic.
    TopicMismatch,
    /// The manager knows no such service.
    UnknownService,
    /// A new instance while the service has `max_per_service` already.
    InstanceLimit,
    /// A new instance while the board holds `max_total` already.
    TotalLimit,
    /// A packet over the subscriber's incoming limit: the MQTT library drops
    /// the connection before the topic is known, so it is counted here and
    /// the reconnect backs off.
    OversizedPacket,
}

impl DropReason {
    /// Every reason, for metrics that exist before the first drop.
    pub const ALL: [DropReason; 8] = [
        DropReason::BadTopic,
        DropReason::TooLarge,
        DropReason::Invalid,
        DropReason::TopicMismatch,
        DropReason::UnknownService,
        DropReason::InstanceLimit,
        DropReason::TotalLimit,
        DropReason::OversizedPacket,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BadTopic => "bad_topic",
            DropReason::TooLarge => "too_large",
            DropReason::Invalid => "invalid",
            DropReason::TopicMismatch => "topic_mismatch",
            DropReason::UnknownService => "unknown_service",
            DropReason::InstanceLimit => "instance_limit",
            DropReason::TotalLimit => "total_limit",
            DropReason::OversizedPacket => "oversized_packet",
        }
    }
}

/// What happened to one received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Kept as the instance's latest report.
    Stored,
    /// Kept, in the place of the instance that went offline longest ago
    /// (a cap was reached).
    Evicted,
    /// An empty (retained-clearing) payload removed the instance.
    Cleared,
    Dropped(DropReason),
}

/// One instance's latest report and when it arrived.
#[derive(Debug, Clone)]
struct Entry {
    report: AppliedReport,
    received_at: OffsetDateTime,
}

/// The configuration the manager wants a service to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub config_epoch: String,
    pub version: u64,
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
    pub version: Option<u64>,
    pub reason: Option<String>,
    pub rejected_version: Option<u64>,
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

struct Inner {
    services: BTreeMap<ServiceName, BTreeMap<InstanceId, Entry>>,
    total: usize,
    /// Entries changed (or removed) since the last persist.
    dirty: BTreeSet<(ServiceName, InstanceId)>,
    /// Services the manager knows (schemas and stored configs), refreshed by
    /// the persistence task; `None` until the first refresh (then every
    /// well-formed service name is taken, so nothing is lost at start-up).
    known: Option<BTreeSet<String>>,
    /// The desired config of every service, for the metrics (the REST
    /// endpoints read it fresh).
    desired: HashMap<ServiceName, Desired>,
    /// Retained topics to clear (forgotten instances), for the MQTT task.
    clear_requests: Vec<(ServiceName, InstanceId)>,
}

impl Inner {
    /// The instance (of `service`, or of any service) whose offline report
    /// arrived longest ago.
    fn longest_offline(&self, service: Option<&ServiceName>) -> Option<(ServiceName, InstanceId)> {
        let services: Box<dyn Iterator<Item = (&ServiceName, &BTreeMap<InstanceId, Entry>)>> =
            match service {
                Some(s) => Box::new(self.services.get_key_value(s).into_iter()),
                None => Box::new(self.services.iter()),
            };
        services
            .flat_map(|(s, instances)| instances.iter().map(move |(i, e)| (s, i, e)))
            .filter(|(_, _, e)| e.report.status == AppliedStatus::Offline)
            .min_by_key(|(_, _, e)| e.received_at)
            .map(|(s, i, _)| (s.clone(), i.clone()))
    }

    /// Removes an instance to make room: its row goes at the next persist and
    /// its retained report is cleared (else the broker would hand it back).
    fn evict(&mut self, (service, instance): (ServiceName, InstanceId)) {
        if let Some(instances) = self.services.get_mut(&service) {
            if instances.remove(&instance).is_some() {
                self.total -= 1;
            }
            if instances.is_empty() {
                self.services.remove(&service);
            }
        }
        if self.clear_requests.len() < MAX_CLEAR_REQUESTS {
            self.clear_requests
                .push((service.clone(), instance.clone()));
        }
        self.dirty.insert((service, instance));
    }
}

/// The board. One per process, in the [`AppState`](crate::state::AppState).
pub struct AppliedBoard {
    limits: AppliedLimits,
    inner: Mutex<Inner>,
    /// Set by every committed change: the desired versions must be re-read.
    desired_stale: AtomicBool,
    /// Set when a report named a service outside `known`: re-read the list.
    known_stale: AtomicBool,
    dropped: [AtomicU64; DropReason::ALL.len()],
    accepted: AtomicU64,
    clear_notify: tokio::sync::Notify,
}

impl AppliedBoard {
    pub fn new(limits: AppliedLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner {
                services: BTreeMap::new(),
                total: 0,
                dirty: BTreeSet::new(),
                known: None,
                desired: HashMap::new(),
                clear_requests: Vec::new(),
            }),
            desired_stale: AtomicBool::new(true),
            known_stale: AtomicBool::new(true),
            dropped: Default::default(),
            accepted: AtomicU64::new(0),
            clear_notify: tokio::sync::Notify::new(),
        }
    }

    pub fn limits(&self) -> AppliedLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one MQTT message received on `topic`. Never blocks on I/O.
    pub fn ingest(&self, topic: &str, payload: &[u8]) -> Ingested {
        let outcome = self.ingest_at(topic, payload, OffsetDateTime::now_utc());
        match outcome {
            Ingested::Dropped(reason) => {
                self.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
            }
            Ingested::Stored | Ingested::Evicted | Ingested::Cleared => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
        outcome
    }

    fn ingest_at(&self, topic: &str, payload: &[u8], now: OffsetDateTime) -> Ingested {
        let Some((service, instance)) = parse_applied_topic(topic) else {
            return Ingested::Dropped(DropReason::BadTopic);
        };
        if payload.is_empty() {
            // The retained report was cleared (an operator forgot the
            // instance, or the client retired itself).
            self.remove(&service, &instance);
            return Ingested::Cleared;
        }
        let report = match AppliedReport::parse(payload, &service, &instance) {
            Ok(r) => r,
            Err(AppliedReportError::TooLarge) => return Ingested::Dropped(DropReason::TooLarge),
            Err(AppliedReportError::Invalid(_)) => return Ingested::Dropped(DropReason::Invalid),
            Err(AppliedReportError::TopicMismatch) => {
                return Ingested::Dropped(DropReason::TopicMismatch)
            }
        };
        self.insert(service, instance, report, now, true)
    }

    fn insert(
        &self,
        service: ServiceName,
        instance: InstanceId,
        report: AppliedReport,
        received_at: OffsetDateTime,
        dirty: bool,
    ) -> Ingested {
        let mut inner = self.lock();
        if let Some(known) = &inner.known {
            if !known.contains(service.as_str()) {
                self.known_stale.store(true, Ordering::Relaxed);
                return Ingested::Dropped(DropReason::UnknownService);
            }
        }
        let mut outcome = Ingested::Stored;
        let is_new = !inner
            .services
            .get(&service)
            .is_some_and(|m| m.contains_key(&instance));
        if is_new {
            let in_service = inner.services.get(&service).map_or(0, BTreeMap::len);
            if in_service >= self.limits.max_per_service {
                let Some(oldest) = inner.longest_offline(Some(&service)) else {
                    return Ingested::Dropped(DropReason::InstanceLimit);
                };
                inner.evict(oldest);
                outcome = Ingested::Evicted;
            }
            if inner.total >= self.limits.max_total {
                let Some(oldest) = inner.longest_offline(None) else {
                    return Ingested::Dropped(DropReason::TotalLimit);
                };
                inner.evict(oldest);
                outcome = Ingested::Evicted;
            }
            inner.total += 1;
        }
        inner.services.entry(service.clone()).or_default().insert(
            instance.clone(),
            Entry {
                report,
                received_at,
            },
        );
        if dirty {
            inner.dirty.insert((service, instance));
        }
        if outcome == Ingested::Evicted {
            drop(inner);
            self.clear_notify.notify_one();
        }
        outcome
    }

    /// Removes an instance (empty retained payload, or forgotten by an
    /// operator). Returns whether it was there.
    pub fn remove(&self, service: &ServiceName, instance: &InstanceId) -> bool {
        let mut inner = self.lock();
        let Some(instances) = inner.services.get_mut(service) else {
            return false;
        };
        let removed = instances.remove(instance).is_some();
        if instances.is_empty() {
            inner.services.remove(service);
        }
        if removed {
            inner.total -= 1;
            inner.dirty.insert((service.clone(), instance.clone()));
        }
        removed
    }

    /// Forgets an instance and asks the MQTT task to clear its retained
    /// report (else the broker would hand it back on the next subscribe).
    pub fn forget(&self, service: &ServiceName, instance: &InstanceId) -> bool {
        let removed = self.remove(service, instance);
        let mut inner = self.lock();
        if inner.clear_requests.len() < MAX_CLEAR_REQUESTS {
            inner
                .clear_requests
                .push((service.clone(), instance.clone()));
        }
        drop(inner);
        self.clear_notify.notify_one();
        removed
    }

    /// Waits until a forget asks for a retained topic to be cleared.
    pub async fn clear_requested(&self) {
        self.clear_notify.notified().await;
    }

    /// The retained topics to clear, taken.
    pub fn take_clear_requests(&self) -> Vec<(ServiceName, InstanceId)> {
        std::mem::take(&mut self.lock().clear_requests)
    }

    /// Loads the reports persisted by an earlier run (validated again; rows
    /// that do not parse any more are skipped). Not marked dirty.
    pub fn load(&self, rows: Vec<StoredApplied>) -> usize {
        let mut loaded = 0;
        for row in rows {
            let Ok(service) = ServiceName::parse(&row.service) else {
                continue;
            };
            let Ok(instance) = InstanceId::parse(&row.instance_id) else {
                continue;
            };
            let Ok(report) = AppliedReport::parse(row.report.as_bytes(), &service, &instance)
            else {
                continue;
            };
            let received_at =
                parse_rfc3339(&row.received_at).unwrap_or_else(|_| OffsetDateTime::now_utc());
            if matches!(
                self.insert(service, instance, report, received_at, false),
                Ingested::Stored | Ingested::Evicted
            ) {
                loaded += 1;
            }
        }
        loaded
    }

    /// The dirty entries as database changes, taken (put them back with
    /// [`AppliedBoard::mark_dirty`] when the write fails).
    pub fn take_dirty(&self) -> Vec<AppliedChange> {
        let mut inner = self.lock();
        let dirty = std::mem::take(&mut inner.dirty);
        dirty
            .into_iter()
            .map(|(service, instance)| {
                match inner.services.get(&service).and_then(|m| m.get(&instance)) {
                    Some(e) => AppliedChange::Upsert(StoredApplied {
                        service: service.to_string(),
                        instance_id: instance.to_string(),
                        report: e.report.to_json(),
                        received_at: format_rfc3339(e.received_at),
                    }),
                    None => AppliedChange::Remove {
                        service: service.to_string(),
                        instance_id: instance.to_string(),
                    },
                }
            })
            .collect()
    }

    /// Marks the entries of a failed write dirty again.
    pub fn mark_dirty(&self, changes: &[AppliedChange]) {
        let mut inner = self.lock();
        for change in changes {
            let (service, instance) = match change {
                AppliedChange::Upsert(s) => (&s.service, &s.instance_id),
                AppliedChange::Remove {
                    service,
                    instance_id,
                } => (service, instance_id),
            };
            if let (Ok(s), Ok(i)) = (ServiceName::parse(service), InstanceId::parse(instance)) {
                inner.dirty.insert((s, i));
            }
        }
    }

    /// Whether the known-services list should be re-read.
    pub fn known_stale(&self) -> bool {
        self.known_stale.swap(false, Ordering::Relaxed)
    }

    /// Sets the services reports are accepted for.
    pub fn set_known(&self, services: impl IntoIterator<Item = String>) {
        self.lock().known = Some(services.into_iter().collect());
    }

    /// Services that just got a schema or a stored config: known from now on,
    /// so a client that registers its schema and reports right after is not
    /// dropped while the list waits for its next refresh.
    pub fn add_known(&self, services: &[String]) {
        if let Some(known) = &mut self.lock().known {
            known.extend(services.iter().cloned());
        }
    }

    /// A committed change: the desired versions must be re-read.
    pub fn desired_changed(&self) {
        self.desired_stale.store(true, Ordering::Relaxed);
        self.known_stale.store(true, Ordering::Relaxed);
    }

    /// Whether the desired versions should be re-read (and clears the flag).
    pub fn take_desired_stale(&self) -> bool {
        self.desired_stale.swap(false, Ordering::Relaxed)
    }

    /// Sets the desired configs the metrics compare with.
    pub fn set_desired(&self, desired: HashMap<ServiceName, Desired>) {
        self.lock().desired = desired;
    }

    /// The instances of `service` against `desired`, by instance id.
    pub fn instances(&self, service: &ServiceName, desired: Option<&Desired>) -> Vec<InstanceView> {
        let now = OffsetDateTime::now_utc();
        let inner = self.lock();
        inner
            .services
            .get(service)
            .map(|m| m.iter().map(|(id, e)| view(id, e, desired, now)).collect())
            .unwrap_or_default()
    }

    /// The summary of `service` against `desired`.
    pub fn summary(&self, service: &ServiceName, desired: Option<&Desired>) -> Summary {
        Summary::of(&self.instances(service, desired))
    }

    /// Instances by state over every service, against the cached desired
    /// configs (refreshed within [`PERSIST_INTERVAL`] of a change).
    pub fn totals(&self) -> Totals {
        let now = OffsetDateTime::now_utc();
        let inner = self.lock();
        let mut t = Totals::default();
        for (service, instances) in &inner.services {
            let desired = inner.desired.get(service);
            for (id, e) in instances {
                match view(id, e, desired, now).state {
                    SyncState::InSync => t.in_sync += 1,
                    SyncState::Pending => t.pending += 1,
                    SyncState::Rejected => t.rejected += 1,
                    SyncState::Offline => t.offline += 1,
                }
            }
        }
        t
    }

    /// Counts a report dropped before [`Self::ingest`] could see it.
    pub fn note_dropped(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Reports dropped, by reason.
    pub fn dropped(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.dropped[*r as usize].load(Ordering::Relaxed)))
            .collect()
    }

    /// Reports kept (or clearing payloads taken).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Instances held in memory.
    pub fn len(&self) -> usize {
        self.lock().total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
        .filter_map(|c| {
            Some((
                ServiceName::parse(&c.service).ok()?,
                Desired {
                    config_epoch: epoch.clone(),
                    version: u64::try_from(c.version).ok().filter(|v| *v >= 1)?,
                    updated_at: parse_rfc3339(&c.updated_at).ok(),
                },
            ))
        })
        .collect())
}

/// The same from the verified last-known-good cache (read-only fallback).
pub fn desired_from_fallback(
    f: &config_manager_core::manager::FallbackView,
) -> HashMap<ServiceName, Desired> {
    f.list_services()
        .iter()
        .filter_map(|name| {
            let service = ServiceName::parse(name).ok()?;
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
        Ok(c) => Ok(u64::try_from(c.version)
            .ok()
            .filter(|v| *v >= 1)
            .map(|version| Desired {
                config_epoch: m.epoch().as_str().to_owned(),
                version,
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
        version: u64::try_from(e.version).ok().filter(|v| *v >= 1)?,
        updated_at: parse_rfc3339(&e.updated_at).ok(),
    })
}

fn secs_between(earlier: OffsetDateTime, now: OffsetDateTime) -> u64 {
    u64::try_from((now - earlier).whole_seconds()).unwrap_or(0)
}

fn view(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    const EPOCH: &str = "550e8400-e29b-41d4-a716-446655440000";

    fn report(instance: &str, status: &str, version: Option<u64>) -> Vec<u8> {
        let mut v = json!({
            "service": "tts-worker",
            "instance_id": instance,
            "config_epoch": version.map(|_| EPOCH),
            "version": version,
            "status": status,
            "reason": null,
            "rejected_version": null,
            "applied_at": version.map(|_| "2026-01-15T09:30:00.120Z"),
            "client": {"name": "config-manager-client", "version": "0.1.0"},
        });
        if status == "rejected" {
            v["reason"] = json!("bad_signature");
            v["rejected_version"] = json!(9);
        }
        v.to_string().into_bytes()
    }

    fn topic(instance: &str) -> String {
        format!("system/config/tts-worker/applied/{instance}")
    }

    fn desired(version: u64) -> Desired {
        Desired {
            config_epoch: EPOCH.into(),
            version,
            updated_at: Some(OffsetDateTime::now_utc() - time::Duration::seconds(5)),
        }
    }

    fn svc() -> ServiceName {
        ServiceName::parse("tts-worker").unwrap()
    }

    #[test]
    fn states_against_the_desired_version() {
        let board = AppliedBoard::new(AppliedLimits::default());
        for (id, status, v) in [
            ("a", "applied", Some(3)),
            ("b", "applied", Some(2)),
            ("c", "rejected", Some(3)),
            ("d", "offline", Some(3)),
            ("e", "applied", Some(4)),
        ] {
            assert_eq!(
                board.ingest(&topic(id), &report(id, status, v)),
                Ingested::Stored
            );
        }
        let views = board.instances(&svc(), Some(&desired(3)));
        let states: Vec<_> = views.iter().map(|v| (v.state, v.drift)).collect();
        assert_eq!(
            states,
            [
                (SyncState::InSync, None),
                (SyncState::Pending, Some(Drift::Behind)),
                (SyncState::Rejected, None),
                (SyncState::Offline, None),
                (SyncState::Pending, Some(Drift::Ahead)),
            ]
        );
        assert!(views[1].pending_seconds.unwrap() >= 5);
        assert_eq!(views[4].pending_seconds, None);
        let s = board.summary(&svc(), Some(&desired(3)));
        assert_eq!(
            (
                s.state,
                s.in_sync,
                s.pending,
                s.rejected,
                s.offline,
                s.reachable
            ),
            ("rejected", 1, 2, 1, 1, 4)
        );
        let other_epoch = Desired {
            config_epoch: "00000000-0000-4000-8000-000000000000".into(),
            ..desired(3)
        };
        assert_eq!(
            board.instances(&svc(), Some(&other_epoch))[0].drift,
            Some(Drift::OtherEpoch)
        );
        assert_eq!(board.summary(&svc(), None).pending, 3);
        let none = ServiceName::parse("stt-worker").unwrap();
        assert_eq!(board.summary(&none, None).state, "no_reports");
    }

    #[test]
    fn bad_input_is_dropped_and_counted() {
        let board = AppliedBoard::new(AppliedLimits::default());
        board.set_known(["tts-worker".to_owned()]);
        let drop = |t: &str, p: &[u8]| match board.ingest(t, p) {
            Ingested::Dropped(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            drop("system/config/tts-worker/applied", b"{}"),
            DropReason::BadTopic
        );
        assert_eq!(drop(&topic("a"), &vec![b' '; 20_000]), DropReason::TooLarge);
        assert_eq!(drop(&topic("a"), b"{nope"), DropReason::Invalid);
        assert_eq!(
            drop(&topic("b"), &report("a", "applied", Some(1))),
            DropReason::TopicMismatch
        );
        let other = String::from_utf8(report("a", "applied", Some(1)))
            .unwrap()
            .replace("tts-worker", "ghost");
        assert_eq!(
            drop("system/config/ghost/applied/a", other.as_bytes()),
            DropReason::UnknownService
        );
        assert!(board.is_empty());
        let counted: u64 = board.dropped().iter().map(|(_, n)| n).sum();
        assert_eq!(counted, 5);
        // A service that just got a schema is known at once.
        board.add_known(&["ghost".to_owned()]);
        assert_eq!(
            board.ingest("system/config/ghost/applied/a", other.as_bytes()),
            Ingested::Stored
        );
    }

    #[test]
    fn caps_bound_memory_and_empty_payload_clears() {
        let board = AppliedBoard::new(AppliedLimits {
            max_per_service: 3,
            max_total: 1000,
        });
        for i in 0..10 {
            let id = format!("i{i}");
            board.ingest(&topic(&id), &report(&id, "applied", Some(1)));
        }
        assert_eq!(board.len(), 3);
        assert_eq!(board.dropped()[DropReason::InstanceLimit as usize].1, 7);
        // An existing instance still updates at the cap.
        assert_eq!(
            board.ingest(&topic("i0"), &report("i0", "applied", Some(2))),
            Ingested::Stored
        );
        assert_eq!(board.ingest(&topic("i0"), b""), Ingested::Cleared);
        assert_eq!(board.len(), 2);
        let changes = board.take_dirty();
        assert_eq!(changes.len(), 3);
        assert!(changes.iter().any(
            |c| matches!(c, AppliedChange::Remove { instance_id, .. } if instance_id == "i0")
        ));
        assert!(board.take_dirty().is_empty());

        let tight = AppliedBoard::new(AppliedLimits {
            max_per_service: 10,
            max_total: 1,
        });
        tight.ingest(&topic("a"), &report("a", "applied", Some(1)));
        assert_eq!(
            tight.ingest(&topic("b"), &report("b", "applied", Some(1))),
            Ingested::Dropped(DropReason::TotalLimit)
        );
    }

    #[test]
    fn a_full_service_makes_room_by_evicting_the_longest_offline_instance() {
        let board = AppliedBoard::new(AppliedLimits {
            max_per_service: 3,
            max_total: 1000,
        });
        let t0 = OffsetDateTime::now_utc();
        let at = |secs: i64| t0 + time::Duration::seconds(secs);
        let put = |id: &str, status: &str, secs: i64| {
            board.ingest_at(&topic(id), &report(id, status, Some(1)), at(secs))
        };
        assert_eq!(put("old-off", "offline", 0), Ingested::Stored);
        assert_eq!(put("live", "applied", 1), Ingested::Stored);
        assert_eq!(put("new-off", "offline", 2), Ingested::Stored);
        board.take_dirty();
        board.take_clear_requests();

        // Full: the instance offline the longest goes, the newer one stays.
        assert_eq!(put("fresh", "applied", 3), Ingested::Evicted);
        let ids = |b: &AppliedBoard| -> Vec<String> {
            b.instances(&svc(), None)
                .iter()
                .map(|v| v.instance_id.to_string())
                .collect()
        };
        assert_eq!(ids(&board), ["fresh", "live", "new-off"]);
        assert_eq!(board.len(), 3);
        // Its row is removed at the next persist and its retained report cleared.
        let changes = board.take_dirty();
        assert!(changes.iter().any(
            |c| matches!(c, AppliedChange::Remove { instance_id, .. } if instance_id == "old-off")
        ));
        let cleared: Vec<String> = board
            .take_clear_requests()
            .iter()
            .map(|(_, i)| i.to_string())
            .collect();
        assert_eq!(cleared, ["old-off"]);

        assert_eq!(put("fresh2", "applied", 4), Ingested::Evicted);
        assert_eq!(ids(&board), ["fresh", "fresh2", "live"]);
        // No instance offline any more: a new one is dropped, as before.
        assert_eq!(
            put("fresh3", "applied", 5),
            Ingested::Dropped(DropReason::InstanceLimit)
        );
        assert_eq!(ids(&board), ["fresh", "fresh2", "live"]);
    }

    #[test]
    fn a_full_board_evicts_the_longest_offline_instance_of_any_service() {
        let board = AppliedBoard::new(AppliedLimits {
            max_per_service: 10,
            max_total: 2,
        });
        let t0 = OffsetDateTime::now_utc();
        let other = String::from_utf8(report("x", "offline", Some(1)))
            .unwrap()
            .replace("tts-worker", "stt-worker");
        assert_eq!(
            board.ingest_at("system/config/stt-worker/applied/x", other.as_bytes(), t0),
            Ingested::Stored
        );
        assert_eq!(
            board.ingest_at(
                &topic("a"),
                &report("a", "applied", Some(1)),
                t0 + time::Duration::seconds(1)
            ),
            Ingested::Stored
        );
        assert_eq!(
            board.ingest(&topic("b"), &report("b", "applied", Some(1))),
            Ingested::Evicted
        );
        let stt = ServiceName::parse("stt-worker").unwrap();
        assert!(board.instances(&stt, None).is_empty());
        assert_eq!(board.instances(&svc(), None).len(), 2);
        assert_eq!(
            board.ingest(&topic("c"), &report("c", "applied", Some(1))),
            Ingested::Dropped(DropReason::TotalLimit)
        );
        assert_eq!(board.len(), 2);
    }

    #[test]
    fn persisted_rows_load_back() {
        let board = AppliedBoard::new(AppliedLimits::default());
        board.ingest(&topic("a"), &report("a", "rejected", Some(3)));
        let changes = board.take_dirty();
        let rows: Vec<StoredApplied> = changes
            .into_iter()
            .filter_map(|c| match c {
                AppliedChange::Upsert(s) => Some(s),
                AppliedChange::Remove { .. } => None,
            })
            .chain([StoredApplied {
                service: "tts-worker".into(),
                instance_id: "broken".into(),
                report: "{}".into(),
                received_at: "x".into(),
            }])
            .collect();
        let again = AppliedBoard::new(AppliedLimits::default());
        assert_eq!(again.load(rows), 1);
        let v = &again.instances(&svc(), Some(&desired(3)))[0];
        assert_eq!(
            (v.state, v.reason.as_deref()),
            (SyncState::Rejected, Some("bad_signature"))
        );
        assert!(again.take_dirty().is_empty());
    }
}
