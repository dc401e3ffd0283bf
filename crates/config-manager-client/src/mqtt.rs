//! The MQTT side: connection options from [`MqttEndpoint`], and the loop that
//! feeds received payloads to the [`UpdatePipeline`].
//!
//! Choices: clean session (nothing is queued for us while away; the retained
//! message gives the current config on every (re)connect), QoS 1 subscription,
//! a random client-id suffix, reconnect with exponential backoff (1 s to 30 s).
//!
//! Applied-state reports (`contracts/README.md`, "Applied state"): the task
//! publishes the instance's current report retained at QoS 1 after every
//! (re)connect and whenever it changes, keeps the connection's last will equal
//! to the `offline` form of what it runs (rumqttc sends the options' will on
//! each reconnect, so the will follows every applied version), and publishes
//! `offline` itself on a clean stop before it disconnects. A report that cannot
//! be queued is counted and retried; it never holds up config delivery.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use config_manager_core::applied::AppliedReport;
use config_manager_core::envelope::freshness::AppliedState;
use rand::RngCore as _;
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration,
    Transport,
};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

use crate::client::RunnerReport;
use crate::counters::Counters;
use crate::mqtt_url::MqttEndpoint;
use crate::pipeline::{Callback, Outcome, UpdatePipeline};
use crate::report::{Reporter, Running};
use crate::startup::ConfigSource;
use crate::{ClientError, Snapshot};

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a clean stop waits to hand the `offline` report and the
/// DISCONNECT to the broker before it drops the connection (the broker then
/// publishes the will, which says `offline` too).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Builds rumqttc options. The incoming packet limit is well above the payload
/// limit, so an oversized message is rejected (and counted) by the pipeline
/// instead of breaking the connection, which would re-deliver a retained
/// oversized message forever.
pub(crate) fn options(
    endpoint: &MqttEndpoint,
    client_id: String,
    keep_alive: Duration,
    max_payload: usize,
) -> Result<MqttOptions, ClientError> {
    let mut opts = MqttOptions::new(client_id, endpoint.host.clone(), endpoint.port);
    opts.set_keep_alive(keep_alive);
    opts.set_clean_session(true);
    // The PUBACK of a config message is sent by the task (see
    // `MqttTask::held_ack`), not by rumqttc on receipt.
    opts.set_manual_acks(true);
    let incoming = max_payload.saturating_mul(4).max(1 << 20);
    opts.set_max_packet_size(incoming, 64 * 1024);
    if let Some(user) = &endpoint.username {
        opts.set_credentials(user.clone(), endpoint.password.clone().unwrap_or_default());
    }
    if endpoint.tls {
        let config = tls_config(endpoint)?;
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    Ok(opts)
}

/// rustls with the ring provider chosen explicitly (more than one provider
/// may be compiled in, and then rustls cannot pick a default by itself); CA
/// certificates from `ca_file`, else the system's roots. Public so the
/// manager's publisher connects to `mqtts://` exactly as services do.
pub fn tls_config(endpoint: &MqttEndpoint) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;

    let tls_err = |reason: String| ClientError::Tls(reason);
    let mut roots = rustls::RootCertStore::empty();
    match &endpoint.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "could not load a system CA certificate");
            }
            let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err(tls_err("no CA certificates available for mqtts://".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client id unique to this process.
pub(crate) fn default_client_id(service: &str) -> String {
    format!("{service}-cfg-{:08x}", rand::rngs::OsRng.next_u32())
}

/// The last will for `report` (its `offline` form, retained, QoS 1).
pub(crate) fn last_will(topic: &str, offline: &AppliedReport) -> LastWill {
    LastWill::new(topic, offline.to_json(), QoS::AtLeastOnce, true)
}

/// The reporting half of the task.
pub(crate) struct Reporting {
    pub reporter: Reporter,
    /// `system/config/<service>/applied/<instance_id>`.
    pub topic: String,
    /// `false` with `CONFIG_REPORT_APPLIED=0`: reports are built (for
    /// [`crate::Client::last_report`]) but never published.
    pub publish: bool,
    /// The report describing the instance now, for [`crate::Client::last_report`].
    pub last: watch::Sender<Option<AppliedReport>>,
    pub counters: Arc<Counters>,
    /// The current report still has to be published (changed, or reconnected).
    pub pending: bool,
    /// A failure was already logged for the pending report.
    pub failure_logged: bool,
    /// A runner on top of the library (config-agent) reports what its
    /// program runs: nothing is published before its first
    /// [`RunnerReport`], and applied updates are not reported by the task.
    pub hold: bool,
    /// With a runner: what ran before the last `Started` (for a rollback).
    pub before_started: Option<Option<Running>>,
}

impl Reporting {
    /// Queues the current report if one is pending; counts a full queue and
    /// leaves it pending for the next turn of the loop.
    fn flush(&mut self, client: &AsyncClient) {
        if self.hold {
            return;
        }
        if !self.pending || !self.publish {
            self.pending = false;
            return;
        }
        let Some(report) = self.reporter.current() else {
            self.pending = false;
            return;
        };
        match client.try_publish(self.topic.clone(), QoS::AtLeastOnce, true, report.to_json()) {
            Ok(()) => {
                self.counters.record_report_published();
                self.pending = false;
                self.failure_logged = false;
            }
            Err(error) => {
                self.counters.record_report_failure();
                if !self.failure_logged {
                    tracing::warn!(%error, topic = %self.topic, "could not queue the applied-state report; will retry");
                    self.failure_logged = true;
                }
            }
        }
    }

    /// A new current report (or none changed when `report` is `None`).
    fn changed(&mut self, report: Option<AppliedReport>) {
        if let Some(report) = report {
            self.last.send_replace(Some(report));
            self.pending = true;
        }
    }
}

/// Which envelope the on-disk copy may hold and the ones seen lately.
pub(crate) struct CopyKeeper {
    /// The last few verified payloads (applied or re-issued), newest last.
    recent: VecDeque<(AppliedState, Arc<[u8]>)>,
    /// The state the copy should hold: what was applied (without a runner),
    /// or what the runner said is stable.
    may_hold: Option<AppliedState>,
    /// What the copy holds now (exactly).
    written: Option<AppliedState>,
    writer: watch::Sender<Option<Arc<[u8]>>>,
}

const RECENT_ENVELOPES: usize = 4;

/// Same epoch and version, and the same checksum when both know it (a REST
/// load has none to compare).
fn same_version(a: &AppliedState, b: &AppliedState) -> bool {
    a.epoch == b.epoch
        && a.version == b.version
        && (a.checksum.is_none() || b.checksum.is_none() || a.checksum == b.checksum)
}

impl CopyKeeper {
    /// A keeper writing to `path` on a task of its own (blocking I/O off the
    /// MQTT loop; writes coalesce to the newest).
    pub(crate) fn spawn(
        path: PathBuf,
        may_hold: Option<AppliedState>,
        written: Option<AppliedState>,
    ) -> Self {
        let (writer, mut rx) = watch::channel::<Option<Arc<[u8]>>>(None);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(payload) = rx.borrow_and_update().clone() else {
                    continue;
                };
                let target = path.clone();
                match tokio::task::spawn_blocking(move || crate::copy::write(&target, &payload))
                    .await
                {
                    Ok(Ok(())) => {
                        tracing::debug!(path = %path.display(), "wrote the on-disk copy")
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "could not write the on-disk copy")
                    }
                    Err(error) => tracing::warn!(%error, "could not write the on-disk copy"),
                }
            }
        });
        Self {
            recent: VecDeque::new(),
            may_hold,
            written,
            writer,
        }
    }

    /// A payload passed verification.
    fn seen(&mut self, state: AppliedState, payload: Arc<[u8]>) {
        if self.recent.len() == RECENT_ENVELOPES {
            self.recent.pop_front();
        }
        self.recent.push_back((state, payload));
        self.persist();
    }

    /// The copy may hold `state` from now on.
    pub(crate) fn allow(&mut self, state: AppliedState) {
        self.may_hold = Some(state);
        self.persist();
    }

    fn persist(&mut self) {
        let Some(want) = &self.may_hold else {
            return;
        };
        let Some((state, payload)) = self
            .recent
            .iter()
            .rev()
            .find(|(s, _)| same_version(s, want))
        else {
            return;
        };
        if self.written.as_ref() == Some(state) {
            return;
        }
        self.written = Some(state.clone());
        self.writer.send_replace(Some(Arc::clone(payload)));
    }
}

/// Everything the loop needs; the loop owns it.
pub(crate) struct MqttTask<T> {
    pub client: AsyncClient,
    pub eventloop: EventLoop,
    pub topic: String,
    pub pipeline: UpdatePipeline<T>,
    pub callback: Option<Arc<Callback<T>>>,
    pub snapshots: watch::Sender<Snapshot<T>>,
    pub connected: Arc<AtomicBool>,
    pub shutdown: watch::Receiver<bool>,
    pub reporting: Reporting,
    pub copy: Option<CopyKeeper>,
    /// What a runner reports (config-agent); `None` without one.
    pub runner: Option<mpsc::UnboundedReceiver<RunnerReport>>,
    /// The config message whose PUBACK waits for the broker's PUBACK of the
    /// report it caused. On a broker with Nagle's algorithm on (mosquitto's
    /// default), the broker's PUBACK stays unacknowledged until our kernel's
    /// delayed ACK (up to 40 ms) and holds the next config message behind
    /// it; our PUBACK, sent right when the broker's arrives, carries that
    /// ACK at once (rumqttc gives no access to the socket for TCP_QUICKACK).
    pub held_ack: Option<rumqttc::Publish>,
}

/// The next runner report, or never when there is no runner (or it left).
async fn next_runner_report(
    runner: &mut Option<mpsc::UnboundedReceiver<RunnerReport>>,
) -> RunnerReport {
    match runner {
        Some(rx) => match rx.recv().await {
            Some(report) => report,
            None => {
                *runner = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> MqttTask<T> {
    /// Runs until shutdown is signalled or the [`crate::Client`] is dropped.
    pub(crate) async fn run(mut self) {
        // However the task ends (shutdown, or a panic unwinding through it),
        // `is_mqtt_connected` stops saying true.
        let _guard = ConnectedGuard(Arc::clone(&self.connected));
        let mut backoff = MIN_BACKOFF;
        loop {
            if self.reporting.pending && self.connected.load(Ordering::Relaxed) {
                self.reporting.flush(&self.client);
            }
            tokio::select! {
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        self.stop().await;
                        return;
                    }
                }
                report = next_runner_report(&mut self.runner) => self.on_runner_report(report),
                event = self.eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = MIN_BACKOFF;
                        self.connected.store(true, Ordering::Relaxed);
                        tracing::info!(topic = %self.topic, "connected to the MQTT broker");
                        if let Err(error) = self.client.try_subscribe(self.topic.clone(), QoS::AtLeastOnce) {
                            tracing::warn!(%error, "could not queue the subscription");
                        }
                        // The broker may have published our will meanwhile:
                        // say again what this instance runs.
                        self.reporting.pending = self.reporting.reporter.current().is_some();
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if publish.topic == self.topic {
                            self.on_payload_guarded(&publish.payload);
                        }
                        self.ack_after_report(publish);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if let Some(held) = self.held_ack.take() {
                            self.ack(&held);
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        self.held_ack = None; // the session is gone with the connection
                        self.connected.store(false, Ordering::Relaxed);
                        tracing::warn!(%error, retry_in = ?backoff, "MQTT connection failed");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = self.shutdown.changed() => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                },
            }
        }
    }

    /// Sends the PUBACK of `publish` now, or, when the message changed the
    /// report and the report goes out now, when the broker acknowledges the
    /// report (see [`MqttTask::held_ack`]). A message held earlier is
    /// acknowledged first: at most one waits.
    fn ack_after_report(&mut self, publish: rumqttc::Publish) {
        if let Some(previous) = self.held_ack.take() {
            self.ack(&previous);
        }
        let report_now = self.reporting.pending
            && self.reporting.publish
            && self.connected.load(Ordering::Relaxed);
        if report_now {
            self.reporting.flush(&self.client);
        }
        if report_now && !self.reporting.pending && publish.qos != QoS::AtMostOnce {
            self.held_ack = Some(publish);
        } else {
            self.ack(&publish);
        }
    }

    fn ack(&self, publish: &rumqttc::Publish) {
        if let Err(error) = self.client.try_ack(publish) {
            tracing::warn!(%error, "could not queue the PUBACK of a config message");
        }
    }

    /// [`Self::on_payload`], with a panic (the application's callback, or a
    /// bug reachable by some payload) turned into a rejection of that one
    /// message: the task, and so every later update, survives it.
    fn on_payload_guarded(&mut self, payload: &[u8]) {
        let handled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.on_payload(payload)));
        if handled.is_err() {
            tracing::error!(topic = %self.topic, "handling a config message panicked; the message is rejected");
            self.reporting.counters.record_rejected("panic");
            let report = self
                .reporting
                .reporter
                .rejected("panic", self.pipeline.last_version());
            self.reporting.changed(report);
        }
    }

    /// What the runner says about its program.
    fn on_runner_report(&mut self, report: RunnerReport) {
        let now = OffsetDateTime::now_utc();
        self.reporting.hold = false;
        let reporting = &mut self.reporting;
        let r = &mut reporting.reporter;
        let changed = match report {
            RunnerReport::Started(state) => {
                reporting.before_started = Some(r.running().cloned());
                Some(r.applied(&state, now))
            }
            RunnerReport::Stable(state) => {
                if let Some(copy) = &mut self.copy {
                    copy.allow(state);
                }
                None
            }
            RunnerReport::RolledBack {
                label,
                rejected_version,
            } => {
                let back_to = reporting
                    .before_started
                    .take()
                    .unwrap_or_else(|| r.running().cloned());
                Some(r.rolled_back(back_to, &label, Some(rejected_version)))
            }
            RunnerReport::Rejected {
                label,
                rejected_version,
                fields,
            } => r.rejected_fields(&label, rejected_version, &fields),
        };
        if changed.is_some() && self.reporting.publish {
            let will = last_will(&self.reporting.topic, &self.reporting.reporter.offline());
            self.eventloop.mqtt_options.set_last_will(will);
        }
        self.reporting.changed(changed);
        // Published now if connected (the loop flushes before each wait).
        if self.reporting.pending {
            self.reporting.pending = self.reporting.reporter.current().is_some();
        }
    }

    fn on_payload(&mut self, payload: &[u8]) {
        let now = OffsetDateTime::now_utc();
        let outcome = self.pipeline.handle(payload, now, self.callback.as_deref());
        let verified = self.pipeline.take_last_verified();
        let runner = self.runner.is_some();
        if let (Some(copy), Some((state, bytes))) = (&mut self.copy, verified) {
            if !runner && matches!(outcome, Outcome::Applied { .. }) {
                copy.may_hold = Some(state.clone());
            }
            copy.seen(state, bytes);
        }
        match outcome {
            Outcome::Applied { .. } => {
                self.snapshots.send_replace(Snapshot {
                    config: Arc::clone(self.pipeline.current()),
                    applied: self.pipeline.applied().cloned(),
                    source: ConfigSource::Mqtt,
                });
                // A runner reports its program's version itself.
                if runner {
                    return;
                }
                if let Some(state) = self.pipeline.applied() {
                    let report = self.reporting.reporter.applied(state, now);
                    if self.reporting.publish {
                        let will =
                            last_will(&self.reporting.topic, &self.reporting.reporter.offline());
                        self.eventloop.mqtt_options.set_last_will(will);
                    }
                    self.reporting.changed(Some(report));
                }
            }
            Outcome::Rejected(reason) => {
                let report = self
                    .reporting
                    .reporter
                    .rejected(reason.label(), self.pipeline.last_version());
                self.reporting.changed(report);
            }
            Outcome::Ignored(_) => {}
        }
    }

    /// A clean stop: `offline` report, DISCONNECT, and polling until both are
    /// written (at most [`STOP_GRACE`]), so the broker discards the will.
    async fn stop(&mut self) {
        let was_connected = self.connected.swap(false, Ordering::Relaxed);
        if !was_connected {
            let _ = self.client.try_disconnect();
            return;
        }
        if self.reporting.publish {
            let offline = self.reporting.reporter.offline();
            match self.client.try_publish(
                self.reporting.topic.clone(),
                QoS::AtLeastOnce,
                true,
                offline.to_json(),
            ) {
                Ok(()) => self.reporting.counters.record_report_published(),
                Err(error) => {
                    self.reporting.counters.record_report_failure();
                    tracing::warn!(%error, "could not queue the offline report; the broker's will says offline instead");
                }
            }
        }
        if let Err(error) = self.client.try_disconnect() {
            tracing::warn!(%error, "could not queue the MQTT disconnect");
            return;
        }
        let flushed = tokio::time::timeout(STOP_GRACE, async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        if flushed.is_err() {
            tracing::warn!("the MQTT broker did not take the disconnect in time");
        }
    }
}

/// Clears the shared "connected" flag when the MQTT task ends for any reason.
struct ConnectedGuard(Arc<AtomicBool>);

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}
