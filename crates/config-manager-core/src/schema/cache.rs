//! What is built from a schema document, kept for the most recently used
//! schemas only: the compiled validator and the derived [`SchemaView`].
//!
//! A compiled `jsonschema` validator and a view (field metadata, defaults)
//! are each several times the size of the document text they come from;
//! keeping both per schema made memory grow with the number of schemas, used
//! or not (the figures are in docs/performance.md, "Fleet scale"). A schema
//! builds each when it is first needed, and this process-wide cache keeps
//! them for at most [`capacity`] schemas (least recently used evicted,
//! validator and view together; the service sets it from
//! `CONFIG_SCHEMA_CACHE_SIZE`, default [`DEFAULT_CAPACITY`]). An evicted
//! schema builds them again on its next use (the costs are in
//! docs/performance.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jsonschema::Validator;

use super::view::SchemaView;

/// Schemas whose validator and view are kept when nothing else is configured.
pub const DEFAULT_CAPACITY: usize = 256;

static CAPACITY: AtomicUsize = AtomicUsize::new(DEFAULT_CAPACITY);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static CACHE: Mutex<Option<Lru>> = Mutex::new(None);

/// Sets for how many schemas the validator and view are kept (at least
/// one); evicts the least recently used ones beyond it now.
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

/// For how many schemas the validator and view are kept.
pub fn capacity() -> usize {
    CAPACITY.load(Ordering::Relaxed)
}

/// For how many schemas something is cached right now (for tests and
/// metrics).
pub fn compiled() -> usize {
    CACHE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map_or(0, |lru| lru.map.len())
}

/// What is cached of one schema.
#[derive(Default)]
struct Entry {
    validator: Option<Arc<Validator>>,
    view: Option<Arc<SchemaView>>,
    /// The tick of the last use.
    used: u64,
}

#[derive(Default)]
struct Lru {
    tick: u64,
    /// Slot id → entry.
    map: HashMap<u64, Entry>,
}

impl Lru {
    fn evict_oldest(&mut self) {
        if let Some(oldest) = self
            .map
            .iter()
            .min_by_key(|(_, entry)| entry.used)
            .map(|(id, _)| *id)
        {
            self.map.remove(&oldest);
        }
    }
}

/// Which part of an [`Entry`] a lookup is about.
type Part<T> = fn(&mut Entry) -> &mut Option<Arc<T>>;

/// One schema's place in the cache; dropping it (with the schema) drops what
/// was cached for it.
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
    pub(super) fn validator<E>(
        &self,
        compile: impl FnOnce() -> Result<Validator, E>,
    ) -> Result<Arc<Validator>, E> {
        let part: Part<Validator> = |e| &mut e.validator;
        if let Some(validator) = self.cached(part) {
            return Ok(validator);
        }
        let validator = Arc::new(compile()?);
        self.put(part, validator.clone());
        Ok(validator)
    }

    /// Caches `validator` for this slot (evicting beyond the capacity).
    pub(super) fn put_validator(&self, validator: Arc<Validator>) {
        self.put(|e| &mut e.validator, validator);
    }

    /// The slot's view, derived by `derive` when it is not cached (outside
    /// the lock, like [`Slot::validator`]).
    pub(super) fn view(&self, derive: impl FnOnce() -> SchemaView) -> Arc<SchemaView> {
        let part: Part<SchemaView> = |e| &mut e.view;
        if let Some(view) = self.cached(part) {
            return view;
        }
        let view = Arc::new(derive());
        self.put(part, view.clone());
        view
    }

    /// The cached `part`, if any; a hit counts as a use of the slot.
    fn cached<T>(&self, part: Part<T>) -> Option<Arc<T>> {
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let lru = cache.get_or_insert_with(Lru::default);
        lru.tick += 1;
        let tick = lru.tick;
        let entry = lru.map.get_mut(&self.id)?;
        let found = part(entry).clone()?;
        entry.used = tick;
        Some(found)
    }

    /// Stores `value` as this slot's `part` (evicting beyond the capacity).
    fn put<T>(&self, part: Part<T>, value: Arc<T>) {
        let capacity = capacity();
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let lru = cache.get_or_insert_with(Lru::default);
        lru.tick += 1;
        let tick = lru.tick;
        let entry = lru.map.entry(self.id).or_default();
        *part(entry) = Some(value);
        entry.used = tick;
        while lru.map.len() > capacity {
            lru.evict_oldest();
        }
    }

    /// Whether anything is cached for this slot (tests).
    #[cfg(test)]
    pub(super) fn is_cached(&self) -> bool {
        CACHE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|lru| lru.map.contains_key(&self.id))
    }

    /// Drops what is cached for this slot, as an eviction would (tests).
    #[cfg(test)]
    pub(super) fn evict(&self) {
        if let Some(lru) = CACHE.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            lru.map.remove(&self.id);
        }
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

    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::domain::ServiceName;
    use crate::schema::{SchemaRegistry, ServiceSchema};

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
    /// tests only ever see validators and views built again, never wrong
    /// answers.
    #[test]
    fn the_cache_is_bounded_and_rebuilds_what_was_evicted() {
        set_capacity(2);
        let schemas: Vec<ServiceSchema> = (0..5).map(schema).collect();
        assert!(compiled() <= 2, "at most the capacity is kept");
        for s in &schemas {
            assert!(s.validate(&json!({"n": 3})).is_ok());
            let errors = s.validate(&json!({"n": 11})).unwrap_err();
            assert_eq!(errors[0].pointer, "/n");
            assert_eq!(s.view().field("n").unwrap().maximum, Some(10.0));
            assert!(compiled() <= 2);
        }
        // Dropping a schema drops what was cached for it.
        let last = schemas.last().unwrap();
        last.validate(&json!({"n": 1})).unwrap();
        let _ = last.view();
        let slot_id = last.cache_slot().id;
        drop(schemas);
        assert!(!CACHE
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|lru| lru.map.contains_key(&slot_id)));
        set_capacity(DEFAULT_CAPACITY);
    }

    #[test]
    fn an_evicted_view_is_derived_again_the_same() {
        let registry = SchemaRegistry::builtin().unwrap();
        for schema in registry.iter() {
            let before = schema.view();
            schema.cache_slot().evict();
            assert!(!schema.cache_slot().is_cached());
            let after = schema.view();
            assert!(!Arc::ptr_eq(&before, &after), "derived again");
            assert_eq!(before, after, "{}", schema.name());
        }
    }

    #[test]
    fn a_schema_change_replaces_the_view() {
        let mut registry = SchemaRegistry::builtin().unwrap();
        let old = registry.get("tts-worker").unwrap();
        assert_eq!(
            old.view().field("volume_percent").unwrap().maximum,
            Some(200.0)
        );
        let mut doc = old.document();
        doc["properties"]["volume_percent"]["maximum"] = json!(150);
        let name = old.name().clone();
        registry.register(ServiceSchema::compile(name, doc).unwrap());
        let new = registry.get("tts-worker").unwrap();
        assert_eq!(
            new.view().field("volume_percent").unwrap().maximum,
            Some(150.0)
        );
        // The old schema still answers as it was until it is dropped, and
        // what was cached for it goes with it.
        assert_eq!(
            old.view().field("volume_percent").unwrap().maximum,
            Some(200.0)
        );
        let old_id = old.cache_slot().id;
        drop(old);
        drop(registry);
        assert!(!CACHE
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|lru| lru.map.contains_key(&old_id)));
        assert_eq!(
            new.view().field("volume_percent").unwrap().maximum,
            Some(150.0)
        );
    }
}
