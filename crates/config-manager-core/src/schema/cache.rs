//! What is built from a schema document, kept for the most recently used
//! schemas only: the compiled validator and the derived [`SchemaView`].
//!
//! A compiled `jsonschema` validator and a view (field metadata, defaults)
//! are each several times the size of the document text they come from;
//! keeping both per schema made memory grow with the number of schemas, used
//! or not (the figures are in docs/performance.md, "Fleet scale"). A schema
//! builds each when it is first needed, and the [`SchemaCache`] of the
//! registry holding it keeps them for at most its capacity of schemas (least
//! recently used evicted, validator and view together, in constant time; the
//! service sets it from `CONFIG_SCHEMA_CACHE_SIZE`, default
//! [`DEFAULT_CAPACITY`]). An evicted schema builds them again on its next use
//! (the costs are in docs/performance.md).
//!
//! The cache belongs to a [`super::SchemaRegistry`] (its clones share it), so
//! two registries in one process (tests, tools) do not evict each other's
//! entries. A schema outside any registry keeps its own one entry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hashlink::LruCache;
use jsonschema::Validator;

use super::view::SchemaView;

/// Schemas whose validator and view are kept when nothing else is configured.
pub const DEFAULT_CAPACITY: usize = 256;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The validators and views of the most recently used schemas of one
/// registry (see the module documentation). A linked hash map: lookups,
/// uses and evictions take constant time whatever the capacity.
pub struct SchemaCache {
    lru: Mutex<LruCache<u64, Entry>>,
}

impl Default for SchemaCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl std::fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lru = self.lock();
        f.debug_struct("SchemaCache")
            .field("capacity", &lru.capacity())
            .field("cached", &lru.len())
            .finish()
    }
}

impl SchemaCache {
    /// A cache for at most `capacity` schemas (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            lru: Mutex::new(LruCache::new(capacity.max(1))),
        }
    }

    /// Sets for how many schemas the validator and view are kept (at least
    /// one); evicts the least recently used ones beyond it now.
    pub fn set_capacity(&self, capacity: usize) {
        self.lock().set_capacity(capacity.max(1));
    }

    /// For how many schemas the validator and view are kept.
    pub fn capacity(&self) -> usize {
        self.lock().capacity()
    }

    /// For how many schemas something is cached right now (for tests and
    /// metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map; a panic while it was held cannot leave it inconsistent (each
    /// operation is one call into the map), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, LruCache<u64, Entry>> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What is cached of one schema.
#[derive(Default)]
struct Entry {
    validator: Option<Arc<Validator>>,
    view: Option<Arc<SchemaView>>,
}

/// Which part of an [`Entry`] a lookup is about.
type Part<T> = fn(&mut Entry) -> &mut Option<Arc<T>>;

/// One schema's place in a cache; dropping it (with the schema) drops what
/// was cached for it.
#[derive(Debug)]
pub(super) struct Slot {
    id: u64,
    cache: Arc<SchemaCache>,
}

impl Slot {
    /// A slot in a cache of its own (one entry), until
    /// [`Slot::attach`] moves it into a registry's.
    pub(super) fn new() -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            cache: Arc::new(SchemaCache::new(1)),
        }
    }

    /// Moves this slot, and what is cached for it, into `cache`.
    pub(super) fn attach(&mut self, cache: &Arc<SchemaCache>) {
        if Arc::ptr_eq(&self.cache, cache) {
            return;
        }
        let entry = self.cache.lock().remove(&self.id);
        self.cache = Arc::clone(cache);
        if let Some(entry) = entry {
            self.cache.lock().insert(self.id, entry);
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
        let mut lru = self.cache.lock();
        part(lru.get_mut(&self.id)?).clone()
    }

    /// Stores `value` as this slot's `part` (evicting the least recently
    /// used schema beyond the capacity).
    fn put<T>(&self, part: Part<T>, value: Arc<T>) {
        let mut lru = self.cache.lock();
        if let Some(entry) = lru.get_mut(&self.id) {
            *part(entry) = Some(value);
            return;
        }
        let mut entry = Entry::default();
        *part(&mut entry) = Some(value);
        lru.insert(self.id, entry);
    }

    /// Whether anything is cached for this slot (tests).
    #[cfg(test)]
    pub(super) fn is_cached(&self) -> bool {
        self.cache.lock().contains_key(&self.id)
    }

    /// Drops what is cached for this slot, as an eviction would (tests).
    #[cfg(test)]
    pub(super) fn evict(&self) {
        self.cache.lock().remove(&self.id);
    }

    /// The cache this slot is in (tests).
    #[cfg(test)]
    pub(super) fn cache(&self) -> &Arc<SchemaCache> {
        &self.cache
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let entry = self.cache.lock().remove(&self.id);
        drop(entry);
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

    #[test]
    fn the_cache_is_bounded_and_rebuilds_what_was_evicted() {
        let mut registry = SchemaRegistry::new();
        registry.set_cache_capacity(2);
        for i in 0..5 {
            registry.register(schema(i));
        }
        let cache = registry.cache().clone();
        assert!(cache.len() <= 2, "at most the capacity is kept");
        let schemas: Vec<Arc<ServiceSchema>> = registry.iter().cloned().collect();
        for s in &schemas {
            assert!(s.validate(&json!({"n": 3})).is_ok());
            let errors = s.validate(&json!({"n": 11})).unwrap_err();
            assert_eq!(errors[0].pointer, "/n");
            assert_eq!(s.view().field("n").unwrap().maximum, Some(10.0));
            assert!(cache.len() <= 2);
        }
        // Dropping a schema drops what was cached for it.
        let last = schemas.last().unwrap();
        last.validate(&json!({"n": 1})).unwrap();
        let _ = last.view();
        assert!(last.cache_slot().is_cached());
        drop(schemas);
        drop(registry);
        assert!(cache.is_empty());
    }

    #[test]
    fn the_least_recently_used_schema_is_evicted() {
        let mut registry = SchemaRegistry::new();
        registry.set_cache_capacity(2);
        for i in 0..3 {
            registry.register(schema(i));
        }
        let [a, b, c] = ["svc-0", "svc-1", "svc-2"].map(|n| registry.get(n).unwrap());
        for s in [&a, &b, &c] {
            s.cache_slot().evict();
        }
        let _ = a.view();
        let _ = b.view();
        let _ = a.view(); // a is now the most recently used
        let _ = c.view();
        assert!(a.cache_slot().is_cached());
        assert!(!b.cache_slot().is_cached(), "b was the least recently used");
        assert!(c.cache_slot().is_cached());
        // A smaller capacity evicts at once, oldest first.
        registry.set_cache_capacity(1);
        assert_eq!(registry.cache().len(), 1);
        assert!(c.cache_slot().is_cached());
    }

    #[test]
    fn registering_moves_the_compiled_validator_into_the_registry_cache() {
        let standalone = schema(7);
        assert!(standalone.cache_slot().is_cached(), "compiled when checked");
        assert_eq!(standalone.cache_slot().cache().capacity(), 1);
        let mut registry = SchemaRegistry::new();
        registry.register(standalone);
        let registered = registry.get("svc-7").unwrap();
        assert!(Arc::ptr_eq(
            registered.cache_slot().cache(),
            registry.cache()
        ));
        assert!(registered.cache_slot().is_cached(), "not compiled again");
        // Two registries do not share (or evict from) one cache.
        let other = SchemaRegistry::builtin().unwrap();
        assert!(!Arc::ptr_eq(other.cache(), registry.cache()));
        assert_eq!(other.cache_capacity(), DEFAULT_CAPACITY);
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
        let cache = registry.cache().clone();
        drop(old);
        drop(registry);
        assert!(!cache.lock().contains_key(&old_id));
        assert_eq!(
            new.view().field("volume_percent").unwrap().maximum,
            Some(150.0)
        );
    }
}
