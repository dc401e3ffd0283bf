//! The SQLite store: one database file in WAL mode, one writer connection and a
//! small pool of read-only connections, so readers never wait behind the writer.
//!
//! Durability: `journal_mode=WAL` with `synchronous=FULL`. In WAL mode `NORMAL`
//! only syncs at checkpoints, so a power cut can lose the last acknowledged
//! commits; `FULL` fsyncs the WAL on every commit, which is what "an
//! acknowledged write survives power loss" needs. The cost is one fsync per write.
//!
//! The API is synchronous on purpose: the service calls it from blocking threads
//! (`spawn_blocking`), never from the async executor.

mod applied;
mod audit;
mod configs;
mod epoch_file;
mod error;
mod exclusive;
mod filter;
mod header;
mod history;
mod meta;
mod migrations;
mod page;
pub mod private_file;
mod profiles;
mod replication;
mod schemas;
mod secrets;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::domain::ServiceName;

pub use applied::{AppliedChange, CurrentVersion, StoredApplied};
pub use audit::{AuditEntry, AuditFilter, NewAudit};
pub use configs::{ConfigItem, ConfigWrite, StoredConfig, VersionSnapshot};
pub use epoch_file::{
    epoch_file_path, inspect_database, DatabaseIdentity, EpochDiscrepancy, EpochFile,
    EpochFileError, LastRebuild, EPOCH_FILE_FORMAT, EPOCH_FILE_VERSION,
};
pub use error::{Result, StoreError};
pub use exclusive::{in_use_by_another_process, ExclusiveProbeError};
pub use history::{HistoryEntry, HistoryFilter, KeyChange};
pub use meta::{EpochInfo, SchemaVersion};
pub use migrations::LATEST_MIGRATION;
pub use page::{JsonPage, PAGE_BYTE_BUDGET};
pub use profiles::{Profile, ProfileSummary};
pub use secrets::{SecretChange, StoredSecret};

/// How long a statement waits for a lock held by another connection before it
/// fails with [`StoreError::Locked`]. Short, so a stuck database turns into a
/// prompt fallback instead of hung requests.
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(2_000);

/// Most read connections kept open at once.
const MAX_READERS: usize = 8;

/// Handle to the database. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Store {
    path: PathBuf,
    /// Identity (device, inode) of the file when opened, to notice a database
    /// that was deleted or replaced under the open connections.
    identity: Option<(u64, u64)>,
    writer: Mutex<Connection>,
    readers: ReaderPool,
    /// Bumped after every committed write of the search table
    /// (`config_items`) through this store, so in-memory copies (the
    /// manager's search index) know when to reload.
    items_generation: AtomicU64,
    /// Which services each recent generation changed, oldest first (at most
    /// [`ITEMS_CHANGE_LOG`] entries), so the search index reloads only
    /// those services instead of the whole table.
    items_changes: Mutex<std::collections::VecDeque<(u64, Vec<ServiceName>)>>,
    /// Reads the file's and the WAL's headers ([`header`]). Declared after
    /// the connections so it is dropped after them.
    header: Option<header::HeaderReader>,
    /// Set once the headers were found damaged: the WAL is then never
    /// checkpointed into the database (not at shutdown, not on close).
    damaged: AtomicBool,
}

/// Generations whose changed services [`Store::items_changed_since`] can
/// still tell; an index older than that reloads everything.
pub const ITEMS_CHANGE_LOG: usize = 1024;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, applies pending
    /// migrations and checks that the file really is a usable database.
    ///
    /// Fails with [`StoreError::SchemaMismatch`] when the file was written by a
    /// newer migration than this binary knows.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| io_fault(dir, &e))?;
            }
        }
        // Owner-only before SQLite creates it (see `private_file`).
        private_file::prepare_database(path)
            .map_err(|e| StoreError::Other(format!("{}: {e}", path.display())))?;
        let mut writer = open_connection(path, false)?;
        migrations::apply(&mut writer)?;
        Ok(Self::with_writer(path, writer))
    }

    /// Opens an existing database without creating or migrating it (for
    /// verification tools and the health monitor).
    pub fn open_existing(path: &Path) -> Result<Self> {
        if let Err(e) = std::fs::metadata(path) {
            return Err(io_fault(path, &e));
        }
        let writer = open_connection(path, false)?;
        migrations::check(&writer)?;
        Ok(Self::with_writer(path, writer))
    }

    fn with_writer(path: &Path, writer: Connection) -> Self {
        let identity = file_identity(path).ok().flatten();
        Self {
            path: path.to_owned(),
            identity,
            writer: Mutex::new(writer),
            readers: ReaderPool::new(path.to_owned()),
            items_generation: AtomicU64::new(0),
            items_changes: Mutex::default(),
            header: header::HeaderReader::open(path, identity),
            damaged: AtomicBool::new(false),
        }
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes whenever a write that may have changed the search table
    /// committed (read it before reading the table).
    pub fn items_generation(&self) -> u64 {
        self.items_generation.load(Ordering::Acquire)
    }

    /// Called after such a write of `services` committed.
    pub(crate) fn bump_items_generation(&self, services: Vec<ServiceName>) {
        let mut log = self.items_changes.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.items_generation.fetch_add(1, Ordering::AcqRel) + 1;
        log.push_back((generation, services));
        while log.len() > ITEMS_CHANGE_LOG {
            log.pop_front();
        }
    }

    /// The current generation and every service whose search rows changed
    /// after `generation`; `None` when the change log no longer reaches back
    /// that far (reload everything). Read it before reading the rows.
    pub fn items_changed_since(
        &self,
        generation: u64,
    ) -> Option<(u64, std::collections::BTreeSet<ServiceName>)> {
        let log = self.items_changes.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.items_generation.load(Ordering::Acquire);
        if current == generation {
            return Some((current, Default::default()));
        }
        match log.front() {
            Some((oldest, _)) if *oldest <= generation + 1 => {}
            _ => return None,
        }
        let changed = log
            .iter()
            .filter(|(g, _)| *g > generation)
            .flat_map(|(_, services)| services.iter().cloned())
            .collect();
        Some((current, changed))
    }

    /// Runs `f` inside an immediate write transaction on the single writer
    /// connection. `BEGIN IMMEDIATE` takes the write lock up front, so two
    /// writers never deadlock on a lock upgrade.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.lock_writer();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        // A commit into a deleted or replaced file would be acknowledged and
        // then lost: refuse it (the transaction rolls back on drop). So would
        // one appended to a WAL whose header was overwritten.
        self.check_file()?;
        self.check_headers(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Fails with [`StoreError::Missing`] when the database file is gone or is
    /// no longer the file this store opened.
    pub fn check_file(&self) -> Result<()> {
        match (file_identity(&self.path)?, self.identity) {
            (None, _) => Err(StoreError::Missing(format!(
                "{} was deleted",
                self.path.display()
            ))),
            (Some(now), Some(then)) if now != then => Err(StoreError::Missing(format!(
                "{} was replaced by another file",
                self.path.display()
            ))),
            _ => Ok(()),
        }
    }

    /// Fails with [`StoreError::Unavailable`] when the file can no longer be
    /// opened for reading and writing (permissions changed under the running
    /// service). SQLite does not notice: it keeps and reuses the descriptors
    /// it has, so only a fresh open shows it. For the health monitor.
    pub fn check_access(&self) -> Result<()> {
        may_read_write(&self.path).map_err(|e| io_fault(&self.path, &e))
    }

    /// Whether a write lock can be taken right now (without writing): the
    /// health monitor's probe for a database locked by another process.
    /// While it holds the lock it also checks the database and WAL headers
    /// (see the `header` module): nothing can append to or restart the WAL then.
    pub fn probe_writable(&self, timeout: Duration) -> Result<()> {
        let conn = self.lock_writer();
        conn.busy_timeout(timeout)?;
        let result = conn
            .execute_batch("BEGIN IMMEDIATE;")
            .map_err(StoreError::from);
        let checked = result.and_then(|()| {
            let checked = self.check_headers(&conn);
            conn.execute_batch("ROLLBACK;")?;
            checked
        });
        conn.busy_timeout(BUSY_TIMEOUT)?;
        checked
    }

    /// The header check ([`header`]) with the write lock held on `conn`
    /// (the writer). Damage marks the store so the WAL is never
    /// checkpointed into the database: after a restart the database then
    /// fails to open as it should, instead of taking in the overwritten
    /// frames, and the acknowledged writes are served from the
    /// last-known-good journal.
    fn check_headers(&self, conn: &Connection) -> Result<()> {
        let Some(header) = &self.header else {
            return Ok(());
        };
        let checked = header.check();
        if let Err(StoreError::Corrupt(_)) = &checked {
            self.damaged.store(true, Ordering::Release);
            conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )?;
        }
        checked
    }

    /// Whether the headers were found damaged (see [`Store::probe_writable`]).
    pub fn is_damaged(&self) -> bool {
        self.damaged.load(Ordering::Acquire)
    }

    /// Runs `f` on a pooled read-only connection, inside one read transaction
    /// so multi-statement reads see one snapshot.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.readers.get()?;
        let out = (|| {
            conn.execute_batch("BEGIN")?;
            let r = f(&conn);
            conn.execute_batch("COMMIT")?;
            r
        })();
        if out.is_ok() {
            self.readers.put(conn);
        }
        out
    }

    fn lock_writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable (every
        // transaction is rolled back on drop), so a poisoned lock is recovered.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `PRAGMA journal_mode` as SQLite reports it (`wal` when healthy).
    pub fn journal_mode(&self) -> Result<String> {
        self.read(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
    }

    /// Full `PRAGMA integrity_check`; `Ok(())` or [`StoreError::Corrupt`] naming
    /// the first problem. Also fails when the file was deleted or replaced under us.
    pub fn integrity_check(&self) -> Result<()> {
        self.check_file()?;
        if let Some(header) = &self.header {
            header.check()?;
        }
        let conn = open_connection(&self.path, true)?;
        let result: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if result != "ok" {
            return Err(StoreError::Corrupt(result));
        }
        migrations::check(&conn)?;
        Ok(())
    }

    /// Checkpoints the WAL into the main file (used on graceful shutdown).
    /// Does nothing once the headers were found damaged: copying an
    /// overwritten WAL into the database would hide the damage and keep
    /// garbage pages.
    pub fn checkpoint(&self) -> Result<()> {
        let conn = self.lock_writer();
        if self.is_damaged() {
            return Ok(());
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok(())
    }
}

/// `(device, inode)` of a file, `None` when it does not exist. Any other
/// failure to look at it (a permission, an I/O error) is an error, never
/// "the file is gone". Also how the backup supervisor notices the database
/// being replaced.
pub fn file_identity(path: &Path) -> Result<Option<(u64, u64)>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_fault(path, &e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(Some((meta.dev(), meta.ino())))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(Some((0, 0)))
    }
}

/// What an I/O error on the database path means: `Missing` only when the
/// file (or its directory) does not exist; anything else (no permission,
/// too many open files, an I/O error) is `Unavailable`, which says nothing
/// about the file's contents and never leads to a rebuild.
fn io_fault(path: &Path, e: &std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::Missing(path.display().to_string())
    } else {
        StoreError::Unavailable(format!("{}: {e}", path.display()))
    }
}

/// Whether this process may read and write `path`, by `access(2)`. The file
/// is never opened here: closing any descriptor of a database file drops
/// every POSIX lock SQLite holds on it in this process.
fn may_read_write(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use rustix::fs::{Access, AtFlags, CWD};
        rustix::fs::accessat(
            CWD,
            path,
            Access::READ_OK | Access::WRITE_OK,
            AtFlags::empty(),
        )
        .map_err(std::io::Error::from)
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).map(drop)
    }
}

/// Classifies a failure to open or set up a connection. SQLite reports
/// "cannot open" alike for a missing file, a permission and descriptor
/// exhaustion (EMFILE/ENFILE), so the path is looked at (without opening
/// it, see [`may_read_write`]): only a file that is not there is `Missing`;
/// everything else is `Unavailable`, with the permission problem when there
/// is one.
fn classify_open_error(path: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(msg) | StoreError::Other(msg) => {
            match std::fs::metadata(path).and_then(|_| may_read_write(path)) {
                Err(io) => io_fault(path, &io),
                Ok(()) => StoreError::Unavailable(msg),
            }
        }
        StoreError::Missing(_) => match std::fs::metadata(path) {
            Err(io) => io_fault(path, &io),
            Ok(_) => StoreError::Unavailable(path.display().to_string()),
        },
        other => other,
    }
}

/// Opens one connection with the project's pragmas.
fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    open_connection_inner(path, read_only).map_err(|e| classify_open_error(path, e))
}

fn open_connection_inner(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if read_only {
        conn.execute_batch("PRAGMA query_only=ON;")?;
    } else {
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Other(format!(
                "could not switch the database to WAL mode (got {mode})"
            )));
        }
        // FULL: fsync the WAL on every commit (see the module docs).
        // foreign_keys: integrity; temp_store: no temp files on the SD card.
        conn.execute_batch(
            "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
        )?;
    }
    Ok(conn)
}

/// A tiny pool of read-only connections. Opening a connection is cheap, so the
/// pool only bounds how many exist and reuses idle ones.
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    open: Mutex<usize>,
    freed: Condvar,
}

impl ReaderPool {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
            open: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    fn get(&self) -> Result<PooledReader<'_>> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(PooledReader {
                pool: self,
                conn: Some(conn),
            });
        }
        {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            while *open >= MAX_READERS {
                let (guard, timeout) = self
                    .freed
                    .wait_timeout(open, BUSY_TIMEOUT)
                    .unwrap_or_else(|p| p.into_inner());
                open = guard;
                if timeout.timed_out() {
                    return Err(StoreError::Locked);
                }
                if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                    return Ok(PooledReader {
                        pool: self,
                        conn: Some(conn),
                    });
                }
            }
            *open += 1;
        }
        match open_connection(&self.path, true) {
            Ok(conn) => Ok(PooledReader {
                pool: self,
                conn: Some(conn),
            }),
            Err(e) => {
                self.release_slot();
                Err(e)
            }
        }
    }

    fn put(&self, mut reader: PooledReader<'_>) {
        if let Some(conn) = reader.conn.take() {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            self.freed.notify_one();
        }
    }

    fn release_slot(&self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        *open = open.saturating_sub(1);
        self.freed.notify_one();
    }
}

/// A checked-out reader. Returned to the pool only after a successful read;
/// a connection that saw an error is closed, so a replaced or corrupted file
/// is reopened fresh next time.
struct PooledReader<'a> {
    pool: &'a ReaderPool,
    conn: Option<Connection>,
}

impl std::ops::Deref for PooledReader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // `conn` is only taken in `put`, which consumes the reader.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.release_slot();
        }
    }
}

#[cfg(test)]
mod tests;
