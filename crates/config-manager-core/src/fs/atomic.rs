//! Replacing a file atomically: a crash or power loss leaves either the old
//! file or the new one under the final name, never a torn or empty one.
//!
//! The steps: a temporary file is created in the target's directory (so the
//! rename stays within one file system) with mode 0600 unless told
//! otherwise, written, fsynced, renamed over the target, and then the
//! directory is fsynced so the rename itself is durable. On any failure the
//! temporary file is removed. The temporary file and the rename come from
//! the `tempfile` crate; the fsyncs and the mode are ours.
//!
//! Temporary files are named `.<target file name>.<random>.tmp`
//! ([`temp_target`] recognises them, for callers that clean up after a
//! crash).

use std::fs::File;
#[cfg(unix)]
use std::fs::Permissions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;
use thiserror::Error;

/// The mode of files written by default: owner read/write only (they hold
/// keys, secrets, configuration).
pub const DEFAULT_MODE: u32 = 0o600;

const TEMP_SUFFIX: &str = ".tmp";

/// Which step of an atomic write failed, and on which target file.
#[derive(Debug, Error)]
#[error("cannot {step} {path}: {source}")]
pub struct AtomicWriteError {
    /// The file that was to be replaced.
    pub path: PathBuf,
    /// What was being done, worded to read before the path.
    pub step: &'static str,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

impl AtomicWriteError {
    /// The step and the OS error without the path, with the OS error's kind,
    /// for callers whose own error already names the file.
    pub fn without_path(self) -> io::Error {
        io::Error::new(
            self.source.kind(),
            format!("{}: {}", self.step, self.source),
        )
    }
}

impl From<AtomicWriteError> for io::Error {
    /// The whole message (naming the path), with the OS error's kind.
    fn from(e: AtomicWriteError) -> Self {
        io::Error::new(e.source.kind(), e.to_string())
    }
}

/// How to write: the file mode, whether to create missing directories and
/// whether an existing file may be replaced. `AtomicWriter::default()` is
/// mode 0600, no directory creation, replace.
#[derive(Debug, Clone, Copy)]
pub struct AtomicWriter {
    mode: u32,
    create_dirs: Option<u32>,
    no_clobber: bool,
}

impl Default for AtomicWriter {
    fn default() -> Self {
        Self {
            mode: DEFAULT_MODE,
            create_dirs: None,
            no_clobber: false,
        }
    }
}

/// Writes `bytes` to `path` atomically with mode 0600 (see the module
/// documentation). Blocking.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    AtomicWriter::default().write(path, bytes)
}

impl AtomicWriter {
    /// The file's mode on Unix (applied at creation, so the content is never
    /// readable under a wider mode; the process umask can only narrow it).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Creates the target's missing directories, each with `mode`.
    pub fn create_dirs(mut self, mode: u32) -> Self {
        self.create_dirs = Some(mode);
        self
    }

    /// Refuses to replace an existing file (the error has kind
    /// `AlreadyExists`); the check and the rename are one step.
    pub fn no_clobber(mut self) -> Self {
        self.no_clobber = true;
        self
    }

    /// Writes `bytes` to `path` atomically. Blocking.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
        let mut pending = self.begin(path)?;
        pending
            .file
            .as_file_mut()
            .write_all(bytes)
            .map_err(|source| pending.error("write the temporary file for", source))?;
        pending.commit()
    }

    /// Creates the temporary file for `path`, for content another writer
    /// produces (e.g. SQLite's `VACUUM INTO` on [`PendingFile::temp_path`]).
    /// Nothing replaces `path` until [`PendingFile::commit`]; dropping the
    /// pending file removes the temporary file.
    pub fn begin(&self, path: &Path) -> Result<PendingFile, AtomicWriteError> {
        let error = |step, source| AtomicWriteError {
            path: path.to_owned(),
            step,
            source,
        };
        let dir = parent_dir(path);
        if let Some(mode) = self.create_dirs {
            create_dirs(dir, mode).map_err(|e| error("create the directory of", e))?;
        }
        let name = path
            .file_name()
            .ok_or_else(|| {
                error(
                    "write",
                    io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
                )
            })?
            .to_string_lossy();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(TEMP_SUFFIX);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            builder.permissions(Permissions::from_mode(self.mode));
        }
        let file = builder
            .tempfile_in(dir)
            .map_err(|e| error("create a temporary file beside", e))?;
        Ok(PendingFile {
            file,
            path: path.to_owned(),
            no_clobber: self.no_clobber,
        })
    }
}

/// A temporary file that will replace its target on [`commit`](Self::commit).
#[derive(Debug)]
pub struct PendingFile {
    file: NamedTempFile,
    path: PathBuf,
    no_clobber: bool,
}

impl PendingFile {
    /// Where the content goes before the rename.
    pub fn temp_path(&self) -> &Path {
        self.file.path()
    }

    /// The temporary file, open for writing.
    pub fn file_mut(&mut self) -> &mut File {
        self.file.as_file_mut()
    }

    /// An error of this write, naming the target.
    pub fn error(&self, step: &'static str, source: io::Error) -> AtomicWriteError {
        AtomicWriteError {
            path: self.path.clone(),
            step,
            source,
        }
    }

    /// fsyncs the temporary file, renames it over the target and fsyncs the
    /// directory. On failure before the rename the temporary file is removed.
    pub fn commit(self) -> Result<(), AtomicWriteError> {
        self.commit_with(&sync_dir)
    }

    fn commit_with(self, sync: &dyn Fn(&Path) -> io::Result<()>) -> Result<(), AtomicWriteError> {
        let path = self.path.clone();
        let error = |step, source| AtomicWriteError {
            path: path.clone(),
            step,
            source,
        };
        // Syncs the inode's data whoever wrote it (our handle or another
        // writer of the same path).
        self.file
            .as_file()
            .sync_all()
            .map_err(|e| error("fsync the temporary file for", e))?;
        let persisted = if self.no_clobber {
            self.file.persist_noclobber(&path)
        } else {
            self.file.persist(&path)
        };
        // On failure `tempfile` hands the file back; dropping it removes it.
        persisted.map_err(|e| error("rename the temporary file onto", e.error))?;
        sync(parent_dir(&path)).map_err(|e| error("fsync the directory of", e))
    }
}

/// The file name a temporary file of this module was for, if `file_name` is
/// one (`.<name>.<random>.tmp` gives `<name>`).
pub fn temp_target(file_name: &str) -> Option<&str> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let (target, random) = inner.rsplit_once('.')?;
    (!target.is_empty() && !random.is_empty()).then_some(target)
}

/// fsyncs the directory holding `path`, so a rename or removal in it
/// survives power loss (a no-op where directories cannot be opened).
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    sync_dir(parent_dir(path))
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn create_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
}

#[cfg(not(unix))]
fn create_dirs(dir: &Path, _mode: u32) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::cell::RefCell;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn new_file_is_owner_only_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(entries(dir.path()), ["a.json"]);
    }

    #[test]
    fn mode_is_the_one_asked_for_even_over_a_wider_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(mode_of(&path), 0o600);
        AtomicWriter::default()
            .mode(0o400)
            .write(&path, b"newer")
            .unwrap();
        assert_eq!(mode_of(&path), 0o400);
    }

    #[test]
    fn content_is_replaced_as_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, b"a much longer old content").unwrap();
        // A reader holding the old file keeps reading the old content: the
        // new one is a different inode, swapped in by the rename.
        let old = File::open(&path).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mut kept = String::new();
        std::io::Read::read_to_string(&mut &old, &mut kept).unwrap();
        assert_eq!(kept, "a much longer old content");
    }

    #[test]
    fn directory_is_fsynced_after_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let synced = RefCell::new(Vec::new());
        let pending = AtomicWriter::default().begin(&path).unwrap();
        pending
            .commit_with(&|d: &Path| {
                // The rename happened before the directory sync.
                assert!(d.join("a").exists());
                synced.borrow_mut().push(d.to_owned());
                Ok(())
            })
            .unwrap();
        assert_eq!(synced.into_inner(), [dir.path().to_owned()]);
    }

    #[test]
    fn a_failed_directory_sync_is_reported_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let pending = AtomicWriter::default().begin(&path).unwrap();
        let err = pending
            .commit_with(&|_: &Path| Err(io::Error::other("disk gone")))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("fsync the directory"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
    }

    #[test]
    fn errors_name_the_path_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/a");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert_eq!(err.path, path);
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains(&path.display().to_string()));
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
        assert!(io.to_string().contains(&path.display().to_string()));
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn temp_file_is_removed_when_the_rename_fails() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory cannot be replaced by a file.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"").unwrap();
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("rename"), "{err}");
        assert_eq!(entries(dir.path()), ["taken"]);
    }

    #[test]
    fn temp_file_is_removed_when_dropped_uncommitted() {
        let dir = tempfile::tempdir().unwrap();
        let mut pending = AtomicWriter::default()
            .begin(&dir.path().join("a"))
            .unwrap();
        pending.file_mut().write_all(b"half").unwrap();
        let name = pending
            .temp_path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(temp_target(&name), Some("a"));
        drop(pending);
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn no_clobber_refuses_an_existing_file_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let writer = AtomicWriter::default().no_clobber();
        writer.write(&path, b"first").unwrap();
        let err = writer.write(&path, b"second").unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(entries(dir.path()), ["a"]);
    }

    #[test]
    fn missing_directories_are_created_with_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x/y/a");
        AtomicWriter::default()
            .create_dirs(0o700)
            .write(&path, b"1")
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"1");
        assert_eq!(mode_of(&dir.path().join("x/y")), 0o700);
    }

    #[test]
    fn bad_paths_are_refused() {
        let err = write_atomic(Path::new("/"), b"x").unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn temp_names_are_recognised() {
        assert_eq!(temp_target(".a.db.Xy12ab.tmp"), Some("a.db"));
        assert_eq!(temp_target("a.db.Xy12ab.tmp"), None);
        assert_eq!(temp_target(".a.db"), None);
        assert_eq!(temp_target("..x.tmp"), None);
    }
}
