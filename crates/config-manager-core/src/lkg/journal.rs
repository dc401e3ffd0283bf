//! LKG format 2, the journal: per-service records appended after the sealed
//! snapshot, so an acknowledged write costs one appended line and one fsync
//! instead of rewriting every service's entry (see the module docs of
//! [`crate::lkg`] for the threat cases).
//!
//! The journal lives beside the snapshot (`<snapshot>.journal`, see
//! [`journal_path`]), one JSON object per line:
//!
//! ```json
//! {"seq":1,"config_epoch":"…","service":"tts-worker","written_at":"…",
//!  "entry":{"version":8,"updated_at":"…","config":{…}},"prev":"<64 hex>","mac":"<64 hex>"}
//! ```
//!
//! `mac` is HMAC-SHA256, under the snapshot's key, of the RFC 8785 canonical
//! JSON of the record without `mac`. `prev` is the `mac` of the record before
//! it, and for the first record the snapshot's `hmac`: every record is chained
//! to the snapshot it extends and to all records before it. `entry: null`
//! removes the service.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::{LkgContents, LkgError, LkgService};
use crate::crypto::canonical;
use crate::crypto::mac::{MacError, MacKey};
use crate::crypto::KeyId;
use crate::domain::{now_rfc3339, Epoch, ServiceName, Version};

/// Suffix of the journal file next to the snapshot.
pub const JOURNAL_SUFFIX: &str = ".journal";

/// Where the journal of the snapshot at `snapshot` lives.
pub fn journal_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(JOURNAL_SUFFIX);
    PathBuf::from(name)
}

/// Why one journal record was refused. Any of these makes the whole cache
/// unusable: the records after it can no longer be trusted to be complete.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JournalFault {
    #[error("unparseable ({0})")]
    Unparseable(String),
    /// Altered, or written with other key material.
    #[error("HMAC does not match (record altered or wrong key)")]
    BadMac,
    /// A record missing, repeated or moved.
    #[error("out of sequence: expected {expected}, found {found}")]
    OutOfSequence { expected: u64, found: u64 },
    /// The record does not follow the one before it (records deleted,
    /// replaced or reordered).
    #[error("does not chain to the record before it")]
    ChainBroken,
    /// A record of another database's journal.
    #[error("belongs to epoch {0}, the snapshot to another")]
    ForeignEpoch(Epoch),
    /// An older entry of a service after a newer one.
    #[error("{service} goes back from version {cached} to {version}")]
    VersionRollback {
        service: ServiceName,
        cached: Version,
        version: Version,
    },
}

/// What reading the journal found (reported by `verify-lkg`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JournalStatus {
    /// Records applied over the snapshot.
    pub records: u64,
    /// An incomplete last line was ignored: a crash during an append, whose
    /// write had not been acknowledged (the fsync had not returned).
    pub torn_tail: bool,
    /// The journal extends another snapshot (a crash between writing a new
    /// snapshot and removing the old journal, whose records the new snapshot
    /// already holds) and was ignored.
    pub stale: bool,
}

/// One record as written and read (`mac` is taken out before verifying).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    seq: u64,
    config_epoch: Epoch,
    service: ServiceName,
    written_at: String,
    entry: Option<LkgService>,
    prev: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

/// The canonical bytes a record's MAC covers.
fn signed_bytes(record: &Record) -> Result<Vec<u8>, LkgError> {
    match serde_json::to_value(record) {
        Ok(Value::Object(object)) => Ok(canonical::object_to_canonical_bytes(&object)?),
        Ok(_) => Err(LkgError::Unparseable("record is not an object".into())),
        Err(e) => Err(LkgError::Unparseable(e.to_string())),
    }
}

/// Applies the journal `bytes` to `contents` (the verified snapshot sealed
/// as `snapshot_hmac` under `key`). Returns what was found and the tail to
/// append after.
pub(super) fn replay(
    bytes: &[u8],
    contents: &mut LkgContents,
    snapshot_hmac: &str,
    key: &MacKey,
) -> Result<(JournalStatus, String, u64), LkgError> {
    let mut status = JournalStatus::default();
    let mut prev = snapshot_hmac.to_owned();
    let mut seq = 0u64;
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // The part after the last newline: empty for a complete journal, the
    // unfinished line of an interrupted append otherwise.
    if lines.pop().is_some_and(|tail| !tail.is_empty()) {
        status.torn_tail = true;
    }
    let fault = |record: u64, reason: JournalFault| LkgError::Journal { record, reason };
    for (i, line) in lines.into_iter().enumerate() {
        let n = i as u64 + 1;
        let value = canonical::parse_strict(line)
            .map_err(|e| fault(n, JournalFault::Unparseable(e.to_string())))?;
        let Value::Object(mut object) = value else {
            return Err(fault(n, JournalFault::Unparseable("not an object".into())));
        };
        let Some(Value::String(mac)) = object.remove("mac") else {
            return Err(fault(
                n,
                JournalFault::Unparseable("missing or invalid \"mac\"".into()),
            ));
        };
        if n == 1 && object.get("prev").and_then(Value::as_str) != Some(snapshot_hmac) {
            // Not this snapshot's journal: left over from before a
            // compaction (everything in it is in the snapshot), or another
            // file. Ignoring it is what deleting it would do.
            status.stale = true;
            return Ok((status, prev, 0));
        }
        let signed = canonical::object_to_canonical_bytes(&object)
            .map_err(|e| fault(n, JournalFault::Unparseable(e.to_string())))?;
        key.verify_hex(&signed, &mac).map_err(|e| match e {
            MacError::BadEncoding(_) => {
                fault(n, JournalFault::Unparseable("mac is not hex".into()))
            }
            _ => fault(n, JournalFault::BadMac),
        })?;
        let record: Record = serde_json::from_value(Value::Object(object))
            .map_err(|e| fault(n, JournalFault::Unparseable(e.to_string())))?;
        if record.seq != seq + 1 {
            return Err(fault(
                n,
                JournalFault::OutOfSequence {
                    expected: seq + 1,
                    found: record.seq,
                },
            ));
        }
        if record.prev != prev {
            return Err(fault(n, JournalFault::ChainBroken));
        }
        if record.config_epoch != contents.config_epoch {
            return Err(fault(n, JournalFault::ForeignEpoch(record.config_epoch)));
        }
        match record.entry {
            Some(entry) => {
                if let Some(cached) = contents.services.get(&record.service) {
                    if entry.version < cached.version {
                        return Err(fault(
                            n,
                            JournalFault::VersionRollback {
                                service: record.service,
                                cached: cached.version,
                                version: entry.version,
                            },
                        ));
                    }
                }
                contents.services.insert(record.service, entry);
            }
            None => {
                contents.services.remove(&record.service);
            }
        }
        contents.generated_at = record.written_at;
        seq = record.seq;
        prev = mac.to_ascii_lowercase();
        status.records = seq;
    }
    Ok((status, prev, seq))
}

/// Appends records to the journal of one sealed snapshot: the writer the
/// service keeps between compactions ([`super::LkgCache::compact_to`]).
///
/// Each [`LkgAppender::append`] writes its records with one `write` and one
/// fsync, so a crash leaves at most an unfinished last line, which readers
/// ignore (it was never acknowledged).
pub struct LkgAppender {
    journal: PathBuf,
    key: MacKey,
    key_id: KeyId,
    epoch: Epoch,
    seq: u64,
    last_mac: String,
    /// Last written version per service: an append that would go back is
    /// refused ([`AppendError::NeedsCompaction`]), readers would reject it.
    versions: HashMap<ServiceName, Version>,
    /// Whether the journal file exists and its directory entry was synced.
    created: bool,
    /// Set by a failed append: the file's tail is unknown.
    broken: bool,
}

impl std::fmt::Debug for LkgAppender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LkgAppender")
            .field("journal", &self.journal)
            .field("epoch", &self.epoch)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// Why an append did not happen.
#[derive(Debug, Error)]
pub enum AppendError {
    /// The journal cannot express this change (a service's version goes
    /// back, e.g. after a restore from backup, or a failed append left the
    /// file's tail unknown): write a new snapshot instead.
    #[error("the journal needs a new snapshot: {0}")]
    NeedsCompaction(String),
    #[error(transparent)]
    Lkg(#[from] LkgError),
}

impl LkgAppender {
    pub(super) fn new(
        snapshot: &Path,
        key: MacKey,
        key_id: KeyId,
        contents: &LkgContents,
        snapshot_hmac: String,
    ) -> Self {
        Self {
            journal: journal_path(snapshot),
            key,
            key_id,
            epoch: contents.config_epoch.clone(),
            seq: 0,
            last_mac: snapshot_hmac,
            versions: contents
                .services
                .iter()
                .map(|(name, s)| (name.clone(), s.version))
                .collect(),
            created: false,
            broken: false,
        }
    }

    /// The MAC the next record chains to.
    #[cfg(test)]
    pub(super) fn last_mac_for_tests(&self) -> String {
        self.last_mac.clone()
    }

    /// Records appended since the snapshot.
    pub fn records(&self) -> u64 {
        self.seq
    }

    /// Services in the cache as journaled so far.
    pub fn services(&self) -> usize {
        self.versions.len()
    }

    /// The epoch the snapshot and every record carry.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The key the snapshot and the records are sealed with.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Appends one record per change (`None` removes the service) and
    /// fsyncs before returning: when this returns `Ok`, the changes are in
    /// the verified cache.
    pub fn append(
        &mut self,
        changes: Vec<(ServiceName, Option<LkgService>)>,
    ) -> Result<(), AppendError> {
        if self.broken {
            return Err(AppendError::NeedsCompaction(
                "an earlier append failed".into(),
            ));
        }
        for (name, entry) in &changes {
            if let (Some(entry), Some(&known)) = (entry, self.versions.get(name)) {
                if entry.version < known {
                    return Err(AppendError::NeedsCompaction(format!(
                        "{name} goes back from version {known} to {}",
                        entry.version
                    )));
                }
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let written_at = now_rfc3339();
        let mut out = Vec::new();
        let mut seq = self.seq;
        let mut prev = self.last_mac.clone();
        let mut versions = Vec::with_capacity(changes.len());
        for (service, entry) in changes {
            versions.push((service.clone(), entry.as_ref().map(|e| e.version)));
            let mut record = Record {
                seq: seq + 1,
                config_epoch: self.epoch.clone(),
                service,
                written_at: written_at.clone(),
                entry,
                prev,
                mac: None,
            };
            let mac = self.key.tag_hex(&signed_bytes(&record)?);
            record.mac = Some(mac.clone());
            serde_json::to_writer(&mut out, &record)
                .map_err(|e| LkgError::Unparseable(e.to_string()))?;
            out.push(b'\n');
            seq += 1;
            prev = mac;
        }
        if let Err(source) = self.write(&out) {
            self.broken = true;
            return Err(LkgError::Io {
                path: self.journal.clone(),
                source,
            }
            .into());
        }
        self.seq = seq;
        self.last_mac = prev;
        for (service, version) in versions {
            match version {
                Some(v) => self.versions.insert(service, v),
                None => self.versions.remove(&service),
            };
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&self.journal)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        if !self.created {
            // The first append created the file: its directory entry must
            // survive a power cut too.
            crate::fs::atomic::sync_parent_dir(&self.journal)?;
            self.created = true;
        }
        Ok(())
    }
}

/// One record line sealed with `key` as the writer would, with any field
/// chosen by the test (a forger holding the key, for the reader's checks that
/// do not rest on the MAC). Returns the line and its MAC.
#[cfg(test)]
pub(super) fn forge_line(
    key: &MacKey,
    seq: u64,
    epoch: &Epoch,
    service: &ServiceName,
    entry: Option<LkgService>,
    prev: &str,
) -> (String, String) {
    let record = Record {
        seq,
        config_epoch: epoch.clone(),
        service: service.clone(),
        written_at: now_rfc3339(),
        entry,
        prev: prev.to_owned(),
        mac: None,
    };
    let mac = key.tag_hex(&signed_bytes(&record).unwrap_or_default());
    let mut object: serde_json::Map<String, Value> = match serde_json::to_value(&record) {
        Ok(Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    object.insert("mac".into(), Value::String(mac.clone()));
    (
        serde_json::to_string(&Value::Object(object)).unwrap_or_default(),
        mac,
    )
}
