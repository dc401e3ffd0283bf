//! A cache of serialized effective configurations (masked view), so the hot
//! read path — `GET /services/{service}` — answers without a database round
//! trip or a blocking-pool hop.
//!
//! Consistency: every committed change invalidates the services it touched
//! before the change is acknowledged, and a generation counter stops a reader
//! that read the database before the commit from inserting its (older)
//! result after the invalidation. Mode changes and manager swaps clear it.

use std::collections::HashMap;
use std::sync::RwLock;

use bytes::Bytes;
use config_manager_core::domain::ServiceName;

/// One cached response: the JSON body and its entity tag (the quoted
/// validator text, as the `ETag` header carries it), both shared by
/// reference count, so a hit copies nothing.
#[derive(Clone)]
pub struct Cached {
    pub body: Bytes,
    pub etag: Bytes,
}

/// Default bound of the cached bodies' total size. Six services' answers
/// are a few KiB; at thousands of services the bound, not the service
/// count, sets the cache's memory. Sized to hold every answer of 10,000
/// services of 50 fields: a miss costs several times a hit, and a bound
/// the working set does not fit in turned most GETs into misses.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

#[derive(Default)]
struct Inner {
    generation: u64,
    /// Per service: the answer without and with `include_fields`.
    entries: HashMap<ServiceName, [Option<Cached>; 2]>,
    /// Total length of the cached bodies.
    bytes: usize,
}

/// The cache; keys are `(service, include_fields)`. Bounded by the total
/// size of its bodies: an insert past the bound drops other services'
/// entries (whichever the map yields first: no bookkeeping on the read
/// path, which only takes the read lock), and a body larger than a
/// sixteenth of the bound is not cached at all.
pub struct ReadCache {
    inner: RwLock<Inner>,
    max_bytes: usize,
}

impl Default for ReadCache {
    fn default() -> Self {
        Self::with_max_bytes(DEFAULT_MAX_BYTES)
    }
}

impl ReadCache {
    /// A cache holding at most `max_bytes` of bodies.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        Self {
            inner: RwLock::default(),
            max_bytes,
        }
    }

    /// The current generation; pass it to [`ReadCache::insert`].
    pub fn generation(&self) -> u64 {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }

    pub fn get(&self, service: &ServiceName, include_fields: bool) -> Option<Cached> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .get(service)
            .and_then(|views| views[usize::from(include_fields)].clone())
    }

    /// Inserts unless something was invalidated since `generation` was read.
    pub fn insert(
        &self,
        generation: u64,
        service: &ServiceName,
        include_fields: bool,
        value: Cached,
    ) {
        let size = value.body.len();
        if size > self.max_bytes / 16 {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.generation != generation {
            return;
        }
        let replaced = inner.entries.entry(service.clone()).or_default()
            [usize::from(include_fields)]
        .replace(value);
        inner.bytes = inner.bytes + size - replaced.map_or(0, |c| c.body.len());
        while inner.bytes > self.max_bytes {
            let Some(victim) = inner.entries.keys().find(|s| *s != service).cloned() else {
                break;
            };
            inner.remove(&victim);
        }
    }

    /// Drops the entries of `services`.
    pub fn invalidate(&self, services: &[ServiceName]) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.generation += 1;
        for service in services {
            inner.remove(service);
        }
    }

    /// Drops everything.
    pub fn clear(&self) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.generation += 1;
        inner.entries.clear();
        inner.bytes = 0;
    }

    /// Total length of the cached bodies.
    pub fn bytes(&self) -> usize {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

impl Inner {
    fn remove(&mut self, service: &ServiceName) {
        if let Some(views) = self.entries.remove(service) {
            self.bytes -= views.iter().flatten().map(|c| c.body.len()).sum::<usize>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServiceName {
        ServiceName::parse(s).unwrap()
    }

    fn cached(len: usize) -> Cached {
        Cached {
            body: Bytes::from(vec![b'x'; len]),
            etag: Bytes::from_static(b"\"1\""),
        }
    }

    #[test]
    fn the_size_bound_holds_and_the_inserted_entry_stays() {
        let cache = ReadCache::with_max_bytes(1600);
        for i in 0..40 {
            let g = cache.generation();
            cache.insert(g, &name(&format!("svc-{i}")), false, cached(100));
            assert!(cache.bytes() <= 1600, "{}", cache.bytes());
            assert!(cache.get(&name(&format!("svc-{i}")), false).is_some());
        }
        assert_eq!(cache.bytes(), 1600);
        // Too large for the bound: not cached, nothing else dropped.
        let g = cache.generation();
        cache.insert(g, &name("big"), false, cached(101));
        assert!(cache.get(&name("big"), false).is_none());
        assert_eq!(cache.bytes(), 1600);
    }

    #[test]
    fn replacing_invalidating_and_clearing_keep_the_count_exact() {
        let cache = ReadCache::with_max_bytes(1 << 20);
        let g = cache.generation();
        cache.insert(g, &name("a"), false, cached(10));
        cache.insert(g, &name("a"), true, cached(20));
        cache.insert(g, &name("a"), false, cached(5));
        cache.insert(g, &name("b"), false, cached(7));
        assert_eq!(cache.bytes(), 32);
        cache.invalidate(&[name("a")]);
        assert_eq!(cache.bytes(), 7);
        assert!(cache.get(&name("a"), true).is_none());
        // A read from before the invalidation is not inserted.
        cache.insert(g, &name("a"), false, cached(10));
        assert!(cache.get(&name("a"), false).is_none());
        cache.clear();
        assert_eq!(cache.bytes(), 0);
        assert!(cache.get(&name("b"), false).is_none());
    }
}
