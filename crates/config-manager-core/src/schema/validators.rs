//! Compiled validators, kept for the most recently used schemas only.
//!
//! A compiled `jsonschema` validator of a 50-field schema takes ~110 KiB;
//! keeping one per schema made memory grow with the number of schemas (250
//! MiB at 1,000 services, docs/performance.md). A schema compiles its
//! validator when it is first needed, and this process-wide cache keeps at
//! most [`capacity`] of them (least recently used evicted; the service sets it
//! from `CONFIG_SCHEMA_CACHE_SIZE`, default [`DEFAULT_CAPACITY`]). An evicted
//! validator is compiled again on its next use (its cost is in
//! docs/performance.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jsonschema::Validator;

/// Validators kept when nothing else is configured.
pub const DEFAULT_CAPACITY: usize = 256;

static CAPACITY: AtomicUsize = AtomicUsize::new(DEFAULT_CAPACITY);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static CACHE: Mutex<Option<Lru>> = Mutex::new(None);

/// Sets how many compiled validators are kept (at least one); evicts the
/// least recently used ones beyond it now.
pub fn set_capacity(capacity: usize) {
    let capacity = capacity.max(1);
    CAPACITY.store(capacity, Ordering::Relaxed);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(lru) = cache.as_mut() {
        while lru.map.len() > capacity {
            lru.evict_oldest();
        }
    }
}

/// How many compiled validators are kept.
pub fn capacity() -> usize {
    CAPACITY.load(Ordering::Relaxed)
}

/// How many are compiled right now (for tests and metrics).
pub fn compiled() -> usize {
    CACHE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map_or(0, |lru| lru.map.len())
}

#[derive(Default)]
struct Lru {
    tick: u64,
    /// Schema id → (validator, last use).
    map: HashMap<u64, (Arc<Validator>, u64)>,
}

impl Lru {
    fn evict_oldest(&mut self) {
        if let Some(oldest) = self
            .map
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(id, _)| *id)
        {
            self.map.remove(&oldest);
        }
    }
}

/// One schema's place in the cache; dropping it (with the schema) drops its
/// validator.
#[derive(Debug)]
pub(super) struct Slot {
    id: u64,
}

impl Slot {
    pub(super) fn new() -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The slot's validator, compiled by `compile` when it is not cached.
    /// Compiling runs outside the lock (two threads may both compile the
    /// same schema once; the second result is kept).
    pub(super) fn get_or_compile<E>(
        &self,
        compile: impl FnOnce() -> Result<Validator, E>,
    ) -> Result<Arc<Validator>, E> {
        {
            let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
            let lru = cache.get_or_insert_with(Lru::default);
            lru.tick += 1;
            let tick = lru.tick;
            if let Some((validator, used)) = lru.map.get_mut(&self.id) {
                *used = tick;
                return Ok(validator.clone());
            }
        }
        let validator = Arc::new(compile()?);
        self.put(validator.clone());
        Ok(validator)
    }

    /// Caches `validator` for this slot (evicting beyond the capacity).
    pub(super) fn put(&self, validator: Arc<Validator>) {
        let capacity = capacity();
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let lru = cache.get_or_insert_with(Lru::default);
        lru.tick += 1;
        let tick = lru.tick;
        lru.map.insert(self.id, (validator, tick));
        while lru.map.len() > capacity {
            lru.evict_oldest();
        }
    }

    /// The slot's key in the cache (tests).
    #[cfg(test)]
    pub(super) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lru) = cache.as_mut() {
            lru.map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::domain::ServiceName;
    use crate::schema::ServiceSchema;

    fn schema(i: usize) -> ServiceSchema {
        ServiceSchema::compile(
            ServiceName::parse(&format!("svc-{i}")).unwrap(),
            json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {"n": {"type": "integer", "maximum": 10, "default": 1}}
            }),
        )
        .unwrap()
    }

    /// The only test that changes the capacity (it is process-wide); other
    /// tests only ever see validators compiled again, never wrong answers.
    #[test]
    fn validators_are_bounded_and_compiled_again_when_evicted() {
        set_capacity(2);
        let schemas: Vec<ServiceSchema> = (0..5).map(schema).collect();
        assert!(compiled() <= 2, "at most the capacity is kept");
        for s in &schemas {
            assert!(s.validate(&json!({"n": 3})).is_ok());
            let errors = s.validate(&json!({"n": 11})).unwrap_err();
            assert_eq!(errors[0].pointer, "/n");
            assert!(compiled() <= 2);
        }
        // Dropping a schema drops its validator.
        let last = schemas.last().unwrap();
        last.validate(&json!({"n": 1})).unwrap();
        let slot_id = last.validator_slot_id();
        drop(schemas);
        assert!(!CACHE
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|lru| lru.map.contains_key(&slot_id)));
        set_capacity(DEFAULT_CAPACITY);
    }
}
