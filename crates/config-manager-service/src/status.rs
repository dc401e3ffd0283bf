//! The live status of the service: database status, mode, LKG validity, MQTT
//! connection, backups. Every part reports into one board; the health
//! endpoint reads it and the MQTT publisher watches it for changes.

use config_manager_core::health::{DatabaseStatus, LitestreamStatus, OperationalMode};
use serde::Serialize;
use tokio::sync::watch;

/// Where the master-key rotation job is (`keys::rotation` runs it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RotationState {
    /// Nothing to re-seal (or the job has not counted yet).
    #[default]
    Idle,
    Running,
    Done,
    /// The database is not writable; the job waits for normal mode.
    Waiting,
}

/// Progress of the master-key rotation job, as `GET /keys/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationStatus {
    pub state: RotationState,
    pub current_key_id: String,
    pub total: usize,
    /// Secrets re-sealed by this run.
    pub resealed: usize,
    /// Secrets still sealed with a previous key.
    pub pending: usize,
    /// Secrets no configured key can open.
    pub unavailable: Vec<String>,
}

/// What the service knows about itself right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub database_status: DatabaseStatus,
    pub mode: OperationalMode,
    pub lkg_cache_valid: bool,
    pub mqtt_connected: bool,
    /// Whether `MQTT_URL` is set (the web UI warns only when it is and the
    /// link is down).
    pub mqtt_configured: bool,
    /// Backups as a whole (Litestream when configured, else local
    /// snapshots); see `backup`.
    pub litestream_status: LitestreamStatus,
    pub last_backup: Option<String>,
    /// Local snapshots on their own (`BACKUP_SNAPSHOT_DIR`).
    pub snapshot_status: LitestreamStatus,
    pub last_snapshot: Option<String>,
    /// The last state transition, for operators.
    pub event: Option<String>,
    /// Why the service is degraded; safe to show (no paths with secrets, no values).
    pub err: Option<String>,
    /// Progress of the master-key re-encryption job.
    pub rotation: RotationStatus,
    /// Background tasks that ended unexpectedly and are being restarted
    /// (`supervise`).
    pub degraded_tasks: std::collections::BTreeSet<&'static str>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            database_status: DatabaseStatus::Healthy,
            mode: OperationalMode::Normal,
            lkg_cache_valid: false,
            mqtt_connected: false,
            mqtt_configured: false,
            litestream_status: LitestreamStatus::Disabled,
            last_backup: None,
            snapshot_status: LitestreamStatus::Disabled,
            last_snapshot: None,
            event: None,
            err: None,
            rotation: Default::default(),
            degraded_tasks: Default::default(),
        }
    }
}

/// Shared, watchable status. Cloning shares the board.
#[derive(Clone)]
pub struct StatusBoard {
    tx: watch::Sender<Status>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusBoard {
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(Status::default()),
        }
    }

    /// A copy of the current status.
    pub fn get(&self) -> Status {
        self.tx.borrow().clone()
    }

    /// Changes the status; watchers are woken only when something changed.
    /// Returns whether it changed.
    pub fn update(&self, f: impl FnOnce(&mut Status)) -> bool {
        self.tx.send_if_modified(|s| {
            let before = s.clone();
            f(s);
            *s != before
        })
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.tx.subscribe()
    }
}
