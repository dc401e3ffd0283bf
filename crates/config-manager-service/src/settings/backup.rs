//! Backup settings (`LITESTREAM_*`, `BACKUP_SNAPSHOT_*`), validated once at
//! start-up like every other setting. The Litestream configuration file
//! written from them is `backup::config`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::{bad, EnvSource, SettingsError};
use super::table::{
    BACKUP_SNAPSHOT_DIR, BACKUP_SNAPSHOT_INTERVAL_SECS, BACKUP_SNAPSHOT_KEEP, CONFIG_DB_PATH,
    LITESTREAM_ACCESS_KEY_ID, LITESTREAM_BIN, LITESTREAM_BUCKET, LITESTREAM_CHECK_INTERVAL_MS,
    LITESTREAM_ENDPOINT, LITESTREAM_FORCE_PATH_STYLE, LITESTREAM_METRICS_ADDR, LITESTREAM_MODE,
    LITESTREAM_PATH, LITESTREAM_REGION, LITESTREAM_RETENTION, LITESTREAM_SECRET_ACCESS_KEY,
    LITESTREAM_SOCKET, LITESTREAM_SYNC_INTERVAL,
};
use super::RedactedString;

/// How the manager runs Litestream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LitestreamMode {
    /// No continuous backup; health says `disabled`.
    Disabled,
    /// The manager writes the Litestream config and runs `litestream
    /// replicate` as its child.
    Supervised,
    /// Litestream runs elsewhere (a sidecar container, a system service); the
    /// manager only gathers evidence through its control socket.
    External,
}

/// A duration written the way Litestream (Go) reads it: `500ms`, `1s`, `168h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Parses `<n><unit>` groups (`ms`, `s`, `m`, `h`), e.g. `1h30m`, `500ms`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let mut total = Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return None;
            }
            let n: u64 = rest[..digits].parse().ok()?;
            rest = &rest[digits..];
            let (unit, len) = if rest.starts_with("ms") {
                (Duration::from_millis(1), 2)
            } else if rest.starts_with('s') {
                (Duration::from_secs(1), 1)
            } else if rest.starts_with('m') {
                (Duration::from_secs(60), 1)
            } else if rest.starts_with('h') {
                (Duration::from_secs(3600), 1)
            } else {
                return None;
            };
            rest = &rest[len..];
            total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
        }
        Some(Self(total))
    }

    /// The Go form, in the largest unit that is exact.
    pub fn render(&self) -> String {
        let ms = self.0.as_millis();
        if ms % 3_600_000 == 0 {
            format!("{}h", ms / 3_600_000)
        } else if ms % 60_000 == 0 {
            format!("{}m", ms / 60_000)
        } else if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }
}

/// Where replicas go: one S3-compatible bucket and path.
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    /// `LITESTREAM_ENDPOINT` (MinIO, moto, ...); `None` means AWS S3.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Key prefix inside the bucket (`LITESTREAM_PATH`, default: the
    /// database file name).
    pub path: String,
    pub region: String,
    pub access_key_id: Option<RedactedString>,
    pub secret_access_key: Option<RedactedString>,
    pub force_path_style: bool,
    /// How often Litestream uploads new transactions (`LITESTREAM_SYNC_INTERVAL`).
    pub sync_interval: GoDuration,
    /// How long point-in-time restore reaches back (`LITESTREAM_RETENTION`).
    pub retention: GoDuration,
}

impl ReplicaSettings {
    /// `s3://bucket/path`, for messages (no credentials).
    pub fn describe(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("s3://{}/{} at {e}", self.bucket, self.path),
            None => format!("s3://{}/{}", self.bucket, self.path),
        }
    }

    /// Credentials for the child's environment (never in the config file).
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(k) = &self.access_key_id {
            env.push(("AWS_ACCESS_KEY_ID", k.0.clone()));
        }
        if let Some(s) = &self.secret_access_key {
            env.push(("AWS_SECRET_ACCESS_KEY", s.0.clone()));
        }
        env
    }
}

/// Continuous backup with Litestream.
#[derive(Debug, Clone)]
pub struct LitestreamSettings {
    pub mode: LitestreamMode,
    /// `LITESTREAM_BIN` (default `litestream` from `PATH`).
    pub bin: PathBuf,
    /// The bucket, when configured (supervised mode needs it; external mode
    /// and `restore` use it when present).
    pub replica: Option<ReplicaSettings>,
    /// Litestream's control socket (`LITESTREAM_SOCKET`, default
    /// `<data dir>/litestream.sock` in supervised mode).
    pub socket: Option<PathBuf>,
    /// The generated config, `<data dir>/litestream.yml` (supervised mode).
    pub config_path: PathBuf,
    /// The database, absolute (Litestream and its socket API name it so).
    pub db_path: PathBuf,
    /// How often backup health is verified (`LITESTREAM_CHECK_INTERVAL`).
    pub check_interval: Duration,
    /// `LITESTREAM_METRICS_ADDR`: Litestream's own Prometheus endpoint.
    pub metrics_addr: Option<String>,
}

/// Periodic local snapshots (the alternative without S3).
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    /// `BACKUP_SNAPSHOT_DIR`.
    pub dir: PathBuf,
    /// `BACKUP_SNAPSHOT_INTERVAL` (default 1h).
    pub interval: Duration,
    /// `BACKUP_SNAPSHOT_KEEP`: how many snapshots are kept (default 24).
    pub keep: usize,
    /// The database, as configured.
    pub db_path: PathBuf,
}

/// Every backup setting.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub litestream: LitestreamSettings,
    pub snapshots: Option<SnapshotSettings>,
}

/// The longest path a Unix socket address holds (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// S3 bucket naming rules (3–63 of `a-z 0-9 . -`, starting and ending with a
/// letter or digit), checked here so a typo is a clear start-up error and not
/// a 400 from the server at the first upload.
fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

impl BackupSettings {
    /// Reads and checks every backup variable; errors name the variable.
    pub fn from_env(env: &EnvSource, db_path: &Path) -> Result<Self, SettingsError> {
        let abs_db = std::path::absolute(db_path)
            .map_err(|e| bad(CONFIG_DB_PATH.name, format!("cannot resolve the path: {e}")))?;
        let data_dir = abs_db
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let replica = Self::replica(env, &abs_db)?;
        let mode = match env.choice(LITESTREAM_MODE)? {
            None if replica.is_some() => LitestreamMode::Supervised,
            Some("supervised") => LitestreamMode::Supervised,
            Some("external") => LitestreamMode::External,
            _ => LitestreamMode::Disabled,
        };
        if mode == LitestreamMode::Supervised && replica.is_none() {
            return Err(bad(
                LITESTREAM_BUCKET.name,
                "is required when LITESTREAM_MODE=supervised",
            ));
        }
        let socket = match (env.get(LITESTREAM_SOCKET), mode) {
            (Some(s), _) => Some(
                std::path::absolute(s.trim())
                    .map_err(|e| bad(LITESTREAM_SOCKET.name, format!("cannot resolve: {e}")))?,
            ),
            (None, LitestreamMode::Supervised) => Some(data_dir.join("litestream.sock")),
            (None, LitestreamMode::External) => {
                return Err(bad(
                    LITESTREAM_SOCKET.name,
                    "is required when LITESTREAM_MODE=external: backup health is verified \
                     through the control socket of the external Litestream",
                ))
            }
            (None, LitestreamMode::Disabled) => None,
        };
        if let Some(s) = &socket {
            if s.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(bad(
                    LITESTREAM_SOCKET.name,
                    format!(
                        "the control socket path {} is longer than the {MAX_SOCKET_PATH} bytes a \
                         Unix socket allows; set LITESTREAM_SOCKET to a shorter path",
                        s.display()
                    ),
                ));
            }
        }
        let check_interval = env.duration(LITESTREAM_CHECK_INTERVAL_MS)?;
        let metrics_addr = match env.get(LITESTREAM_METRICS_ADDR).map(str::trim) {
            None => None,
            Some(a) => {
                a.parse::<std::net::SocketAddr>().map_err(|_| {
                    bad(
                        LITESTREAM_METRICS_ADDR.name,
                        "must be host:port, e.g. 127.0.0.1:9090",
                    )
                })?;
                Some(a.to_owned())
            }
        };
        let litestream = LitestreamSettings {
            mode,
            bin: PathBuf::from(env.text(LITESTREAM_BIN).map_or("litestream", str::trim)),
            replica,
            socket,
            config_path: data_dir.join("litestream.yml"),
            db_path: abs_db,
            check_interval,
            metrics_addr,
        };
        let snapshots = match env.get(BACKUP_SNAPSHOT_DIR) {
            None => None,
            Some(dir) => {
                let keep: usize = env.int(BACKUP_SNAPSHOT_KEEP)?;
                Some(SnapshotSettings {
                    dir: PathBuf::from(dir.trim()),
                    interval: env.duration(BACKUP_SNAPSHOT_INTERVAL_SECS)?,
                    keep,
                    db_path: db_path.to_owned(),
                })
            }
        };
        Ok(Self {
            litestream,
            snapshots,
        })
    }

    fn replica(env: &EnvSource, abs_db: &Path) -> Result<Option<ReplicaSettings>, SettingsError> {
        let Some(bucket) = env.get(LITESTREAM_BUCKET).map(str::trim) else {
            return Ok(None);
        };
        if !valid_bucket(bucket) {
            return Err(bad(
                LITESTREAM_BUCKET.name,
                "must be a valid S3 bucket name (3-63 characters of a-z, 0-9, '.', '-')",
            ));
        }
        let endpoint = env
            .get(LITESTREAM_ENDPOINT)
            .map(|e| e.trim().trim_end_matches('/').to_owned());
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(bad(
                    LITESTREAM_ENDPOINT.name,
                    "must start with http:// or https://",
                ));
            }
        }
        let default_path = abs_db
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config.db".into());
        let path = env
            .get(LITESTREAM_PATH)
            .map_or(default_path, |p| p.trim().trim_matches('/').to_owned());
        if path.is_empty() || path.split('/').any(|seg| seg.is_empty() || seg == "..") {
            return Err(bad(
                LITESTREAM_PATH.name,
                "must be a key prefix like 'robots/tars-1/config.db' (no empty or '..' segments)",
            ));
        }
        let access_key_id = env
            .get(LITESTREAM_ACCESS_KEY_ID)
            .map(|k| RedactedString(k.trim().to_owned()));
        let secret_access_key = env
            .get(LITESTREAM_SECRET_ACCESS_KEY)
            .map(|k| RedactedString(k.trim().to_owned()));
        if access_key_id.is_some() != secret_access_key.is_some() {
            return Err(bad(
                LITESTREAM_SECRET_ACCESS_KEY.name,
                "LITESTREAM_ACCESS_KEY_ID and LITESTREAM_SECRET_ACCESS_KEY are set together or not at all",
            ));
        }
        Ok(Some(ReplicaSettings {
            force_path_style: env.flag_or(LITESTREAM_FORCE_PATH_STYLE, endpoint.is_some())?,
            endpoint,
            bucket: bucket.to_owned(),
            path,
            region: env
                .text(LITESTREAM_REGION)
                .map_or("us-east-1", str::trim)
                .to_owned(),
            access_key_id,
            secret_access_key,
            sync_interval: env.go_duration(LITESTREAM_SYNC_INTERVAL)?,
            retention: env.go_duration(LITESTREAM_RETENTION)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn unset_means_disabled() {
        let s = BackupSettings::from_env(&EnvSource::of(&[]), Path::new("data/config.db")).unwrap();
        assert_eq!(s.litestream.mode, LitestreamMode::Disabled);
        assert!(s.litestream.replica.is_none() && s.snapshots.is_none());
    }

    #[test]
    fn bucket_means_supervised_with_defaults() {
        let s = BackupSettings::from_env(
            &EnvSource::of(&[
                ("LITESTREAM_BUCKET", "tars-config"),
                ("LITESTREAM_ENDPOINT", "http://minio:9000/"),
            ]),
            Path::new("/var/lib/cm/config.db"),
        )
        .unwrap();
        let ls = s.litestream;
        assert_eq!(ls.mode, LitestreamMode::Supervised);
        assert_eq!(
            ls.socket.unwrap(),
            PathBuf::from("/var/lib/cm/litestream.sock")
        );
        assert_eq!(ls.config_path, PathBuf::from("/var/lib/cm/litestream.yml"));
        let r = ls.replica.unwrap();
        assert_eq!(r.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(r.path, "config.db");
        assert!(r.force_path_style);
        assert_eq!(r.retention.render(), "168h");
        assert_eq!(r.sync_interval.render(), "1s");
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("LITESTREAM_BUCKET", "bk")], "LITESTREAM_BUCKET"),
            (&[("LITESTREAM_MODE", "supervised")], "LITESTREAM_BUCKET"),
            (&[("LITESTREAM_MODE", "external")], "LITESTREAM_SOCKET"),
            (&[("LITESTREAM_MODE", "sometimes")], "LITESTREAM_MODE"),
            (
                &[
                    ("LITESTREAM_BUCKET", "tars-config"),
                    ("LITESTREAM_RETENTION", "soon"),
                ],
                "LITESTREAM_RETENTION",
            ),
            (
                &[
                    ("LITESTREAM_BUCKET", "tars-config"),
                    ("LITESTREAM_ENDPOINT", "minio:9000"),
                ],
                "LITESTREAM_ENDPOINT",
            ),
            (
                &[
                    ("LITESTREAM_BUCKET", "tars-config"),
                    ("LITESTREAM_ACCESS_KEY_ID", "k"),
                ],
                "LITESTREAM_SECRET_ACCESS_KEY",
            ),
            (
                &[("BACKUP_SNAPSHOT_DIR", "b"), ("BACKUP_SNAPSHOT_KEEP", "0")],
                "BACKUP_SNAPSHOT_KEEP",
            ),
        ];
        for (pairs, var) in cases {
            let err = BackupSettings::from_env(&EnvSource::of(pairs), Path::new("data/config.db"))
                .unwrap_err();
            assert_eq!(err.var, *var, "{pairs:?}");
        }
    }

    #[test]
    fn long_socket_paths_are_refused() {
        let long = format!("/{}/config.db", "d".repeat(120));
        let err = BackupSettings::from_env(
            &EnvSource::of(&[("LITESTREAM_BUCKET", "tars-config")]),
            Path::new(&long),
        )
        .unwrap_err();
        assert_eq!(err.var, "LITESTREAM_SOCKET");
    }

    #[test]
    fn durations_round_trip() {
        for (text, ms) in [
            ("500ms", 500),
            ("1s", 1000),
            ("1h30m", 5_400_000),
            ("168h", 604_800_000),
        ] {
            let d = GoDuration::parse(text).unwrap();
            assert_eq!(d.0.as_millis(), ms);
            assert_eq!(GoDuration::parse(&d.render()).unwrap(), d);
        }
        for bad in ["", "s", "1d", "-1s", "1.5s"] {
            assert!(GoDuration::parse(bad).is_none(), "{bad}");
        }
    }

    /// The deprecated Go-duration names still work while the new names are
    /// unset, are remembered for one warning each, and may not be set
    /// together with the new names.
    #[test]
    fn deprecated_duration_names() {
        let db = Path::new("data/config.db");
        let old = EnvSource::of(&[
            ("LITESTREAM_BUCKET", "tars-config"),
            ("LITESTREAM_CHECK_INTERVAL", "500ms"),
            ("BACKUP_SNAPSHOT_DIR", "snapshots"),
            ("BACKUP_SNAPSHOT_INTERVAL", "1h30m"),
        ]);
        let s = BackupSettings::from_env(&old, db).unwrap();
        assert_eq!(s.litestream.check_interval, Duration::from_millis(500));
        assert_eq!(s.snapshots.unwrap().interval, Duration::from_secs(5400));
        let warnings = old.deprecations();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("BACKUP_SNAPSHOT_INTERVAL_SECS"));
        assert!(warnings[1].contains("LITESTREAM_CHECK_INTERVAL_MS"));
        // Reading again warns no more than once.
        BackupSettings::from_env(&old, db).unwrap();
        assert_eq!(old.deprecations().len(), 2);

        let new = EnvSource::of(&[
            ("LITESTREAM_BUCKET", "tars-config"),
            ("LITESTREAM_CHECK_INTERVAL_MS", "500"),
            ("BACKUP_SNAPSHOT_DIR", "snapshots"),
            ("BACKUP_SNAPSHOT_INTERVAL_SECS", "5400"),
        ]);
        let s = BackupSettings::from_env(&new, db).unwrap();
        assert_eq!(s.litestream.check_interval, Duration::from_millis(500));
        assert_eq!(s.snapshots.unwrap().interval, Duration::from_secs(5400));
        assert!(new.deprecations().is_empty());

        let defaults = BackupSettings::from_env(
            &EnvSource::of(&[
                ("LITESTREAM_BUCKET", "tars-config"),
                ("BACKUP_SNAPSHOT_DIR", "s"),
            ]),
            db,
        )
        .unwrap();
        assert_eq!(defaults.litestream.check_interval, Duration::from_secs(30));
        assert_eq!(
            defaults.snapshots.unwrap().interval,
            Duration::from_secs(3600)
        );
    }

    /// Bad forms of the duration settings, old and new names: each error
    /// names the variable it is about and never echoes the value.
    #[test]
    fn bad_durations_name_the_variable() {
        let cases: &[(&str, &str, &str)] = &[
            ("LITESTREAM_CHECK_INTERVAL_MS", "30s", "whole number"),
            ("LITESTREAM_CHECK_INTERVAL_MS", "-5", "whole number"),
            (
                "LITESTREAM_CHECK_INTERVAL_MS",
                "199",
                "between 200 and 3600000",
            ),
            ("LITESTREAM_CHECK_INTERVAL_MS", "3600001", "between"),
            ("LITESTREAM_CHECK_INTERVAL", "45", "not a duration"),
            ("LITESTREAM_CHECK_INTERVAL", "1d", "not a duration"),
            ("LITESTREAM_CHECK_INTERVAL", "100ms", "between 200ms and 1h"),
            ("BACKUP_SNAPSHOT_INTERVAL_SECS", "1h", "whole number"),
            ("BACKUP_SNAPSHOT_INTERVAL_SECS", "0", "between 1 and 604800"),
            ("BACKUP_SNAPSHOT_INTERVAL_SECS", "604801", "between"),
            ("BACKUP_SNAPSHOT_INTERVAL", "3600", "not a duration"),
            ("BACKUP_SNAPSHOT_INTERVAL", "169h", "between 1s and 168h"),
            ("LITESTREAM_SYNC_INTERVAL", "77", "not a duration"),
            ("LITESTREAM_SYNC_INTERVAL", "2h", "between 100ms and 1h"),
            ("LITESTREAM_RETENTION", "30m", "between 1h and"),
        ];
        for (var, value, expected) in cases {
            let pairs = [
                ("LITESTREAM_BUCKET", "tars-config"),
                ("BACKUP_SNAPSHOT_DIR", "snapshots"),
                (*var, *value),
            ];
            let err = BackupSettings::from_env(&EnvSource::of(&pairs), Path::new("data/config.db"))
                .unwrap_err();
            assert_eq!(err.var, *var, "{var}={value}");
            assert!(err.reason.contains(expected), "{var}={value}: {err}");
            if value.len() >= 3 {
                assert!(!err.reason.contains(value), "{var}={value} echoed: {err}");
            }
        }
        // Old and new name together: refused, naming the old one.
        for pairs in [
            [
                ("LITESTREAM_CHECK_INTERVAL", "30s"),
                ("LITESTREAM_CHECK_INTERVAL_MS", "30000"),
            ],
            [
                ("BACKUP_SNAPSHOT_INTERVAL", "1h"),
                ("BACKUP_SNAPSHOT_INTERVAL_SECS", "3600"),
            ],
        ] {
            let mut all = vec![
                ("LITESTREAM_BUCKET", "tars-config"),
                ("BACKUP_SNAPSHOT_DIR", "snapshots"),
            ];
            all.extend(pairs);
            let err = BackupSettings::from_env(&EnvSource::of(&all), Path::new("data/config.db"))
                .unwrap_err();
            assert_eq!(err.var, pairs[0].0);
            assert!(err.reason.contains(pairs[1].0), "{err}");
        }
    }
}
