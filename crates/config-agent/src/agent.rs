//! The supervisor: starts the program with the rendered environment,
//! restarts it (or signals a reload) when a verified update changes that
//! environment, rolls back a version the program crashes on, forwards
//! signals, reaps every child (PID 1 duty), and reports what runs.
//!
//! Children are spawned with `std::process::Command` in a process group of
//! their own and reaped with `waitpid(-1, WNOHANG)` (rustix `wait`; its `waitpid(None)` is pid 0, the own group only) on every SIGCHLD (and a
//! 1 s tick, since signals coalesce), so orphans re-parented to the agent
//! when it is PID 1 are reaped too. Signals go to the program's process
//! group, so a shell wrapper's children get them as well.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use config_manager_client::{AppliedState, Client, ConfigSource, RunnerReport, Snapshot};
use config_manager_core::domain::{Epoch, Version};
use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use serde_json::{Map, Value};
use tokio::signal::unix::{signal, Signal as SignalStream, SignalKind};
use tokio::sync::watch;

use crate::cli::{RenderFormat, RunArgs};
use crate::render::{render, FieldMap, Rendered};
use crate::secrets::SecretSource;

/// Backoff of restarts after an exit that is not a crash of a new version.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The reason label of a crash rollback (contract: `crashed`).
pub const CRASHED: &str = "crashed";

type Env = BTreeMap<String, String>;

/// The running program.
struct Child {
    pid: Pid,
    started: Instant,
}

/// Why the agent ends.
pub enum Exit {
    /// The program's status after a forwarded stop signal (`128 + n` when a
    /// signal ended it).
    Program(i32),
}

pub struct Agent {
    args: RunArgs,
    fields: FieldMap,
    /// The agent's own environment, passed through except where it renders.
    inherited: Vec<(OsString, OsString)>,
    inherited_names: BTreeSet<String>,
    client: Client<Map<String, Value>>,
    /// Reads each new version's secrets over REST (envelopes carry none).
    secrets: Option<SecretSource>,
    child: Option<Child>,
    /// What the running program got from the agent.
    current: Env,
    /// The last environment that ran through its crash window, and its version.
    good: Option<(Env, Option<AppliedState>)>,
    /// A version on trial: restarted for it at that instant.
    trial: Option<(AppliedState, Instant)>,
    /// Versions rolled back (epoch, version): not tried again.
    refused: Vec<(Epoch, Version)>,
    backoff: Duration,
    restart_at: Option<tokio::time::Instant>,
    stopping: bool,
}

/// Starts the program for the first time; `Err` when it cannot be spawned.
pub struct Start {
    pub args: RunArgs,
    pub fields: FieldMap,
    pub client: Client<Map<String, Value>>,
    pub secrets: Option<SecretSource>,
}

impl Agent {
    pub fn new(start: Start) -> Self {
        let inherited: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let inherited_names = inherited
            .iter()
            .filter_map(|(k, _)| k.to_str().map(str::to_owned))
            .collect();
        Self {
            args: start.args,
            fields: start.fields,
            inherited,
            inherited_names,
            client: start.client,
            secrets: start.secrets,
            child: None,
            current: Env::new(),
            good: None,
            trial: None,
            refused: Vec::new(),
            backoff: MIN_BACKOFF,
            restart_at: None,
            stopping: false,
        }
    }

    fn render(&self, snapshot: &Snapshot<Map<String, Value>>) -> Rendered {
        self.render_config(&snapshot.config, snapshot.source)
    }

    fn render_config(&self, config: &Map<String, Value>, source: ConfigSource) -> Rendered {
        let inherited = |v: &str| self.inherited_names.contains(v);
        let r = render(
            config,
            &self.fields,
            &self.args.pinned_env.0,
            &inherited,
            source == ConfigSource::Defaults,
        );
        if !r.unrenderable.is_empty() {
            tracing::warn!(
                fields = r.unrenderable.join(","),
                "fields whose value an environment variable cannot hold are not set"
            );
        }
        r
    }

    /// Spawns the program with `env` over the inherited environment.
    fn spawn(&mut self, env: &Env) -> std::io::Result<()> {
        use std::os::unix::process::CommandExt as _;
        let Some((program, args)) = self.args.command.split_first() else {
            return Err(std::io::Error::other("no command"));
        };
        self.current = env.clone();
        let mut cmd = std::process::Command::new(program);
        cmd.args(args).env_clear();
        for (k, v) in &self.inherited {
            if !k.to_str().is_some_and(|k| env.contains_key(k)) {
                cmd.env(k, v);
            }
        }
        cmd.envs(env).process_group(0);
        let child = cmd.spawn()?;
        let pid = Pid::from_child(&child);
        // Dropping a std Child neither waits nor kills: the agent reaps it.
        drop(child);
        self.child = Some(Child {
            pid,
            started: Instant::now(),
        });
        tracing::info!(
            pid = pid.as_raw_pid(),
            variables = env.len(),
            "started the program"
        );
        Ok(())
    }

    /// Sends `sig` to the program's process group.
    fn signal_child(&self, sig: Signal) {
        if let Some(child) = &self.child {
            if let Err(error) = rustix::process::kill_process_group(child.pid, sig) {
                tracing::debug!(%error, "could not signal the program");
            }
        }
    }

    /// Reaps every exited child; the program's status if it was among them.
    fn reap(&mut self) -> Option<WaitStatus> {
        let mut found = None;
        while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
            if self.child.as_ref().is_some_and(|c| c.pid == pid) {
                found = Some(status);
            }
        }
        found
    }

    /// Asks the program to stop (stop signal, grace, then SIGKILL) and waits.
    async fn stop_child(&mut self, sigchld: &mut SignalStream) -> Option<WaitStatus> {
        self.child.as_ref()?;
        self.signal_child(self.args.stop_signal);
        let deadline = tokio::time::Instant::now() + self.args.stop_grace();
        let mut killed = false;
        loop {
            if let Some(status) = self.reap() {
                self.child = None;
                return Some(status);
            }
            if !killed && tokio::time::Instant::now() >= deadline {
                tracing::warn!("the program did not stop within the grace period: SIGKILL");
                self.signal_child(Signal::KILL);
                killed = true;
            }
            let wake = if killed {
                tokio::time::Instant::now() + Duration::from_millis(100)
            } else {
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(100))
            };
            tokio::select! {
                _ = sigchld.recv() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn write_render_file(&self, env: &Env) {
        let Some(path) = &self.args.render_file else {
            return;
        };
        let body = match self.args.render_format {
            RenderFormat::Json => serde_json::to_string(env).unwrap_or_default() + "\n",
            RenderFormat::Dotenv => env
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"\n", dotenv_escape(v)))
                .collect(),
        };
        if let Err(error) = config_manager_client::copy::write_atomic(path, body.as_bytes()) {
            tracing::warn!(%error, path = %path.display(), "could not write the render file");
        }
    }

    /// Runs until a forwarded stop signal ended the program.
    pub async fn run(mut self) -> anyhow::Result<Exit> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut sigchld = signal(SignalKind::child())?;
        let mut updates: watch::Receiver<Snapshot<Map<String, Value>>> = self.client.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(1));

        let first = self.client.snapshot();
        describe_source(&first, self.fields.is_empty());
        let rendered = self.render(&first);
        self.write_render_file(&rendered.env);
        // The caller checked the command exists; a failure here is fatal.
        self.spawn(&rendered.env)?;
        self.good = Some((rendered.env, first.applied.clone()));
        if let Some(state) = first.applied {
            self.client.runner_report(RunnerReport::Started(state));
        }

        loop {
            let trial_end = self
                .trial
                .as_ref()
                .map(|(_, at)| tokio::time::Instant::from_std(*at + self.args.crash_window()));
            tokio::select! {
                _ = sigterm.recv() => self.forward(Signal::TERM, true),
                _ = sigint.recv() => self.forward(Signal::INT, true),
                _ = sighup.recv() => self.forward(Signal::HUP, false),
                _ = sigchld.recv() => {}
                _ = tick.tick() => {}
                changed = updates.changed(), if !self.stopping => {
                    if changed.is_err() {
                        // The client is gone; keep the program running.
                        std::future::pending::<()>().await;
                    }
                    let snapshot = updates.borrow_and_update().clone();
                    self.on_update(snapshot, &mut sigchld).await;
                }
                _ = sleep_until_opt(trial_end) => self.trial_passed(),
                _ = sleep_until_opt(self.restart_at), if self.child.is_none() => {
                    self.restart_at = None;
                    let env = self.current.clone();
                    self.start_or_backoff(&env);
                }
            }
            // Asked to stop while the program was not running (backoff):
            // nothing to wait for.
            if self.stopping && self.child.is_none() {
                tracing::info!("stopping while the program is not running");
                self.client.shutdown().await;
                return Ok(Exit::Program(128 + Signal::TERM.as_raw()));
            }
            if let Some(status) = self.reap() {
                if let Some(exit) = self.on_exit(status) {
                    // `offline` report, clean disconnect.
                    self.client.shutdown().await;
                    return Ok(exit);
                }
            }
        }
    }

    fn forward(&mut self, sig: Signal, stop: bool) {
        if stop {
            self.stopping = true;
            self.restart_at = None;
        }
        if self.child.is_none() && stop {
            return;
        }
        self.signal_child(sig);
    }

    fn start_or_backoff(&mut self, env: &Env) {
        if let Err(error) = self.spawn(env) {
            tracing::error!(%error, retry_in = ?self.backoff, "could not start the program");
            self.schedule_restart();
        }
    }

    fn schedule_restart(&mut self) {
        self.restart_at = Some(tokio::time::Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// The program exited. `Some` ends the agent.
    fn on_exit(&mut self, status: WaitStatus) -> Option<Exit> {
        let code = exit_code(status);
        let ran = self.child.take().map(|c| c.started.elapsed());
        if self.stopping {
            tracing::info!(code, "the program stopped");
            return Some(Exit::Program(code));
        }
        if let Some((state, at)) = self.trial.take() {
            if at.elapsed() < self.args.crash_window() {
                tracing::error!(code, version = state.version.get(), "the program exited within the crash window after a restart for a new version: rolling back");
                self.refused.push((state.epoch.clone(), state.version));
                self.client.runner_report(RunnerReport::RolledBack {
                    label: CRASHED.into(),
                    rejected_version: state.version,
                });
                let env = self
                    .good
                    .as_ref()
                    .map(|(e, _)| e.clone())
                    .unwrap_or_default();
                self.write_render_file(&env);
                self.start_or_backoff(&env);
                return None;
            }
        }
        if ran.is_some_and(|r| r > MAX_BACKOFF) {
            self.backoff = MIN_BACKOFF;
        }
        tracing::warn!(code, restart_in = ?self.backoff, "the program exited; restarting");
        self.schedule_restart();
        None
    }

    fn trial_passed(&mut self) {
        if let Some((state, _)) = self.trial.take() {
            tracing::info!(
                version = state.version.get(),
                "the program runs the new version past the crash window"
            );
            self.good = Some((self.current.clone(), Some(state.clone())));
            self.client.runner_report(RunnerReport::Stable(state));
        }
    }

    /// The update's configuration with the secrets of its version read over
    /// REST (the envelope has none); on failure the secrets carried over
    /// from before stay.
    async fn with_secrets(
        &self,
        snapshot: &Snapshot<Map<String, Value>>,
        state: &AppliedState,
    ) -> Map<String, Value> {
        let mut config = (*snapshot.config).clone();
        let Some(source) = &self.secrets else {
            return config;
        };
        if self.fields.secret_keys().next().is_none() {
            return config;
        }
        match source
            .fetch(&self.fields, state.epoch.as_str(), state.version)
            .await
        {
            Ok(secrets) => config.extend(secrets),
            Err(reason) => tracing::warn!(
                version = state.version.get(),
                %reason,
                "could not read the new version's secrets: the program keeps the ones it has"
            ),
        }
        config
    }

    async fn on_update(
        &mut self,
        snapshot: Snapshot<Map<String, Value>>,
        sigchld: &mut SignalStream,
    ) {
        let received = Instant::now();
        let Some(state) = snapshot.applied.clone() else {
            return;
        };
        if self
            .refused
            .iter()
            .any(|(e, v)| *e == state.epoch && *v == state.version)
        {
            tracing::info!(
                version = state.version.get(),
                "ignoring a version that was rolled back"
            );
            return;
        }
        // A version on trial that is still running when the next one
        // arrives did not crash: it becomes the one to roll back to.
        if self.child.is_some() {
            self.trial_passed();
        }
        let config = self.with_secrets(&snapshot, &state).await;
        let rendered = self.render_config(&config, snapshot.source);
        if rendered.env == self.current && self.child.is_some() {
            // Nothing the program reads changed (e.g. a pinned field).
            tracing::info!(
                version = state.version.get(),
                "new version; the program's environment is unchanged"
            );
            self.good = Some((rendered.env, Some(state.clone())));
            self.client
                .runner_report(RunnerReport::Started(state.clone()));
            self.client.runner_report(RunnerReport::Stable(state));
            return;
        }
        let changed: Vec<&str> = changed_names(&self.current, &rendered.env);
        tracing::info!(
            version = state.version.get(),
            variables = changed.join(","),
            "new version changes the program's environment"
        );
        self.write_render_file(&rendered.env);
        let mut stopped_for = Duration::ZERO;
        if self.args.render_file.is_some() && self.child.is_some() {
            self.current = rendered.env;
            self.signal_child(self.args.reload_signal);
        } else {
            if self.child.is_some() {
                let stop_began = Instant::now();
                if let Some(status) = self.stop_child(sigchld).await {
                    tracing::info!(
                        code = exit_code(status),
                        "the program stopped for the restart"
                    );
                }
                stopped_for = stop_began.elapsed();
            }
            self.restart_at = None;
            if let Err(error) = self.spawn(&rendered.env) {
                tracing::error!(%error, "could not start the program on the new version");
                self.schedule_restart();
                return;
            }
        }
        let share = received.elapsed().saturating_sub(stopped_for);
        tracing::info!(
            version = state.version.get(),
            agent_share_us = u64::try_from(share.as_micros()).unwrap_or(u64::MAX),
            "restarted for the new version"
        );
        self.trial = Some((state.clone(), Instant::now()));
        self.client.runner_report(RunnerReport::Started(state));
    }
}

/// Says where the start-up configuration came from.
fn describe_source(snapshot: &Snapshot<Map<String, Value>>, no_schema: bool) {
    let version = snapshot.applied.as_ref().map(|a| a.version.get());
    match snapshot.source {
        ConfigSource::Rest => tracing::info!(?version, "configuration from the config-manager"),
        ConfigSource::OnDiskCopy => tracing::warn!(?version, "the config-manager is unreachable: starting from the verified on-disk copy"),
        ConfigSource::Defaults if no_schema => tracing::warn!("no configuration and no schema available (manager unreachable, no verified copy): starting on the inherited environment and the program's own defaults"),
        ConfigSource::Defaults => tracing::warn!("no configuration available (manager unreachable, no verified copy): starting on the schema's defaults where the environment sets nothing"),
        ConfigSource::Mqtt => {}
    }
}

/// Names of variables whose value differs (never the values).
fn changed_names<'a>(old: &'a Env, new: &'a Env) -> Vec<&'a str> {
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            names.insert(k);
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            names.insert(k);
        }
    }
    names.into_iter().collect()
}

/// The shell convention: the exit status, or 128 + the signal that ended it.
pub fn exit_code(status: WaitStatus) -> i32 {
    if let Some(code) = status.exit_status() {
        code
    } else if let Some(sig) = status.terminating_signal() {
        128 + sig
    } else {
        1
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn dotenv_escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('$', "\\$")
}

/// Whether `program` names an executable file (a path, or a name on `path`).
pub fn command_exists(program: &std::ffi::OsStr, path: Option<&std::ffi::OsStr>) -> bool {
    let executable =
        |p: &Path| p.is_file() && rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok();
    let as_path = Path::new(program);
    if as_path.components().count() > 1 || program.as_encoded_bytes().contains(&b'/') {
        return executable(as_path);
    }
    path.is_some_and(|path| std::env::split_paths(path).any(|dir| executable(&dir.join(program))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_names() {
        assert_eq!(dotenv_escape("a\"b\\c\n$d"), "a\\\"b\\\\c\\n\\$d");
        let old = Env::from([("A".into(), "1".into()), ("B".into(), "2".into())]);
        let new = Env::from([("A".into(), "1".into()), ("C".into(), "3".into())]);
        assert_eq!(changed_names(&old, &new), ["B", "C"]);
        assert!(command_exists(
            "sh".as_ref(),
            std::env::var_os("PATH").as_deref()
        ));
        assert!(!command_exists(
            "no-such-program-x".as_ref(),
            std::env::var_os("PATH").as_deref()
        ));
        assert!(!command_exists("/nonexistent/x".as_ref(), None));
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        assert!(!command_exists(plain.as_os_str(), None));
        assert!(!command_exists(dir.path().as_os_str(), None));
    }
}
