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

use axum::body::Bytes;
use axum::http::HeaderValue;

/// One cached response: body and `ETag`, both shared by reference count, so
/// a hit copies nothing.
#[derive(Clone)]
pub struct Cached {
    pub body: Bytes,
    pub etag: HeaderValue,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    /// Per service: the answer without and with `include_fields`.
    entries: HashMap<String, [Option<Cached>; 2]>,
}

/// The cache; keys are `(service, include_fields)`.
#[derive(Default)]
pub struct ReadCache {
    inner: RwLock<Inner>,
}

impl ReadCache {
    /// The current generation; pass it to [`ReadCache::insert`].
    pub fn generation(&self) -> u64 {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }

    pub fn get(&self, service: &str, include_fields: bool) -> Option<Cached> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .get(service)
            .and_then(|views| views[usize::from(include_fields)].clone())
    }

    /// Inserts unless something was invalidated since `generation` was read.
    pub fn insert(&self, generation: u64, service: &str, include_fields: bool, value: Cached) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.generation == generation {
            inner.entries.entry(service.to_owned()).or_default()[usize::from(include_fields)] =
                Some(value);
        }
    }

    /// Drops the entries of `services`.
    pub fn invalidate(&self, services: &[String]) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.generation += 1;
        inner.entries.retain(|s, _| !services.contains(s));
    }

    /// Drops everything.
    pub fn clear(&self) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.generation += 1;
        inner.entries.clear();
    }
}
