//! Supervised background tasks: a task that ends while the service is not
//! shutting down (it returned, or it panicked) is restarted with backoff,
//! counted in `config_manager_task_restarts_total{task}`, and named in
//! health's `degraded_tasks` (which makes `ok` false) until its new run has
//! lasted [`STABLE_AFTER`].
//!
//! Why: a panic in a task used to end it for good while health still said
//! `ok: true` (issue 23: one applied-state report with an out-of-range time
//! stopped the subscriber until the next restart, and a retained one stopped
//! it again after every restart).

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// First pause before a restart; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a restarted task must run before it counts as healthy again
/// (and the backoff starts over).
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// How a supervised task is meant to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Lives until shutdown: returning early is a failure and restarts it.
    UntilShutdown,
    /// A job that runs to completion (the master-key re-encryption):
    /// returning is its normal end; only a panic restarts it.
    ToCompletion,
}

/// Runs `make()` as a task named `task`, restarting it whenever it ends
/// before it should (see [`Lifetime`]; a panic always counts). The returned
/// handle ends once the current run ends after `shutdown`.
pub fn spawn<F, Fut>(
    task: &'static str,
    lifetime: Lifetime,
    state: &AppState,
    shutdown: CancellationToken,
    make: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let state = state.clone();
    tokio::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        loop {
            let mut run = tokio::spawn(make());
            let ended = tokio::select! {
                ended = &mut run => ended,
                () = tokio::time::sleep(STABLE_AFTER) => {
                    set_degraded(&state, task, false);
                    backoff = MIN_BACKOFF;
                    run.await
                }
            };
            if shutdown.is_cancelled() {
                return;
            }
            if lifetime == Lifetime::ToCompletion && ended.is_ok() {
                set_degraded(&state, task, false);
                return;
            }
            let how = match &ended {
                Err(e) if e.is_panic() => "panicked",
                Err(_) => "was cancelled",
                Ok(()) => "returned",
            };
            state.metrics().task_restarted(task);
            set_degraded(&state, task, true);
            tracing::error!(task, how, retry_in = ?backoff, "background task ended unexpectedly; restarting it");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

fn set_degraded(state: &AppState, task: &'static str, degraded: bool) {
    state.status().update(|s| {
        if degraded {
            s.degraded_tasks.insert(task);
        } else {
            s.degraded_tasks.remove(task);
        }
    });
}
