//! Runs Litestream and reports backup health from evidence.
//!
//! **Supervised mode.** The manager writes `litestream.yml` (0600) into the
//! data directory and runs `litestream replicate` as its child:
//!
//! - At start, Litestream's local state (`.<db>-litestream/`) is reset
//!   (`litestream reset`). The manager checkpoints the WAL on shutdown while
//!   Litestream is already stopped, and a restore or a rebuild may have put
//!   another file in place; a fresh local state makes Litestream take a new
//!   snapshot instead of trusting positions that no longer match. Litestream
//!   continues the transaction ids of the replica ("database behind replica"),
//!   so point-in-time restore still reaches back across the restart.
//! - When the child dies it is restarted with backoff (1 s doubling to 60 s;
//!   back to 1 s after it ran for a minute). Health says `error` meanwhile.
//! - When the database file is replaced (a rebuild moves the broken file
//!   aside and creates a new one), Litestream would keep the old file open
//!   and fail; the child is stopped, its local state reset and started again.
//! - When the bucket answers but holds no restorable copy (it lost its
//!   snapshot: emptied or recreated), Litestream would keep adding increments
//!   nobody can restore until its next daily snapshot. After three such checks
//!   in a row it is restarted with fresh local state, which uploads a new
//!   snapshot (at most once per five minutes).
//! - On shutdown: SIGTERM, Litestream uploads what it can within its
//!   `shutdown-sync-timeout` (5 s), SIGKILL after a grace period.
//!
//! **External mode.** Nothing is started; a Litestream run elsewhere (a
//! sidecar) is checked through its control socket, and the bucket through a
//! private config file (`.litestream-check.yml`, never the sidecar's).
//!
//! In both modes, every `LITESTREAM_CHECK_INTERVAL_MS` the checks of
//! [`super::control`] run; `litestream_status` is `healthy` only when the
//! last check proved that every transaction committed before it could be
//! restored from the bucket, and `last_backup` is the time that check
//! started. None of this
//! can stop or slow the service: it runs in its own task and only writes the
//! status board.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use config_manager_core::domain::now_rfc3339;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::config::{
    render_config, write_private, LitestreamMode, LitestreamSettings, SHUTDOWN_SYNC_TIMEOUT,
};
use super::control::{self, BucketProbe, CheckError};
use super::Reporter;

/// First restart delay after the child died.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest restart delay.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A child that ran this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// SIGTERM → SIGKILL: Litestream's own upload deadline plus time to exit.
const STOP_GRACE: Duration = SHUTDOWN_SYNC_TIMEOUT.saturating_add(Duration::from_secs(2));
/// The first check after a (re)start waits this long for the control socket.
const FIRST_CHECK_DELAY: Duration = Duration::from_millis(500);

/// Runs the configured mode until `shutdown`.
pub(super) async fn run(ls: LitestreamSettings, reporter: Reporter, shutdown: CancellationToken) {
    match ls.mode {
        LitestreamMode::Disabled => {}
        LitestreamMode::Supervised => supervise(ls, reporter, shutdown).await,
        LitestreamMode::External => watch_external(ls, reporter, shutdown).await,
    }
}

/// One verification: upload forced through the socket, then a restore plan.
struct Checker {
    socket: PathBuf,
    db: PathBuf,
    probe: Option<BucketProbe>,
    timeout: Duration,
}

impl Checker {
    fn new(ls: &LitestreamSettings, socket: PathBuf, probe: Option<BucketProbe>) -> Self {
        Self {
            socket,
            db: ls.db_path.clone(),
            probe,
            // Long enough for a slow upload, short enough that an outage
            // shows within a few seconds of the check.
            timeout: ls
                .check_interval
                .clamp(Duration::from_secs(2), Duration::from_secs(10)),
        }
    }

    /// Returns the time the check started when it proved the replica current.
    async fn check(&self) -> Result<String, CheckError> {
        let started = now_rfc3339();
        let reply = control::sync(&self.socket, &self.db, self.timeout).await?;
        if let Some(probe) = &self.probe {
            probe.restorable_txid(reply.txid, self.timeout).await?;
        }
        tracing::debug!(txid = reply.txid, status = %reply.status, "backup verified");
        Ok(started)
    }

    /// Checks and reports; true when the bucket answered without a
    /// restorable copy.
    async fn report(&self, reporter: &Reporter) -> bool {
        match self.check().await {
            Ok(at) => {
                reporter.litestream_ok(at);
                false
            }
            Err(e) => {
                let unrestorable = matches!(e, CheckError::NotRestorable { .. });
                reporter.litestream_failed(e.to_string());
                unrestorable
            }
        }
    }
}

enum Outcome {
    Shutdown,
    Exited(String),
    DatabaseReplaced,
    /// The bucket answers but cannot restore the current state.
    Unrestorable,
}

/// Consecutive unrestorable checks before Litestream is made to upload a
/// fresh snapshot (a single one may be a check racing an upload).
const UNRESTORABLE_CHECKS: u32 = 3;
/// At most one such repair per this period, so a bucket that stays broken
/// does not restart Litestream in a loop.
const REPAIR_EVERY: Duration = Duration::from_secs(300);

async fn supervise(ls: LitestreamSettings, reporter: Reporter, shutdown: CancellationToken) {
    let (Some(replica), Some(socket)) = (ls.replica.clone(), ls.socket.clone()) else {
        reporter.litestream_failed("supervised mode without a bucket or socket".into());
        return;
    };
    let env = replica.child_env();
    let checker = Checker::new(
        &ls,
        socket.clone(),
        Some(BucketProbe {
            bin: ls.bin.clone(),
            config: ls.config_path.clone(),
            db: ls.db_path.clone(),
            env: env.clone(),
        }),
    );
    let mut last_repair: Option<Instant> = None;
    let config = render_config(
        &ls.db_path,
        &replica,
        Some(&socket),
        ls.metrics_addr.as_deref(),
    );
    tracing::info!(replica = %replica.describe(), config = %ls.config_path.display(), "starting continuous backup (Litestream, supervised)");
    let mut backoff = INITIAL_BACKOFF;
    let mut reset_needed = true;
    loop {
        if let Err(e) = write_private(&ls.config_path, &config) {
            reporter.litestream_failed(format!("cannot write {}: {e}", ls.config_path.display()));
            if sleep_or_shutdown(backoff, &shutdown).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        if reset_needed {
            reset_local_state(&ls, &env).await;
            reset_needed = false;
        }
        if socket_answers(&socket).await {
            // A Litestream left running by a manager that was killed
            // (SIGKILL gives no chance to stop the child). A second one would
            // upload conflicting files to the same path.
            reporter.litestream_failed(format!(
                "another Litestream already serves {} (left over from a killed manager?); not starting a second one until it stops",
                socket.display()
            ));
            if sleep_or_shutdown(backoff, &shutdown).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        remove_stale_socket(&socket);
        let mut child = match spawn_replicate(&ls, &env) {
            Ok(child) => child,
            Err(e) => {
                reporter.litestream_failed(format!(
                    "cannot start {} ({e}); install Litestream 0.5 or set LITESTREAM_BIN",
                    ls.bin.display()
                ));
                if sleep_or_shutdown(backoff, &shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::info!(pid = child.id(), "litestream started");
        let started = Instant::now();
        match watch_child(&mut child, &checker, &ls, &reporter, &shutdown, last_repair).await {
            Outcome::Shutdown => {
                stop_child(&mut child).await;
                return;
            }
            Outcome::Unrestorable => {
                // Litestream may keep adding incremental files to a bucket
                // that lost its snapshot (seen with 0.5.17 when the bucket
                // came back empty) until its next scheduled snapshot; a
                // restart with fresh local state uploads a new one now.
                tracing::warn!("the bucket holds no restorable copy; restarting Litestream with fresh local state to upload a new snapshot");
                stop_child(&mut child).await;
                reset_needed = true;
                last_repair = Some(Instant::now());
                backoff = INITIAL_BACKOFF;
            }
            Outcome::DatabaseReplaced => {
                tracing::warn!("the database file was replaced (rebuild or restore); restarting Litestream with fresh local state");
                stop_child(&mut child).await;
                reporter.litestream_failed("database file replaced; restarting Litestream".into());
                reset_needed = true;
                backoff = INITIAL_BACKOFF;
            }
            Outcome::Exited(how) => {
                if started.elapsed() >= STABLE_AFTER {
                    backoff = INITIAL_BACKOFF;
                }
                tracing::error!(exit = %how, restart_in = ?backoff, "litestream exited; restarting");
                reporter.litestream_failed(format!(
                    "litestream exited ({how}); restarting in {}s",
                    backoff.as_secs()
                ));
                if sleep_or_shutdown(backoff, &shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Watches one child: checks on every tick, until it exits, the database
/// file is replaced, or the service shuts down.
async fn watch_child(
    child: &mut Child,
    checker: &Checker,
    ls: &LitestreamSettings,
    reporter: &Reporter,
    shutdown: &CancellationToken,
    last_repair: Option<Instant>,
) -> Outcome {
    let identity = file_identity(&ls.db_path);
    let mut unrestorable = 0u32;
    let first = tokio::time::Instant::now() + FIRST_CHECK_DELAY.min(ls.check_interval);
    let mut ticker = tokio::time::interval_at(first, ls.check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Outcome::Shutdown,
            status = child.wait() => return Outcome::Exited(describe_exit(status)),
            _ = ticker.tick() => {}
        }
        let now = file_identity(&ls.db_path);
        if now.is_some() && now != identity {
            return Outcome::DatabaseReplaced;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Outcome::Shutdown,
            status = child.wait() => return Outcome::Exited(describe_exit(status)),
            bad = checker.report(reporter) => {
                unrestorable = if bad { unrestorable + 1 } else { 0 };
            }
        }
        if unrestorable >= UNRESTORABLE_CHECKS
            && last_repair.is_none_or(|t| t.elapsed() >= REPAIR_EVERY)
        {
            return Outcome::Unrestorable;
        }
    }
}

async fn watch_external(ls: LitestreamSettings, reporter: Reporter, shutdown: CancellationToken) {
    let Some(socket) = ls.socket.clone() else {
        reporter.litestream_failed("external mode without LITESTREAM_SOCKET".into());
        return;
    };
    // A private config only for listing the bucket: the sidecar's own
    // `litestream.yml` is never touched.
    let check_config = ls.config_path.with_file_name(".litestream-check.yml");
    let probe = match &ls.replica {
        None => None,
        Some(replica) => {
            match write_private(
                &check_config,
                &render_config(&ls.db_path, replica, None, None),
            ) {
                Ok(()) => Some(BucketProbe {
                    bin: ls.bin.clone(),
                    config: check_config.clone(),
                    db: ls.db_path.clone(),
                    env: replica.child_env(),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, path = %check_config.display(), "cannot write the bucket-check config; verifying through the socket only");
                    None
                }
            }
        }
    };
    tracing::info!(socket = %socket.display(), bucket_check = probe.is_some(), "watching an external Litestream");
    let checker = Checker::new(&ls, socket, probe);
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + FIRST_CHECK_DELAY.min(ls.check_interval),
        ls.check_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = checker.report(&reporter) => {}
        }
    }
    if checker.probe.is_some() {
        let _ = std::fs::remove_file(&check_config);
    }
}

fn spawn_replicate(
    ls: &LitestreamSettings,
    env: &[(&'static str, String)],
) -> std::io::Result<Child> {
    let mut cmd = Command::new(&ls.bin);
    cmd.args(["replicate", "-no-expand-env", "-config"])
        .arg(&ls.config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Never outlive the manager, even if it dies without stopping us.
        .kill_on_drop(true);
    control::child_env(&mut cmd, env);
    let mut child = cmd.spawn()?;
    if let Some(out) = child.stdout.take() {
        forward_logs(out);
    }
    if let Some(err) = child.stderr.take() {
        forward_logs(err);
    }
    Ok(child)
}

/// `litestream reset`: drops Litestream's local state for the database (not
/// the database, not the bucket) so the next start takes a fresh snapshot.
async fn reset_local_state(ls: &LitestreamSettings, env: &[(&'static str, String)]) {
    let Some(name) = ls.db_path.file_name() else {
        return;
    };
    let mut meta = std::ffi::OsString::from(".");
    meta.push(name);
    meta.push("-litestream");
    if !ls.db_path.with_file_name(meta).exists() {
        return;
    }
    let mut cmd = Command::new(&ls.bin);
    cmd.args(["reset", "-no-expand-env", "-config"])
        .arg(&ls.config_path)
        .arg(&ls.db_path)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    control::child_env(&mut cmd, env);
    match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => {
            tracing::info!("reset Litestream's local state; it takes a fresh snapshot")
        }
        Ok(Ok(out)) => tracing::warn!(
            error = %control::last_line(&out.stdout, &out.stderr),
            "litestream reset failed"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot run litestream reset"),
        Err(_) => tracing::warn!("litestream reset did not finish within 30 s"),
    }
}

/// Whether something listens on `socket` right now.
async fn socket_answers(socket: &Path) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::UnixStream::connect(socket)
        )
        .await,
        Ok(Ok(_))
    )
}

/// A socket file left by a killed child would make the next one fail to listen.
fn remove_stale_socket(socket: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(meta) = std::fs::symlink_metadata(socket) {
            if meta.file_type().is_socket() {
                let _ = std::fs::remove_file(socket);
            }
        }
    }
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`].
async fn stop_child(child: &mut Child) {
    if let Some(pid) = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        // The child is not reaped yet, so the pid cannot have been reused.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(status) => {
                tracing::info!(exit = %describe_exit(status), "litestream stopped");
                return;
            }
            Err(_) => {
                tracing::warn!(grace = ?STOP_GRACE, "litestream did not stop after SIGTERM; killing it")
            }
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Sleeps; returns true when the service shuts down meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(sig) = s.signal() {
                    return format!("killed by signal {sig}");
                }
            }
            s.code()
                .map_or_else(|| "unknown status".into(), |c| format!("exit code {c}"))
        }
        Err(e) => format!("cannot wait for it: {e}"),
    }
}

/// `(device, inode)` of the database file, to notice it being replaced
/// (`None` when it cannot be looked at).
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    config_manager_core::store::file_identity(path)
        .ok()
        .flatten()
}

/// Litestream logs (slog text on stdout) go to the manager's log with the
/// same level, under the `litestream` target.
fn forward_logs<R: AsyncRead + Unpin + Send + 'static>(stream: R) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // Our log line carries its own timestamp.
            let text = match line.strip_prefix("time=") {
                Some(rest) => rest.split_once(' ').map_or(rest, |(_, r)| r),
                None => line.as_str(),
            };
            if text.contains("level=ERROR") {
                tracing::error!(target: "litestream", "{text}");
            } else if text.contains("level=WARN") {
                tracing::warn!(target: "litestream", "{text}");
            } else if text.contains("level=DEBUG") {
                tracing::debug!(target: "litestream", "{text}");
            } else {
                tracing::info!(target: "litestream", "{text}");
            }
        }
    });
}
