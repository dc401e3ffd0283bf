//! Owner-only (0600) files, whatever the process umask.
//!
//! Why: the database holds the encrypted secrets, the audit log and the
//! whole history; under the usual 022 umask SQLite created it (and its WAL
//! and SHM, which take the database file's mode) world-readable (issue 14,
//! finding 10). The service also sets its umask to 077 at start, but this
//! crate is used by the CLI's offline commands and tools too, so it does not
//! rely on that.

use std::fs::File;
use std::io;
use std::path::Path;

/// Creates (or truncates) `path` for writing with mode 0600.
pub fn create(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    // `mode` applies only when the file is created: tighten one that existed.
    restrict_file(&file)?;
    Ok(file)
}

/// Makes sure a database file exists before SQLite opens it, with mode 0600,
/// and tightens an existing database and its `-wal`/`-shm` to 0600 (SQLite
/// gives new WAL/SHM files the database file's mode).
pub fn prepare_database(path: &Path) -> io::Result<()> {
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(_) => {}
            // Created by someone else meanwhile: tightened below.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        restrict(Path::new(&name))?;
    }
    Ok(())
}

/// Sets an existing file to 0600 when group or others have any access;
/// a missing file is fine.
pub fn restrict(path: &Path) -> io::Result<()> {
    match File::open(path) {
        Ok(f) => restrict_file(&f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn restrict_file(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn database_and_companions_become_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        prepare_database(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        let wal = dir.path().join("c.db-wal");
        std::fs::write(&wal, b"x").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare_database(&db).unwrap();
        assert_eq!(mode(&wal), 0o600);
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        drop(create(&f).unwrap());
        assert_eq!(mode(&f), 0o600);
    }
}
