//! The last-known-good (LKG) cache: a file holding every service's effective
//! config, authenticated with HMAC-SHA256, from which the manager serves reads
//! when its database is unusable and from which a rebuild re-seeds a new one.
//! Services can also start from it (the client library) when the manager is
//! down and the file is reachable.
//!
//! ```json
//! {
//!   "format": 1,
//!   "generated_at": "2026-01-15T09:30:00.000Z",
//!   "config_epoch": "550e8400-e29b-41d4-a716-446655440000",
//!   "schema_hash": "…",
//!   "services": { "tts-worker": { "version": 7, "updated_at": "…", "config": {…} } },
//!   "key_id": "lkg-1",
//!   "hmac": "<64 hex>"
//! }
//! ```
//!
//! `hmac` is lowercase hex HMAC-SHA256, under the key named by `key_id`, of the
//! RFC 8785 canonical JSON of the whole document without the `hmac` member. The
//! file itself is pretty-printed for people; only the canonical form is
//! authenticated, so whitespace and member order do not matter.
//!
//! **Secrets never appear in cleartext here.** The caller masks secret fields,
//! or stores their sealed `v1:...` form (see [`crate::crypto::secret_box`]),
//! before building [`LkgContents`]: the file is meant to survive on disk and in
//! backups, and an HMAC protects integrity, not confidentiality.
//!
//! A cache that fails to parse or to verify is never used; the error says which
//! ([`LkgError`]) so health can report `lkg_cache_valid: false` with a reason.
//!
//! # LKG format 2: snapshot + journal
//!
//! Rewriting the whole document after every write made an acknowledged
//! write O(all services) (48 ms at 1,000 services, docs/performance.md).
//! Format 2 keeps the document above unchanged as the **snapshot** (so
//! format-1 readers still read a valid, possibly older, cache) and appends
//! each change to a **journal** beside it (`<path>.journal`,
//! [`journal::journal_path`]): one line per changed service, each sealed
//! with the snapshot's key and binding `seq`, `config_epoch`, `service`,
//! the entry (`version`, `updated_at`, `config`) and `prev`, the MAC of the
//! record before it (the snapshot's `hmac` for the first). An append is one
//! `write` and one fsync; when the journal grows past a bound the writer
//! **compacts**: a new snapshot (temp file, fsync, rename, directory fsync),
//! then the journal is removed. [`LkgCache::read_verified`] verifies the
//! snapshot, then replays the journal over it.
//!
//! What a reader detects without outside state, and what it does:
//!
//! | change to the files | detected by | result |
//! |---|---|---|
//! | a byte of a record altered | its `mac` | whole cache refused ([`LkgError::Journal`], `BadMac`) |
//! | a record deleted, duplicated or moved | `seq` and `prev` | refused (`OutOfSequence` / `ChainBroken`) |
//! | a record replaced by an older record of the same service | `seq`/`prev`, and a version going back | refused |
//! | a record of another journal (other epoch, other snapshot) spliced in | `prev`, `config_epoch` | refused |
//! | a record's service renamed (entries swapped) | its `mac` | refused |
//! | journal sealed with another key | its `mac` | refused |
//! | the unfinished last line of an interrupted append | no final newline | that line ignored (it was never acknowledged) |
//! | a journal whose first record does not extend this snapshot | `prev` of record 1 | journal ignored: left over from a crash during compaction (the new snapshot holds its records), or another file — the same as deleting it |
//! | **the newest records cut off, or snapshot + journal replaced by an older pair of the same epoch** | **not detectable** from the files alone | served as the older state (format 1 had the same limit: replacing the file with an older copy) |
//!
//! The last row is a rollback. With the database up it is repaired at every
//! start (the writer compacts from the database) and by the monitor (which
//! rewrites a cache that fails verification); while the database is down an
//! old-but-authentic cache is what fallback serves, as with format 1.
//! A crash between the database commit and the journal append (the write was
//! not acknowledged) is repaired the same way at the next start.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::fs::atomic::sync_parent_dir;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

pub mod journal;

pub use journal::{journal_path, AppendError, JournalFault, JournalStatus, LkgAppender};

use crate::crypto::canonical::{self, CanonicalError};
use crate::crypto::mac::{MacError, MacKeyRing};
use crate::crypto::KeyId;
use crate::domain::{now_rfc3339, Epoch, ServiceName, Version};

/// The format of the snapshot document (format 2 adds the journal beside it
/// and leaves the snapshot as it was).
pub const LKG_FORMAT: u64 = 1;

/// Why a cache could not be read, verified or written.
#[derive(Debug, Error)]
pub enum LkgError {
    /// No file at the path: normal on first start.
    #[error("no LKG cache at {0}")]
    Missing(PathBuf),
    #[error("cannot access LKG cache {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Not JSON, not an object, no `hmac`/`key_id`, or fields of the wrong type.
    #[error("LKG cache is unparseable: {0}")]
    Unparseable(String),
    #[error("LKG cache has format {0}, this build reads format {LKG_FORMAT}")]
    UnsupportedFormat(u64),
    /// Sealed with a key that is not configured (rotated away, or another host).
    #[error("LKG cache is sealed with HMAC key {0}, which is not configured")]
    UnknownKey(KeyId),
    /// The HMAC does not match: the file was altered or sealed with other key
    /// material under the same id. Never use such a cache.
    #[error("LKG cache HMAC does not match (file altered or wrong key)")]
    BadMac,
    #[error("LKG content has no canonical JSON form: {0}")]
    Canonical(#[from] CanonicalError),
    /// A journal record failed verification: nothing of the cache is used.
    #[error("LKG journal record {record} rejected: {reason}")]
    Journal { record: u64, reason: JournalFault },
    /// A cache with journal records applied has no single-document seal;
    /// seal its contents again to write it.
    #[error("a cache read with its journal must be sealed again before it is written")]
    NotSealed,
}

/// One service's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LkgService {
    pub version: Version,
    pub updated_at: String,
    /// The effective config with secrets masked or sealed.
    pub config: Map<String, Value>,
}

/// What the cache holds, before sealing.
#[derive(Debug, Clone, PartialEq)]
pub struct LkgContents {
    pub generated_at: String,
    pub config_epoch: Epoch,
    /// Hash of the loaded service schemas, to notice a cache from other schemas.
    pub schema_hash: String,
    pub services: BTreeMap<ServiceName, LkgService>,
}

impl LkgContents {
    /// Empty contents generated now.
    pub fn new(config_epoch: Epoch, schema_hash: impl Into<String>) -> Self {
        Self {
            generated_at: now_rfc3339(),
            config_epoch,
            schema_hash: schema_hash.into(),
            services: BTreeMap::new(),
        }
    }
}

/// The on-disk document, as read (after the MAC check took `hmac` out).
/// `format` and `key_id` were checked before; they are listed so that
/// `deny_unknown_fields` accepts them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    #[serde(rename = "format")]
    _format: u64,
    generated_at: String,
    config_epoch: Epoch,
    schema_hash: String,
    services: BTreeMap<ServiceName, LkgService>,
    #[serde(rename = "key_id")]
    _key_id: KeyId,
}

/// The on-disk document, as written: the same fields as [`Wire`], borrowed,
/// so sealing and writing do not copy every service's config (at 1,000
/// services those copies were a sixth of an LKG write).
#[derive(Serialize)]
struct WireOut<'a> {
    format: u64,
    generated_at: &'a str,
    config_epoch: &'a Epoch,
    schema_hash: &'a str,
    services: &'a BTreeMap<ServiceName, LkgService>,
    key_id: &'a KeyId,
    #[serde(skip_serializing_if = "Option::is_none")]
    hmac: Option<&'a str>,
}

/// A sealed (HMAC-authenticated) cache.
#[derive(Debug, Clone, PartialEq)]
pub struct LkgCache {
    contents: LkgContents,
    key_id: KeyId,
    hmac: String,
    /// What reading the journal found (all zero for a sealed or parsed
    /// snapshot).
    journal: JournalStatus,
}

impl LkgCache {
    /// Authenticates `contents` with the ring's current key.
    pub fn seal(contents: LkgContents, keys: &MacKeyRing) -> Result<Self, LkgError> {
        let key_id = keys.current_id().clone();
        let unsealed = to_object(&contents, &key_id, None)?;
        let hmac = keys
            .current_key()
            .tag_hex(&canonical::object_to_canonical_bytes(&unsealed)?);
        Ok(Self {
            contents,
            key_id,
            hmac,
            journal: JournalStatus::default(),
        })
    }

    /// What the journal added when this cache was read.
    pub fn journal(&self) -> &JournalStatus {
        &self.journal
    }

    pub fn contents(&self) -> &LkgContents {
        &self.contents
    }

    pub fn into_contents(self) -> LkgContents {
        self.contents
    }

    /// Id of the key that sealed the cache.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Whether the cache is sealed with the ring's current key. After an HMAC-key
    /// rotation it is not, and the next write re-seals it.
    pub fn is_sealed_with_current(&self, keys: &MacKeyRing) -> bool {
        &self.key_id == keys.current_id()
    }

    /// The snapshot file content: pretty-printed JSON. Fails with
    /// [`LkgError::NotSealed`] for a cache whose journal records were applied.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, LkgError> {
        if self.journal.records > 0 {
            return Err(LkgError::NotSealed);
        }
        // Straight from the borrowed document: no intermediate `Value`.
        let mut bytes =
            serde_json::to_vec_pretty(&wire(&self.contents, &self.key_id, Some(&self.hmac)))
                .map_err(|e| LkgError::Unparseable(e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Reads and verifies the cache at `path`: the snapshot, then its
    /// journal (`<path>.journal`, when there is one) replayed over it.
    pub fn read_verified(path: &Path, keys: &MacKeyRing) -> Result<Self, LkgError> {
        let bytes = fs::read(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => LkgError::Missing(path.to_path_buf()),
            _ => LkgError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let mut cache = Self::from_slice_verified(&bytes, keys)?;
        let journal = journal_path(path);
        let bytes = match fs::read(&journal) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(cache),
            Err(source) => {
                return Err(LkgError::Io {
                    path: journal,
                    source,
                })
            }
        };
        let key = keys
            .get(&cache.key_id)
            .map_err(|_| LkgError::UnknownKey(cache.key_id.clone()))?;
        let (status, _, _) = journal::replay(&bytes, &mut cache.contents, &cache.hmac, key)?;
        cache.journal = status;
        Ok(cache)
    }

    /// Writes this cache as a new snapshot (see [`LkgCache::write_atomic`])
    /// and returns the writer that appends changes after it. The cache must
    /// be sealed by a key of `keys` (normally just sealed with the current one).
    pub fn compact_to(&self, path: &Path, keys: &MacKeyRing) -> Result<LkgAppender, LkgError> {
        let key = keys
            .get(&self.key_id)
            .map_err(|_| LkgError::UnknownKey(self.key_id.clone()))?
            .clone();
        self.write_atomic(path)?;
        Ok(LkgAppender::new(
            path,
            key,
            self.key_id.clone(),
            &self.contents,
            self.hmac.clone(),
        ))
    }

    /// Verifies a cache from bytes: the MAC is checked before any content is
    /// interpreted (only `format`, `key_id` and `hmac` are looked at first).
    pub fn from_slice_verified(bytes: &[u8], keys: &MacKeyRing) -> Result<Self, LkgError> {
        let value =
            canonical::parse_strict(bytes).map_err(|e| LkgError::Unparseable(e.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(LkgError::Unparseable("not a JSON object".into()));
        };
        match object.get("format").map(Value::as_u64) {
            Some(Some(LKG_FORMAT)) => {}
            Some(Some(other)) => return Err(LkgError::UnsupportedFormat(other)),
            _ => {
                return Err(LkgError::Unparseable(
                    "missing or invalid \"format\"".into(),
                ))
            }
        }
        let Some(Value::String(hmac)) = object.remove("hmac") else {
            return Err(LkgError::Unparseable("missing or invalid \"hmac\"".into()));
        };
        let key_id = match object.get("key_id") {
            Some(Value::String(raw)) => {
                KeyId::parse(raw).map_err(|e| LkgError::Unparseable(format!("key_id: {e}")))?
            }
            _ => {
                return Err(LkgError::Unparseable(
                    "missing or invalid \"key_id\"".into(),
                ))
            }
        };
        let key = keys
            .get(&key_id)
            .map_err(|_| LkgError::UnknownKey(key_id.clone()))?;
        let signed = canonical::object_to_canonical_bytes(&object)?;
        key.verify_hex(&signed, &hmac).map_err(|e| match e {
            MacError::BadEncoding(_) => LkgError::Unparseable("\"hmac\" is not hex".into()),
            _ => LkgError::BadMac,
        })?;
        let wire: Wire = serde_json::from_value(Value::Object(object))
            .map_err(|e| LkgError::Unparseable(e.to_string()))?;
        Ok(Self {
            contents: LkgContents {
                generated_at: wire.generated_at,
                config_epoch: wire.config_epoch,
                schema_hash: wire.schema_hash,
                services: wire.services,
            },
            key_id,
            hmac: hmac.to_ascii_lowercase(),
            journal: JournalStatus::default(),
        })
    }

    /// Writes the cache as the snapshot so that a crash leaves either the old
    /// or the new file, never a torn one: a temporary file in the same
    /// directory (mode 0600) is written and fsynced, renamed over `path`, then
    /// the directory is fsynced so the rename itself survives power loss.
    /// Then the old journal is removed (a crash before that leaves a journal
    /// that does not extend the new snapshot, which readers ignore).
    pub fn write_atomic(&self, path: &Path) -> Result<(), LkgError> {
        let bytes = self.to_json_bytes()?;
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LkgError::Io { path, source }
        };
        crate::fs::atomic::write_atomic(path, &bytes)
            .map_err(|e| io_error(path)(e.without_path()))?;
        let journal = journal_path(path);
        match fs::remove_file(&journal) {
            Ok(()) => sync_parent_dir(path).map_err(io_error(&journal)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&journal)(e)),
        }
    }
}

fn wire<'a>(contents: &'a LkgContents, key_id: &'a KeyId, hmac: Option<&'a str>) -> WireOut<'a> {
    WireOut {
        format: LKG_FORMAT,
        generated_at: &contents.generated_at,
        config_epoch: &contents.config_epoch,
        schema_hash: &contents.schema_hash,
        services: &contents.services,
        key_id,
        hmac,
    }
}

/// The document as a JSON object, for its canonical form (what the MAC covers).
fn to_object(
    contents: &LkgContents,
    key_id: &KeyId,
    hmac: Option<&str>,
) -> Result<Map<String, Value>, LkgError> {
    match serde_json::to_value(wire(contents, key_id, hmac)) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(LkgError::Unparseable("document is not an object".into())),
        Err(e) => Err(LkgError::Unparseable(e.to_string())),
    }
}

#[cfg(test)]
mod journal_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::mac::MacKey;
    use serde_json::json;

    fn ring(id: &str) -> MacKeyRing {
        MacKeyRing::new(KeyId::parse(id).unwrap(), MacKey::generate())
    }

    fn contents() -> LkgContents {
        let mut c = LkgContents::new(
            Epoch::parse("550e8400-e29b-41d4-a716-446655440000").unwrap(),
            "abc123",
        );
        c.services.insert(
            ServiceName::parse("tts-worker").unwrap(),
            LkgService {
                version: Version::new(7).unwrap(),
                updated_at: "2026-01-15T09:30:00.000Z".into(),
                config:
                    json!({"volume_percent": 80, "eleven_api_key": "********", "voice": "Grüß €"})
                        .as_object()
                        .unwrap()
                        .clone(),
            },
        );
        c
    }

    #[test]
    fn seal_write_read_round_trip_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lkg.json");
        let keys = ring("lkg-1");
        let cache = LkgCache::seal(contents(), &keys).unwrap();
        cache.write_atomic(&path).unwrap();
        let back = LkgCache::read_verified(&path, &keys).unwrap();
        assert_eq!(back, cache);
        assert!(back.is_sealed_with_current(&keys));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // Overwrite leaves exactly one file, no temp files behind.
        cache.write_atomic(&path).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn hmac_is_over_the_canonical_document_without_hmac() {
        let keys = ring("lkg-1");
        let cache = LkgCache::seal(contents(), &keys).unwrap();
        let mut doc: Map<String, Value> =
            serde_json::from_slice(&cache.to_json_bytes().unwrap()).unwrap();
        let hmac = doc.remove("hmac").unwrap();
        let canon = canonical::object_to_canonical_bytes(&doc).unwrap();
        assert_eq!(json!(keys.current_key().tag_hex(&canon)), hmac);
        // Reformatting does not matter: compact JSON of the same document verifies.
        let compact = serde_json::to_vec(
            &cache
                .to_json_bytes()
                .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
                .unwrap(),
        )
        .unwrap();
        LkgCache::from_slice_verified(&compact, &keys).unwrap();
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring("lkg-1");
        assert!(matches!(
            LkgCache::read_verified(&dir.path().join("absent.json"), &keys),
            Err(LkgError::Missing(_))
        ));

        let good = LkgCache::seal(contents(), &keys)
            .unwrap()
            .to_json_bytes()
            .unwrap();
        let text = String::from_utf8(good.clone()).unwrap();

        // One changed byte in a value.
        let tampered = text.replacen("\"volume_percent\": 80", "\"volume_percent\": 81", 1);
        assert_ne!(tampered, text);
        assert!(matches!(
            LkgCache::from_slice_verified(tampered.as_bytes(), &keys),
            Err(LkgError::BadMac)
        ));

        // MAC removed.
        let mut doc: Map<String, Value> = serde_json::from_slice(&good).unwrap();
        doc.remove("hmac");
        let stripped = serde_json::to_vec(&doc).unwrap();
        assert!(matches!(
            LkgCache::from_slice_verified(&stripped, &keys),
            Err(LkgError::Unparseable(_))
        ));

        // Sealed by a key we do not hold / other key material under the same id.
        assert!(matches!(
            LkgCache::from_slice_verified(&good, &ring("lkg-2")),
            Err(LkgError::UnknownKey(_))
        ));
        assert!(matches!(
            LkgCache::from_slice_verified(&good, &ring("lkg-1")),
            Err(LkgError::BadMac)
        ));

        for garbage in [&b"not json"[..], b"[]", b"", &good[..good.len() / 2]] {
            assert!(matches!(
                LkgCache::from_slice_verified(garbage, &keys),
                Err(LkgError::Unparseable(_))
            ));
        }

        let future = text.replacen("\"format\": 1", "\"format\": 2", 1);
        assert!(matches!(
            LkgCache::from_slice_verified(future.as_bytes(), &keys),
            Err(LkgError::UnsupportedFormat(2))
        ));
    }

    #[test]
    fn authentic_but_ill_typed_content_is_unparseable() {
        // Even a correctly MACed document must match the format.
        let keys = ring("lkg-1");
        let mut doc = to_object(&contents(), keys.current_id(), None).unwrap();
        doc.insert("services".into(), json!({"../x": {}}));
        let tag = keys
            .current_key()
            .tag_hex(&canonical::object_to_canonical_bytes(&doc).unwrap());
        doc.insert("hmac".into(), json!(tag));
        let bytes = serde_json::to_vec(&doc).unwrap();
        assert!(matches!(
            LkgCache::from_slice_verified(&bytes, &keys),
            Err(LkgError::Unparseable(_))
        ));
    }

    #[test]
    fn rotation_verifies_old_seal_and_reseals_with_new_key() {
        let old_key = MacKey::generate();
        let old = MacKeyRing::new(KeyId::parse("lkg-1").unwrap(), old_key.clone());
        let bytes = LkgCache::seal(contents(), &old)
            .unwrap()
            .to_json_bytes()
            .unwrap();
        let rotated = MacKeyRing::new(KeyId::parse("lkg-2").unwrap(), MacKey::generate())
            .with_previous(KeyId::parse("lkg-1").unwrap(), old_key);
        let read = LkgCache::from_slice_verified(&bytes, &rotated).unwrap();
        assert!(!read.is_sealed_with_current(&rotated));
        let resealed = LkgCache::seal(read.into_contents(), &rotated).unwrap();
        assert_eq!(resealed.key_id().as_str(), "lkg-2");
    }

    #[test]
    fn write_into_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LkgCache::seal(contents(), &ring("k")).unwrap();
        let err = cache
            .write_atomic(&dir.path().join("no/such/dir/lkg.json"))
            .unwrap_err();
        assert!(matches!(err, LkgError::Io { .. }));
    }
}
