//! The handle a service holds: start-up, the current config, change
//! notifications, counters and shutdown.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use config_manager_core::applied::{applied_topic, AppliedReport};
use config_manager_core::domain::Version;
use config_manager_core::envelope::config_topic;
use config_manager_core::envelope::freshness::AppliedState;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::counters::{CounterSnapshot, Counters};
use crate::mqtt::{self, CopyKeeper, MqttTask, Reporting};
use crate::pipeline::{Callback, PipelineConfig, UpdatePipeline};
use crate::report::Reporter;
use crate::settings::ClientSettings;
use crate::startup::{load_initial, ConfigSource};
use crate::ClientError;

/// The config in force with where it came from.
pub struct Snapshot<T> {
    pub config: Arc<T>,
    /// Epoch and version of the config, if it is versioned (not defaults).
    pub applied: Option<AppliedState>,
    pub source: ConfigSource,
}

impl<T> Clone for Snapshot<T> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
            applied: self.applied.clone(),
            source: self.source,
        }
    }
}

impl<T> fmt::Debug for Snapshot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("applied", &self.applied)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What a runner on top of the library (config-agent) says about the
/// program it runs, for the applied-state reports and the on-disk copy
/// ([`ClientBuilder::runner_reports`], [`Client::runner_report`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerReport {
    /// The program started on this version: report `applied`.
    Started(AppliedState),
    /// The program has run this version long enough (the agent's crash
    /// window): the on-disk copy may hold it.
    Stable(AppliedState),
    /// The version of the last `Started` was given up (`label`, e.g.
    /// `crashed`): report `rejected` naming it, back to what ran before.
    RolledBack {
        label: String,
        rejected_version: Version,
    },
    /// The program refused a version (`fields`: names of the fields at
    /// fault, never values).
    Rejected {
        label: String,
        rejected_version: Option<Version>,
        fields: Vec<String>,
    },
}

/// Configures and starts a [`Client`].
pub struct ClientBuilder<T> {
    settings: ClientSettings,
    defaults: Option<T>,
    callback: Option<Arc<Callback<T>>>,
    client_name: Option<String>,
    pinned: BTreeMap<String, String>,
    runner: bool,
}

impl<T: DeserializeOwned + Send + Sync + 'static> ClientBuilder<T> {
    /// The config to run on when neither REST nor the on-disk copy is available.
    pub fn defaults(mut self, defaults: T) -> Self {
        self.defaults = Some(defaults);
        self
    }

    /// Called with each new config before it takes effect; an `Err` keeps the
    /// previous config (and the update is retried when it is re-issued). It
    /// runs on the MQTT task, so it should be quick: hand heavy work to
    /// another task through [`Client::subscribe`]. Not called for the start-up
    /// config, which [`Client::current`] returns.
    pub fn on_change<F, E>(mut self, callback: F) -> Self
    where
        F: Fn(&T) -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        self.callback = Some(Arc::new(move |config: &T| {
            callback(config).map_err(|e| e.to_string())
        }));
        self
    }

    /// `client.name` of the applied-state reports (default
    /// `config-manager-client`); a short token, e.g. `config-agent`.
    pub fn client_name(mut self, name: &str) -> Self {
        self.client_name = Some(name.to_owned());
        self
    }

    /// Fields whose value the instance's environment holds (field key →
    /// variable), reported as `pinned` (at most 64 entries kept).
    pub fn pinned(mut self, pinned: BTreeMap<String, String>) -> Self {
        self.pinned = pinned
            .into_iter()
            .take(config_manager_core::applied::MAX_REPORT_FIELDS)
            .collect();
        self
    }

    /// A runner (config-agent) reports what its program runs through
    /// [`Client::runner_report`]: nothing is published before its first
    /// report, an applied update is reported only once the runner says
    /// `Started`, and the on-disk copy only takes a version the runner
    /// called `Stable` (or the start-up one).
    pub fn runner_reports(mut self) -> Self {
        self.runner = true;
        self
    }

    /// Loads the start-up config and, if MQTT is configured, starts listening
    /// for updates on a background task. Needs a Tokio runtime.
    pub async fn start(self) -> Result<Client<T>, ClientError> {
        let settings = self.settings;
        if settings.trusted_keys.is_empty() {
            return Err(ClientError::NoTrustedKeys);
        }
        if !settings.ignored_variables.is_empty() {
            tracing::warn!(
                ignored = settings.ignored_variables.join(","),
                "these variables belong to the config-manager and are ignored by clients: a client keeps its own verified copy (CONFIG_CACHE_DIR / CONFIG_CACHE_PATH)"
            );
        }
        let initial = load_initial(&settings, self.defaults).await?;
        let counters = Arc::new(Counters::default());
        let mut reporter = Reporter::new(
            settings.service.clone(),
            settings.effective_instance_id(),
            initial.applied.as_ref(),
            time::OffsetDateTime::now_utc(),
        );
        if let Some(name) = &self.client_name {
            reporter.set_client_name(name);
        }
        reporter.set_pinned(self.pinned);
        let (runner_tx, runner_rx) = if self.runner {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (reports, reports_rx) = watch::channel(reporter.current().cloned());
        let (snapshots, rx) = watch::channel(Snapshot {
            config: Arc::clone(&initial.config),
            applied: initial.applied.clone(),
            source: initial.source,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let connected = Arc::new(AtomicBool::new(false));
        let task = match &settings.mqtt {
            None => None,
            Some(endpoint) => {
                let client_id = settings
                    .mqtt_client_id
                    .clone()
                    .unwrap_or_else(|| mqtt::default_client_id(settings.service.as_str()));
                let mut opts = mqtt::options(
                    endpoint,
                    client_id,
                    settings.mqtt_keep_alive,
                    settings.max_payload_bytes,
                )?;
                let report_topic = applied_topic(&settings.service, reporter.instance());
                if settings.report_applied {
                    opts.set_last_will(mqtt::last_will(&report_topic, &reporter.offline()));
                }
                let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 16);
                // Otherwise the applied-state report, written right after the
                // PUBACK of the update it reports, waits for the broker's
                // delayed ACK of that PUBACK (Nagle): about 40 ms per report.
                eventloop.network_options.set_tcp_nodelay(true);
                let copy = settings.cache_path.clone().map(|path| {
                    let written = (initial.source == ConfigSource::OnDiskCopy)
                        .then(|| initial.applied.clone())
                        .flatten();
                    CopyKeeper::spawn(path, initial.applied.clone(), written)
                });
                let pipeline = UpdatePipeline::new(PipelineConfig {
                    service: settings.service.clone(),
                    trusted: settings.trusted_keys.clone(),
                    policy: settings.freshness.clone(),
                    max_payload: settings.max_payload_bytes,
                    initial: initial.config,
                    initial_raw: initial.raw,
                    applied: initial.applied,
                    counters: Arc::clone(&counters),
                });
                let task = MqttTask {
                    client,
                    eventloop,
                    topic: config_topic(&settings.service),
                    pipeline,
                    callback: self.callback,
                    snapshots,
                    connected: Arc::clone(&connected),
                    shutdown: shutdown_rx,
                    reporting: Reporting {
                        pending: reporter.current().is_some(),
                        reporter,
                        topic: report_topic,
                        publish: settings.report_applied,
                        last: reports,
                        counters: Arc::clone(&counters),
                        failure_logged: false,
                        hold: self.runner,
                        before_started: None,
                    },
                    copy,
                    runner: runner_rx,
                    held_ack: None,
                };
                Some(tokio::spawn(task.run()))
            }
        };
        let runner = if task.is_some() { runner_tx } else { None };
        Ok(Client {
            rx,
            runner,
            reports: reports_rx,
            counters,
            connected,
            shutdown,
            task,
        })
    }
}

/// A running client. Dropping it stops the MQTT task too; [`Client::shutdown`]
/// also waits for it.
pub struct Client<T> {
    rx: watch::Receiver<Snapshot<T>>,
    runner: Option<mpsc::UnboundedSender<RunnerReport>>,
    reports: watch::Receiver<Option<AppliedReport>>,
    counters: Arc<Counters>,
    connected: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl<T> fmt::Debug for Client<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("snapshot", &*self.rx.borrow())
            .field("mqtt_connected", &self.is_mqtt_connected())
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Client<T> {
    /// A builder for a client with these settings.
    pub fn builder(settings: ClientSettings) -> ClientBuilder<T> {
        ClientBuilder {
            settings,
            defaults: None,
            callback: None,
            client_name: None,
            pinned: BTreeMap::new(),
            runner: false,
        }
    }
}

impl<T> Client<T> {
    /// The config in force.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.rx.borrow().config)
    }

    /// The config in force with its version and source.
    pub fn snapshot(&self) -> Snapshot<T> {
        self.rx.borrow().clone()
    }

    /// A receiver that is notified after each applied update.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot<T>> {
        self.rx.clone()
    }

    /// The applied-state report describing this instance now (what it
    /// published, or would publish with `CONFIG_REPORT_APPLIED=0` or without
    /// MQTT): `applied` with the version in force, or `rejected` after a
    /// refused update. `None` while it runs on defaults and nothing was
    /// refused (the contract publishes nothing then).
    pub fn last_report(&self) -> Option<AppliedReport> {
        self.reports.borrow().clone()
    }

    /// A receiver notified whenever [`Client::last_report`] changes. Without
    /// MQTT nothing changes after start-up and the channel is closed.
    pub fn subscribe_reports(&self) -> watch::Receiver<Option<AppliedReport>> {
        self.reports.clone()
    }

    /// Hands a runner's report to the MQTT task (with
    /// [`ClientBuilder::runner_reports`]; without MQTT nothing is published
    /// and this does nothing).
    pub fn runner_report(&self, report: RunnerReport) {
        if let Some(tx) = &self.runner {
            let _ = tx.send(report);
        }
    }

    /// Applied / ignored / rejected-by-reason counts so far.
    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    /// Whether the MQTT connection is up.
    pub fn is_mqtt_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Disconnects from the broker and waits for the MQTT task to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                tracing::warn!(%error, "MQTT task ended abnormally");
            }
        }
    }
}
