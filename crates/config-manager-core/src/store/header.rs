//! A cheap check of the bytes SQLite itself does not look at again while it
//! runs: the database file's header and the WAL's header and first frame.
//!
//! In WAL mode SQLite reads page 1 from the WAL when a newer copy is there and
//! trusts its in-memory WAL index, so overwriting the start of the database
//! file and of the WAL under a running service goes unnoticed (a save was
//! still acknowledged 60 s later, issue 23) until a checkpoint copies
//! garbage or a restart discards the WAL. These checks read about 4 KiB and
//! cost microseconds, so they run before every commit and on every monitor
//! tick, each time while the store holds the write lock (no frame is being
//! appended and no WAL restart or truncation can run meanwhile).
//!
//! Only fields that never change while the file is in use are checked (the
//! magic, the page size, the format bytes, the WAL checksums of what was
//! written together), so a checkpoint rewriting page 1 at the same moment
//! cannot make a healthy file look damaged.
//!
//! The database file is read through a descriptor this module keeps open for
//! as long as any store uses that file: closing *any* descriptor of a file
//! drops every POSIX lock the process holds on it, SQLite's included, so a
//! descriptor opened per check would break SQLite's locking.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::{Result, StoreError};

/// The first 16 bytes of every SQLite database file.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// The database header plus the b-tree page header's first byte on page 1.
const DB_HEADER_LEN: usize = 101;
/// WAL header length, and the frame header length that follows.
const WAL_HEADER_LEN: usize = 32;
const FRAME_HEADER_LEN: usize = 24;
/// WAL magic numbers: the low bit says big-endian checksums.
const WAL_MAGIC_LE: u32 = 0x377f_0682;
const WAL_MAGIC_BE: u32 = 0x377f_0683;
const WAL_FORMAT: u32 = 3_007_000;

/// A kept-open descriptor of one database file (device, inode), shared by
/// every store in the process that uses that file.
#[derive(Debug)]
pub(super) struct HeaderReader {
    file: Arc<File>,
    wal: PathBuf,
}

/// (device, inode) -> the shared descriptor, while any store holds it.
type Descriptors = HashMap<(u64, u64), Weak<File>>;

/// Open descriptors by file identity: a second store on the same file (a
/// recovery reopening it) shares the first one's, so dropping the old store
/// never closes a descriptor while the new one's connections hold locks.
fn registry() -> &'static Mutex<Descriptors> {
    static REGISTRY: OnceLock<Mutex<Descriptors>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

impl HeaderReader {
    /// The reader of the database at `path`, whose identity is `identity`
    /// (`None` when the file could not be looked at: no checks then).
    pub(super) fn open(path: &Path, identity: Option<(u64, u64)>) -> Option<Self> {
        let identity = identity?;
        let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        let file = match map.get(&identity).and_then(Weak::upgrade) {
            Some(file) => file,
            None => {
                let file = Arc::new(File::open(path).ok()?);
                map.insert(identity, Arc::downgrade(&file));
                file
            }
        };
        Some(Self {
            file,
            wal: wal_path(path),
        })
    }

    /// Checks the database header and the WAL's header and first frame;
    /// [`StoreError::Corrupt`] names what is wrong.
    pub(super) fn check(&self) -> Result<()> {
        let mut db = [0u8; DB_HEADER_LEN];
        read_at(&self.file, &mut db, 0)?;
        let page_size = check_db_header(&db).map_err(corrupt)?;
        let wal = match File::open(&self.wal) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::Unavailable(format!("the WAL: {e}"))),
        };
        let len = wal
            .metadata()
            .map_err(|e| StoreError::Unavailable(format!("the WAL: {e}")))?
            .len();
        if len < WAL_HEADER_LEN as u64 {
            // Empty (truncated by a checkpoint): nothing written yet.
            return Ok(());
        }
        let mut header = [0u8; WAL_HEADER_LEN];
        read_at(&wal, &mut header, 0)?;
        let seed = check_wal_header(&header, page_size).map_err(corrupt)?;
        let frame_len = FRAME_HEADER_LEN + page_size;
        if len < (WAL_HEADER_LEN + frame_len) as u64 {
            return Ok(());
        }
        let mut frame = vec![0u8; frame_len];
        read_at(&wal, &mut frame, WAL_HEADER_LEN as u64)?;
        check_first_frame(&header, seed, &frame).map_err(corrupt)
    }
}

/// `<db>-wal`
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn read_at(file: &File, buf: &mut [u8], offset: u64) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        match file.read_exact_at(buf, offset) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(corrupt("the file is shorter than its header"))
            }
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, buf, offset);
        Ok(())
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_be_bytes(w)
}

/// The page size of a valid database header, or what is wrong with it.
fn check_db_header(h: &[u8; DB_HEADER_LEN]) -> std::result::Result<usize, &'static str> {
    if &h[..16] != MAGIC {
        return Err("the database header is damaged (no SQLite magic)");
    }
    let raw = u16::from_be_bytes([h[16], h[17]]);
    let page_size = if raw == 1 { 65_536 } else { usize::from(raw) };
    if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err("the database header is damaged (page size)");
    }
    let formats_ok = matches!(h[18], 1 | 2) && matches!(h[19], 1 | 2);
    let fractions_ok = h[21] == 64 && h[22] == 32 && h[23] == 32;
    // 0 until the first table is created (a new file's page 1 in the
    // database file is older than its copy in the WAL).
    let schema_format_ok = be32(h, 44) <= 4;
    let encoding_ok = be32(h, 56) <= 3;
    let reserved_ok = h[72..92].iter().all(|b| *b == 0);
    // Page 1's b-tree page: a table leaf or interior page.
    let page_type_ok = matches!(h[100], 0x0d | 0x05);
    if formats_ok && fractions_ok && schema_format_ok && encoding_ok && reserved_ok && page_type_ok
    {
        Ok(page_size)
    } else {
        Err("the database header is damaged")
    }
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing
/// from `seed`.
fn wal_checksum(big_endian: bool, seed: (u32, u32), data: &[u8]) -> (u32, u32) {
    let (mut s0, mut s1) = seed;
    for pair in data.chunks_exact(8) {
        let word = |b: &[u8]| {
            let mut w = [0u8; 4];
            w.copy_from_slice(b);
            if big_endian {
                u32::from_be_bytes(w)
            } else {
                u32::from_le_bytes(w)
            }
        };
        s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

/// Checks a WAL header; returns its checksum, the seed of frame 1's.
fn check_wal_header(
    h: &[u8; WAL_HEADER_LEN],
    page_size: usize,
) -> std::result::Result<(u32, u32), &'static str> {
    let magic = be32(h, 0);
    if magic != WAL_MAGIC_LE && magic != WAL_MAGIC_BE {
        return Err("the WAL header is damaged (no WAL magic)");
    }
    if be32(h, 4) != WAL_FORMAT || usize::try_from(be32(h, 8)).ok() != Some(page_size) {
        return Err("the WAL header is damaged");
    }
    let sum = wal_checksum(magic == WAL_MAGIC_BE, (0, 0), &h[..24]);
    if sum != (be32(h, 24), be32(h, 28)) {
        return Err("the WAL header is damaged (checksum)");
    }
    Ok(sum)
}

/// Checks the first frame after a valid header: the header's salts and a
/// checksum over the frame header's first 8 bytes and the page.
fn check_first_frame(
    header: &[u8; WAL_HEADER_LEN],
    seed: (u32, u32),
    frame: &[u8],
) -> std::result::Result<(), &'static str> {
    if frame.get(8..16) != header.get(16..24) {
        return Err("the WAL's first frame is damaged (salt)");
    }
    let big_endian = be32(header, 0) == WAL_MAGIC_BE;
    let sum = wal_checksum(big_endian, seed, &frame[..8]);
    let sum = wal_checksum(big_endian, sum, &frame[FRAME_HEADER_LEN..]);
    if sum != (be32(frame, 16), be32(frame, 20)) {
        return Err("the WAL's first frame is damaged (checksum)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::store::{file_identity, Store};
    use std::os::unix::fs::FileExt;

    /// A store in WAL mode with a few commits still in the WAL.
    fn store_with_wal(dir: &Path) -> (Store, PathBuf) {
        let path = dir.join("config.db");
        let store = Store::open(&path).unwrap();
        store
            .record_audit(&crate::store::NewAudit {
                actor: "test".into(),
                action: crate::store::audit::AuditAction::ConfigExport,
                target: None,
                outcome: crate::store::audit::AuditOutcome::Ok,
                detail: None,
            })
            .unwrap();
        (store, path)
    }

    fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(bytes, offset).unwrap();
    }

    #[test]
    fn a_healthy_database_and_wal_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_with_wal(dir.path());
        assert!(wal_path(&path).metadata().unwrap().len() > 32);
        let reader = HeaderReader::open(&path, file_identity(&path).unwrap()).unwrap();
        reader.check().unwrap();
        store.checkpoint().unwrap();
        reader.check().unwrap();
    }

    #[test]
    fn damage_to_either_header_or_the_first_frame_is_caught() {
        for (target, offset, len) in [
            ("db", 0, 8192),
            ("db", 16, 2),
            ("db", 100, 1),
            ("wal", 0, 8192),
            ("wal", 24, 4),
            ("wal", 32 + 24 + 100, 8),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (_store, path) = store_with_wal(dir.path());
            let reader = HeaderReader::open(&path, file_identity(&path).unwrap()).unwrap();
            let file = if target == "db" {
                path.clone()
            } else {
                wal_path(&path)
            };
            overwrite(&file, offset, &vec![0xa5; len]);
            let err = reader.check().unwrap_err();
            assert!(
                matches!(err, StoreError::Corrupt(_)),
                "{target}@{offset}: {err}"
            );
        }
    }

    #[test]
    fn stores_on_one_file_share_one_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, path) = store_with_wal(dir.path());
        let id = file_identity(&path).unwrap();
        let a = HeaderReader::open(&path, id).unwrap();
        let b = HeaderReader::open(&path, id).unwrap();
        assert!(Arc::ptr_eq(&a.file, &b.file));
    }
}
