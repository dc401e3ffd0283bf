//! Counters of what happened to received updates, so a service can expose
//! them (metrics, health) and an operator can see rejected messages without
//! reading logs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Shared, thread-safe counters. Cheap to update from the MQTT task.
#[derive(Debug, Default)]
pub struct Counters {
    applied: AtomicU64,
    ignored: AtomicU64,
    reports_published: AtomicU64,
    report_failures: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Updates applied (callback accepted them).
    pub applied: u64,
    /// Re-issues of the applied version, dropped quietly.
    pub ignored: u64,
    /// Applied-state reports handed to the MQTT connection.
    pub reports_published: u64,
    /// Applied-state reports that could not be queued (connection queue
    /// full); config delivery goes on, and the latest report is retried.
    pub report_failures: u64,
    /// Rejected updates by reason label (`bad_signature`, `replay`, …).
    pub rejected: BTreeMap<&'static str, u64>,
}

impl CounterSnapshot {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Rejections with this label (0 if none).
    pub fn rejected(&self, label: &str) -> u64 {
        self.rejected.get(label).copied().unwrap_or(0)
    }
}

impl Counters {
    pub fn record_applied(&self) {
        self.applied.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_ignored(&self) {
        self.ignored.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_report_published(&self) {
        self.reports_published.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_report_failure(&self) {
        self.report_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_rejected(&self, label: &'static str) {
        let mut map = self.rejected.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry(label).or_default() += 1;
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            applied: self.applied.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
            reports_published: self.reports_published.load(Ordering::Relaxed),
            report_failures: self.report_failures.load(Ordering::Relaxed),
            rejected: self
                .rejected
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}
