//! The set of known service schemas: the six built-in TARS schemas, plus any
//! loaded from a directory or registered at run time.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::ServiceName;

use super::cache::SchemaCache;
use super::error::SchemaError;
use super::service_schema::ServiceSchema;

/// Largest schema file [`SchemaRegistry::load_dir`] reads. Real schemas are a
/// few kilobytes; the cap stops a stray large file from eating memory at start-up.
pub const MAX_SCHEMA_FILE_BYTES: u64 = 1024 * 1024;

/// The built-in schemas as `(service name, JSON text)`, compiled into the
/// binary so a fresh install knows the TARS services without any files.
pub const BUILTIN_SCHEMAS: [(&str, &str); 6] = [
    ("llm-worker", include_str!("../../schemas/llm-worker.json")),
    (
        "memory-worker",
        include_str!("../../schemas/memory-worker.json"),
    ),
    ("router", include_str!("../../schemas/router.json")),
    ("stt-worker", include_str!("../../schemas/stt-worker.json")),
    ("tts-worker", include_str!("../../schemas/tts-worker.json")),
    (
        "wake-activation",
        include_str!("../../schemas/wake-activation.json"),
    ),
];

/// All service schemas the manager knows, by service name.
///
/// Cloning is cheap (the map sits behind an `Arc`), so the registry can be part
/// of shared application state; mutation copies the map on write, which leaves
/// clones handed out earlier unchanged.
#[derive(Debug, Clone, Default)]
pub struct SchemaRegistry {
    schemas: Arc<BTreeMap<String, Arc<ServiceSchema>>>,
    /// [`SchemaRegistry::hash`], computed once per set of schemas: every LKG
    /// write records it, and at 1,000 services computing it was half the
    /// cost of a write (docs/performance.md). Reset by every mutation.
    hash: OnceLock<String>,
    /// Schemas loaded by [`SchemaRegistry::load_dir_deferred`] whose
    /// validator-based checks have not run yet, with their files.
    pending: Arc<Vec<(ServiceName, PathBuf)>>,
    /// The validators and views of the most recently used schemas, shared
    /// by this registry's clones (see [`SchemaCache`]).
    cache: Arc<SchemaCache>,
}

impl SchemaRegistry {
    /// An empty registry (for tests and for deployments that load every schema
    /// from a directory).
    pub fn new() -> Self {
        Self::default()
    }

    /// The six TARS services. Fails only if a built-in schema is broken, which
    /// the unit tests rule out; it returns an error rather than panicking so a
    /// broken build still reports cleanly.
    pub fn builtin() -> Result<Self, SchemaError> {
        let mut registry = Self::new();
        for (name, text) in BUILTIN_SCHEMAS {
            let service = ServiceName::parse(name).map_err(|e| {
                SchemaError::invalid(name, format!("bad built-in service name: {e}"))
            })?;
            registry.register(ServiceSchema::from_json_str(service, text)?);
        }
        Ok(registry)
    }

    /// Loads every `*.json` file of `dir` (not recursive; other files are
    /// ignored), the file stem being the service name, and returns the loaded
    /// names in sorted order.
    ///
    /// A file for a service that is already registered replaces it, so a
    /// deployment can ship a newer schema for a built-in service. All files are
    /// checked before any is registered: one bad file fails the call and leaves
    /// the registry unchanged, and the error names that file. A file is refused
    /// when its stem is not a valid [`ServiceName`], it is larger than
    /// [`MAX_SCHEMA_FILE_BYTES`], it is not JSON, or [`ServiceSchema::compile`]
    /// rejects it.
    pub fn load_dir(&mut self, dir: &Path) -> Result<Vec<ServiceName>, SchemaError> {
        self.load_dir_with(dir, true)
    }

    /// [`SchemaRegistry::load_dir`] without compiling: each file gets every
    /// check except the two that need a compiled validator (see
    /// [`ServiceSchema::from_json_str_deferred`]); those are owed until
    /// [`SchemaRegistry::check_pending`]. Start-up then compiles nothing
    /// when the database recorded this very schema set.
    pub fn load_dir_deferred(&mut self, dir: &Path) -> Result<Vec<ServiceName>, SchemaError> {
        self.load_dir_with(dir, false)
    }

    /// Runs the checks [`SchemaRegistry::load_dir_deferred`] left out,
    /// unless `recorded_hash` (the hash the database last recorded) equals
    /// this set's [`SchemaRegistry::hash`]: a hash is recorded only after
    /// every schema of its set passed them (at that start-up, or at
    /// registration), and any change of any schema changes the hash.
    /// Returns how many schemas were checked; an error names the file.
    pub fn check_pending(&mut self, recorded_hash: Option<&str>) -> Result<usize, SchemaError> {
        let pending = std::mem::take(Arc::make_mut(&mut self.pending));
        if pending.is_empty() || recorded_hash == Some(self.hash().as_str()) {
            return Ok(0);
        }
        let checks: Vec<(Arc<ServiceSchema>, &PathBuf)> = pending
            .iter()
            .filter_map(|(name, path)| self.get(name.as_str()).map(|s| (s, path)))
            .collect();
        let results = parallel_map(&checks, |(schema, path)| {
            schema.check().map_err(|source| SchemaError::InFile {
                path: (*path).clone(),
                source: Box::new(source),
            })
        });
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(checks.len())
    }

    /// Schemas whose validator-based checks are still owed.
    pub fn pending_checks(&self) -> usize {
        self.pending.len()
    }

    fn load_dir_with(&mut self, dir: &Path, check: bool) -> Result<Vec<ServiceName>, SchemaError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SchemaError::Io { path, source }
        };
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let path = entry.map_err(io_err(dir))?.path();
            if path.extension().is_some_and(|ext| ext == "json") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();

        // Errors are reported for the first bad file in name order.
        let results = parallel_map(&paths, |p| load_file(p, check));
        let loaded = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        let names = loaded.iter().map(|s| s.name().clone()).collect();
        for schema in loaded {
            self.register(schema);
        }
        if !check {
            Arc::make_mut(&mut self.pending).extend(
                paths
                    .iter()
                    .zip(&names)
                    .map(|(path, name): (&PathBuf, &ServiceName)| (name.clone(), path.clone())),
            );
        }
        Ok(names)
    }

    /// For how many schemas the validator and view are kept (at least one;
    /// the service sets `CONFIG_SCHEMA_CACHE_SIZE`); the least recently used
    /// beyond it are evicted now. Applies to this registry and its clones.
    pub fn set_cache_capacity(&self, capacity: usize) {
        self.cache.set_capacity(capacity);
    }

    /// For how many schemas the validator and view are kept.
    pub fn cache_capacity(&self) -> usize {
        self.cache.capacity()
    }

    /// The cache of this registry's validators and views.
    pub fn cache(&self) -> &Arc<SchemaCache> {
        &self.cache
    }

    /// Adds a schema, replacing any schema of the same service. What is
    /// cached for it moves into this registry's cache.
    pub fn register(&mut self, mut schema: ServiceSchema) {
        schema.attach_cache(&self.cache);
        Arc::make_mut(&mut self.schemas)
            .insert(schema.name().as_str().to_owned(), Arc::new(schema));
        self.hash = OnceLock::new();
    }

    /// Adds a schema for a service that has none yet; fails with
    /// [`SchemaError::Duplicate`] otherwise. For the registration API, where
    /// silently replacing a schema would change what "valid" means for stored
    /// configurations.
    pub fn try_register(&mut self, schema: ServiceSchema) -> Result<(), SchemaError> {
        if self.schemas.contains_key(schema.name().as_str()) {
            return Err(SchemaError::Duplicate(schema.name().to_string()));
        }
        self.register(schema);
        Ok(())
    }

    /// The schema of a service, if known. Takes `&str` so callers can look up
    /// untrusted input without parsing it first.
    pub fn get(&self, name: &str) -> Option<Arc<ServiceSchema>> {
        self.schemas.get(name).cloned()
    }

    /// Whether a service has a schema.
    pub fn contains(&self, name: &str) -> bool {
        self.schemas.contains_key(name)
    }

    /// Known service names, sorted.
    pub fn names(&self) -> Vec<ServiceName> {
        self.schemas.values().map(|s| s.name().clone()).collect()
    }

    /// All schemas, sorted by service name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ServiceSchema>> {
        self.schemas.values()
    }

    /// Number of known services.
    pub fn len(&self) -> usize {
        self.schemas.len()
    }

    /// Whether no service is known.
    pub fn is_empty(&self) -> bool {
        self.schemas.is_empty()
    }

    /// Fingerprint of the whole schema set, stored in the database's
    /// `schema_version` so a changed schema is noticed at start-up.
    ///
    /// SHA-256, lower-case hex, over, for each service in name order: the name,
    /// a newline, the document as compact JSON with object keys sorted at every
    /// level, and a newline. Key order, whitespace and formatting of the files
    /// therefore do not change the hash; any change of content does.
    pub fn hash(&self) -> String {
        self.hash.get_or_init(|| self.compute_hash()).clone()
    }

    fn compute_hash(&self) -> String {
        let mut hasher = Sha256::new();
        for (name, schema) in self.schemas.iter() {
            hasher.update(name.as_bytes());
            hasher.update(b"\n");
            // Already compact with sorted keys (`write_sorted_json`).
            hasher.update(schema.document_text().as_bytes());
            hasher.update(b"\n");
        }
        hex::encode(hasher.finalize())
    }
}

fn load_file(path: &Path, check: bool) -> Result<ServiceSchema, SchemaError> {
    let bad = |reason: String| SchemaError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| bad("the file name is not valid UTF-8".into()))?;
    let name = ServiceName::parse(stem)
        .map_err(|e| bad(format!("the file name is not a valid service name: {e}")))?;

    let io_err = |source| SchemaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(io_err)?;
    let mut text = String::new();
    // Read one byte past the limit so a file that grows after a size check is
    // still caught.
    file.take(MAX_SCHEMA_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => bad("not UTF-8 text".into()),
            _ => io_err(e),
        })?;
    if text.len() as u64 > MAX_SCHEMA_FILE_BYTES {
        return Err(bad(format!(
            "larger than the {MAX_SCHEMA_FILE_BYTES}-byte limit"
        )));
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
        return Err(bad(format!("not valid JSON: {e}")));
    }
    let schema = if check {
        ServiceSchema::from_json_str(name, &text)
    } else {
        ServiceSchema::from_json_str_deferred(name, &text)
    };
    schema.map_err(|source| SchemaError::InFile {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

/// Compact JSON with object keys sorted at every level, independent of whether
/// `serde_json` was built with `preserve_order`.
pub(super) fn write_sorted_json(value: &Value, out: &mut String) {
    let mut bytes = std::mem::take(out).into_bytes();
    write_sorted(value, &mut bytes);
    // Only whole UTF-8 strings and ASCII punctuation were appended.
    *out = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
}

/// [`write_sorted_json`] on bytes: keys and scalars are written by
/// `serde_json` straight into the buffer (going through `Display` and a
/// `String` per key made this most of the cost of loading a schema file).
fn write_sorted(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(key, out);
                out.push(b':');
                write_sorted(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_sorted(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

/// A string or scalar as compact JSON. Serializing a string, number, bool
/// or null into a `Vec` cannot fail (no I/O, no non-string map keys).
fn write_scalar<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, value);
}

/// `f` over `items`, in order. Compiling and checking schemas is CPU-bound
/// (docs/performance.md has the cost), so sets of more than 16 run on every
/// core in contiguous chunks; a panic in a worker is re-raised here.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len() / 16)
        .max(1);
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

#[cfg(test)]
mod sorted_json_tests {
    use super::write_sorted_json;
    use serde_json::json;

    #[test]
    fn sorted_compact_json_escapes_like_serde_json() {
        let doc = json!({
            "z": [1, -2.5, 1e300, true, null, "tab\there \"quoted\" \\ é 🦀 \u{1}"],
            "a": {"y": {}, "b\n": []},
            "m": 18446744073709551615u64,
        });
        let mut out = String::from("prefix:");
        write_sorted_json(&doc, &mut out);
        assert_eq!(
            out,
            format!("prefix:{}", serde_json::to_string(&doc).unwrap_or_default())
        );
        assert!(out.starts_with("prefix:{\"a\":{\"b\\n\":[],\"y\":{}},\"m\":"));
    }
}
