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
    parse_applied_topic, AppliedReport, AppliedReportError, AppliedStatus, InstanceId,
};
use config_manager_core::domain::{format_rfc3339, parse_rfc3339, ServiceName};
use config_manager_core::store::{AppliedChange, StoredApplied};
use time::OffsetDateTime;

mod views;
use views::view;
pub use views::{
    desired_from_fallback, desired_from_manager, desired_of_fallback, desired_of_manager, Desired,
    Drift, InstanceView, Summary, SyncState, Totals,
};

/// How often dirty entries are written to the database (and the desired
/// versions the metrics use are refreshed after a change).
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// The board's caps and their defaults are settings (`CONFIG_APPLIED_*`,
/// parsed in `crate::settings::limits`).
pub use crate::settings::limits::{AppliedLimits, DEFAULT_MAX_PER_SERVICE, DEFAULT_MAX_TOTAL};

/// Pending forget requests waiting for the MQTT task (each clears one
/// retained topic); beyond this, a forget still works but its retained
/// message is left for the next one.
const MAX_CLEAR_REQUESTS: usize = 1024;

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

struct Inner {
    services: BTreeMap<ServiceName, BTreeMap<InstanceId, Entry>>,
    total: usize,
    /// Entries changed (or removed) since the last persist.
    dirty: BTreeSet<(ServiceName, InstanceId)>,
    /// Services the manager knows (schemas and stored configs), refreshed by
    /// the persistence task; `None` until the first refresh (then every
    /// well-formed service name is taken, so nothing is lost at start-up).
    known: Option<BTreeSet<ServiceName>>,
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

/// The board. One per process, held by the application state.
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
            if !known.contains(&service) {
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
            let service = row.service;
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
                        service: service.clone(),
                        instance_id: instance.to_string(),
                        report: e.report.to_json(),
                        received_at: format_rfc3339(e.received_at),
                    }),
                    None => AppliedChange::Remove {
                        service: service.clone(),
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
            if let Ok(i) = InstanceId::parse(instance) {
                inner.dirty.insert((service.clone(), i));
            }
        }
    }

    /// Whether the known-services list should be re-read.
    pub fn known_stale(&self) -> bool {
        self.known_stale.swap(false, Ordering::Relaxed)
    }

    /// Sets the services reports are accepted for.
    pub fn set_known(&self, services: impl IntoIterator<Item = ServiceName>) {
        self.lock().known = Some(services.into_iter().collect());
    }

    /// Services that just got a schema or a stored config: known from now on,
    /// so a client that registers its schema and reports right after is not
    /// dropped while the list waits for its next refresh.
    pub fn add_known(&self, services: &[ServiceName]) {
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

#[cfg(test)]
mod tests;
