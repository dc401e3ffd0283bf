//! The Litestream configuration file written from the backup settings
//! (`LITESTREAM_*`, parsed in `crate::settings::backup` and re-exported here
//! for the backup tasks).
//!
//! Credentials never go into the generated file: the child process gets them
//! as `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` in its environment (the
//! file is still created 0600, it names the bucket and paths). Litestream is
//! started with `-no-expand-env`, so a `$` in a path or bucket name is taken
//! literally, and every string value is written as a JSON string, which YAML
//! reads as a double-quoted scalar: no value can change the file's structure.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

pub use crate::settings::backup::{
    BackupSettings, GoDuration, LitestreamMode, LitestreamSettings, ReplicaSettings,
    SnapshotSettings,
};

/// How long Litestream may keep trying to upload on shutdown
/// (`shutdown-sync-timeout`; its default of 30 s would hold up a service
/// stop when S3 is unreachable).
pub const SHUTDOWN_SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// A YAML double-quoted scalar (a JSON string is one).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The Litestream configuration for `db` replicating to `replica`.
///
/// `socket` enables the control socket the manager verifies backups through;
/// snapshots are taken at least daily and kept for the retention, which is
/// what point-in-time restore can reach.
pub fn render_config(
    db: &Path,
    replica: &ReplicaSettings,
    socket: Option<&Path>,
    metrics_addr: Option<&str>,
) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Written by config-manager from the LITESTREAM_* settings at every start.\n\
         # Edits are overwritten; change the settings instead. Credentials are passed\n\
         # in the environment, not stored here."
    );
    if let Some(addr) = metrics_addr {
        let _ = writeln!(y, "addr: {}", quoted(addr));
    }
    let _ = writeln!(
        y,
        "shutdown-sync-timeout: {}",
        GoDuration(SHUTDOWN_SYNC_TIMEOUT).render()
    );
    if let Some(sock) = socket {
        let _ = writeln!(
            y,
            "socket:\n  enabled: true\n  path: {}",
            quoted(&sock.to_string_lossy())
        );
    }
    let snapshot_interval = GoDuration(replica.retention.0.min(Duration::from_secs(24 * 3600)));
    let _ = writeln!(
        y,
        "snapshot:\n  interval: {}\n  retention: {}",
        snapshot_interval.render(),
        replica.retention.render()
    );
    let _ = writeln!(y, "dbs:\n  - path: {}", quoted(&db.to_string_lossy()));
    let _ = writeln!(y, "    replica:\n      type: s3");
    let _ = writeln!(y, "      bucket: {}", quoted(&replica.bucket));
    let _ = writeln!(y, "      path: {}", quoted(&replica.path));
    let _ = writeln!(y, "      region: {}", quoted(&replica.region));
    if let Some(e) = &replica.endpoint {
        let _ = writeln!(y, "      endpoint: {}", quoted(e));
    }
    if replica.force_path_style {
        let _ = writeln!(y, "      force-path-style: true");
    }
    let _ = writeln!(y, "      sync-interval: {}", replica.sync_interval.render());
    y
}

/// Writes `contents` to `path` with mode 0600 (created that way, never
/// briefly readable by others), replacing the file atomically.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    config_manager_core::fs::atomic::write_atomic(path, contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::settings::EnvSource;

    #[test]
    fn config_quotes_every_value_and_holds_no_secret() {
        let mut s = BackupSettings::from_env(
            &EnvSource::of(&[
                ("LITESTREAM_BUCKET", "tars-config"),
                ("LITESTREAM_ACCESS_KEY_ID", "AKIAEXAMPLE"),
                ("LITESTREAM_SECRET_ACCESS_KEY", "very-secret"),
            ]),
            Path::new("/data/config.db"),
        )
        .unwrap()
        .litestream;
        let replica = s.replica.as_mut().unwrap();
        replica.path = "a\"b\n  evil: yes".into();
        let text = render_config(&s.db_path, replica, s.socket.as_deref(), None);
        assert!(text.contains(r#"path: "a\"b\n  evil: yes""#), "{text}");
        assert!(!text.contains("very-secret") && !text.contains("AKIAEXAMPLE"));
        assert!(text.contains("shutdown-sync-timeout: 5s"));
        assert_eq!(
            replica.child_env(),
            vec![
                ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "very-secret".to_owned())
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/litestream.yml");
        write_private(&path, "x: 1\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
