//! The change queue between the HTTP layer and the publisher.
//!
//! It holds *names*, not payloads: the publisher reads a service's config when
//! it publishes, so ten writes to one service during an outage cost one set
//! entry and produce one message carrying the latest version. Memory is
//! bounded by the number of services; past [`MAX_PENDING`] distinct names
//! (only possible with unknown services allowed) the queue collapses into
//! "republish everything", which is always correct.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use config_manager_core::domain::ServiceName;
use tokio::sync::Notify;

use crate::state::ChangeSink;

/// Distinct service names held before the queue switches to "all".
pub const MAX_PENDING: usize = 4096;

/// What the publisher should publish next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// These services (in name order).
    Services(Vec<ServiceName>),
    /// Every service.
    All,
}

#[derive(Debug, Default)]
struct Dirty {
    services: BTreeSet<ServiceName>,
    all: bool,
}

/// Services whose config changed since the publisher last looked; the
/// [`ChangeSink`] of a configured publisher. Marking never blocks on the
/// broker: it takes a short lock and wakes the publisher.
#[derive(Debug, Default)]
pub struct ChangeQueue {
    dirty: Mutex<Dirty>,
    notify: Notify,
}

impl ChangeQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `services` changed and wakes the publisher.
    pub fn mark(&self, services: impl IntoIterator<Item = ServiceName>) {
        {
            let mut dirty = self.lock();
            if !dirty.all {
                dirty.services.extend(services);
                if dirty.services.len() > MAX_PENDING {
                    dirty.services.clear();
                    dirty.all = true;
                }
            }
        }
        self.notify.notify_one();
    }

    /// Records that every service needs publishing (a failed listing).
    pub fn mark_all(&self) {
        {
            let mut dirty = self.lock();
            dirty.services.clear();
            dirty.all = true;
        }
        self.notify.notify_one();
    }

    /// Takes everything marked so far (`None` when nothing is).
    pub fn take(&self) -> Option<Pending> {
        let mut dirty = self.lock();
        if std::mem::take(&mut dirty.all) {
            dirty.services.clear();
            return Some(Pending::All);
        }
        if dirty.services.is_empty() {
            return None;
        }
        Some(Pending::Services(
            std::mem::take(&mut dirty.services).into_iter().collect(),
        ))
    }

    /// Forgets everything marked: a full republish is about to cover it.
    pub fn clear(&self) {
        let mut dirty = self.lock();
        dirty.services.clear();
        dirty.all = false;
    }

    /// Resolves after the next [`ChangeQueue::mark`] (or at once if one
    /// happened since the last wake-up).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// The lock is only held for set operations that cannot panic, so a
    /// poisoned lock still holds a consistent set.
    fn lock(&self) -> MutexGuard<'_, Dirty> {
        self.dirty.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ChangeSink for ChangeQueue {
    fn configs_changed(&self, services: &[ServiceName]) {
        self.mark(services.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServiceName {
        ServiceName::parse(s).unwrap()
    }

    #[test]
    fn coalesces_repeated_changes_per_service() {
        let q = ChangeQueue::new();
        for _ in 0..1000 {
            q.configs_changed(&[name("tts-worker"), name("router")]);
        }
        assert_eq!(
            q.take(),
            Some(Pending::Services(vec![name("router"), name("tts-worker")]))
        );
        assert_eq!(q.take(), None);
    }

    #[test]
    fn too_many_names_collapse_into_all() {
        let q = ChangeQueue::new();
        q.mark((0..=MAX_PENDING).map(|i| name(&format!("svc-{i}"))));
        q.mark([name("router")]);
        assert_eq!(q.take(), Some(Pending::All));
        assert_eq!(q.take(), None);
    }

    #[test]
    fn clear_forgets_pending_changes() {
        // (A change notice carries `ServiceName`s: an invalid name cannot
        // reach the queue at all.)
        let q = ChangeQueue::new();
        q.configs_changed(&[name("tts-worker")]);
        q.clear();
        assert_eq!(q.take(), None);
    }

    #[tokio::test]
    async fn marking_wakes_a_waiter_even_if_it_came_first() {
        let q = std::sync::Arc::new(ChangeQueue::new());
        q.mark([name("router")]);
        tokio::time::timeout(std::time::Duration::from_secs(1), q.notified())
            .await
            .expect("stored wake-up");
    }
}
