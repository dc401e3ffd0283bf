//! Aggregated auditing of refused requests and failed logins.
//!
//! Why: every refused request used to write its own audit row, so an
//! anonymous client could grow the database (and fill the disk) at the speed
//! of its requests (issue 14, finding 4). Now the first refusal of a kind —
//! the key is (actor, client address, audit action, reason) — within a window
//! (`CONFIG_AUDIT_DENIAL_WINDOW_SECS`) writes one row at once (so it shows in
//! the audit log immediately), and every further one in that window only
//! increments a counter in memory. At the end of the window the row's
//! `detail.count` is updated to the total. So N refusals add at most one row
//! per key and window, and the number of keys per window is capped
//! ([`MAX_KEYS`]; beyond it, refusals are counted under one overflow key).
//!
//! UI logins and logouts that succeed go through the same aggregation (with
//! outcome `ok`): any read-role token can log in, so one row per login let a
//! reader grow the database at the speed of its requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use config_manager_core::audit::{AuditAction, AuditOutcome};
use config_manager_core::domain::now_rfc3339;
use config_manager_core::store::NewAudit;
use serde_json::{json, Value};

/// Most distinct keys per window; refusals beyond it share one overflow row.
pub const MAX_KEYS: usize = 1000;

/// What a refusal is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DenialKey {
    /// Token name, or `anonymous`.
    pub actor: String,
    /// The client's address (`None` when unknown).
    pub source: Option<IpAddr>,
    /// Audit action: `access.denied`, `session.login`, `session.logout`.
    pub action: AuditAction,
    /// Why it was refused (or what happened, for an `ok` outcome).
    pub reason: &'static str,
    /// Audit outcome: `denied`, or `ok` for aggregated session events.
    pub outcome: AuditOutcome,
}

struct Aggregate {
    /// The row written for the first refusal (once the insert returned).
    row_id: Option<i64>,
    count: u64,
    /// Count already in the row.
    written: u64,
    target: Option<String>,
    first_at: String,
    last_at: String,
}

struct Window {
    /// Bumped on every flush, so a late insert does not attach its row id to
    /// the next window's entry.
    generation: u64,
    started: Instant,
    entries: HashMap<DenialKey, Aggregate>,
}

/// The in-memory counters of the current window.
pub struct DenialLog {
    window: Duration,
    current: Mutex<Window>,
}

impl std::fmt::Debug for DenialLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenialLog").finish_non_exhaustive()
    }
}

fn overflow_key(action: AuditAction, outcome: AuditOutcome) -> DenialKey {
    DenialKey {
        actor: "*".into(),
        source: None,
        action,
        reason: "many distinct sources (aggregated)",
        outcome,
    }
}

fn detail(key: &DenialKey, agg: &Aggregate, window: Duration) -> Value {
    json!({
        "reason": key.reason,
        "source": key.source.map(|s| s.to_string()),
        "count": agg.count,
        "first_at": agg.first_at,
        "last_at": agg.last_at,
        "window_seconds": window.as_secs(),
    })
}

fn audit_entry(key: &DenialKey, agg: &Aggregate, window: Duration) -> NewAudit {
    NewAudit {
        actor: key.actor.clone(),
        action: key.action,
        target: agg.target.clone(),
        outcome: key.outcome,
        detail: Some(detail(key, agg, window)),
    }
}

/// A refusal that opened its key's window: its audit row is written now.
pub struct FirstDenial {
    key: DenialKey,
    entry: NewAudit,
    generation: u64,
}

impl FirstDenial {
    /// The audit row to write.
    pub fn entry(&self) -> &NewAudit {
        &self.entry
    }
}

impl DenialLog {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            current: Mutex::new(Window {
                generation: 0,
                started: Instant::now(),
                entries: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // Every change is a single insert or counter update: a poisoned lock
        // leaves consistent data.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one refusal. The first of its key in this window comes back
    /// as a [`FirstDenial`] for the caller to write to the audit log now
    /// (`guard::record_denial`), then to hand to [`DenialLog::first_written`].
    pub fn count(&self, key: DenialKey, target: Option<String>) -> Option<FirstDenial> {
        let now = now_rfc3339();
        let mut w = self.lock();
        let key = if w.entries.contains_key(&key) || w.entries.len() < MAX_KEYS {
            key
        } else {
            overflow_key(key.action, key.outcome)
        };
        match w.entries.get_mut(&key) {
            Some(agg) => {
                agg.count += 1;
                agg.last_at = now;
                None
            }
            None => {
                let agg = Aggregate {
                    row_id: None,
                    count: 1,
                    written: 1,
                    target,
                    first_at: now.clone(),
                    last_at: now,
                };
                let entry = audit_entry(&key, &agg, self.window);
                w.entries.insert(key.clone(), agg);
                Some(FirstDenial {
                    key,
                    entry,
                    generation: w.generation,
                })
            }
        }
    }

    /// Remembers the audit row of a first refusal, so the window's final
    /// count updates it (unless the window ended meanwhile).
    pub fn first_written(&self, first: FirstDenial, row_id: i64) {
        let mut w = self.lock();
        if w.generation == first.generation {
            if let Some(agg) = w.entries.get_mut(&first.key) {
                agg.row_id = Some(row_id);
            }
        }
    }

    /// Whether the current window is over (for the upkeep task).
    pub fn window_over(&self) -> bool {
        self.lock().started.elapsed() >= self.window
    }

    /// Ends the window and starts a new one. Returns the rows to write for
    /// the final counts: an update of the first row where it has an id, else
    /// a new row (its first insert failed or had not returned yet).
    pub fn end_window(&self) -> Vec<(Option<i64>, NewAudit)> {
        let entries = {
            let mut w = self.lock();
            w.generation += 1;
            w.started = Instant::now();
            std::mem::take(&mut w.entries)
        };
        let window = self.window;
        entries
            .into_iter()
            .filter(|(_, agg)| agg.count > agg.written)
            .map(|(key, mut agg)| {
                if agg.row_id.is_none() {
                    // The first row failed or is still on its way: this row
                    // carries the refusals after it.
                    agg.count -= agg.written;
                }
                (agg.row_id, audit_entry(&key, &agg, window))
            })
            .collect()
    }
}
