//! The MQTT publisher: signed, retained configuration updates on
//! `system/config/<service>` and the manager's health on
//! `system/health/config-manager` (`contracts/README.md`).
//!
//! # Shape
//!
//! Three parts, so that no API request ever waits for the broker:
//!
//! - [`ChangeQueue`] is the [`ChangeSink`] the HTTP
//!   layer calls after each commit. It only records *which* services changed
//!   (a set, so a long outage costs one entry per service, not one per write)
//!   and wakes the publisher. It never blocks and never fails.
//! - The **publisher task** (`publisher.rs`) reads each changed service's
//!   effective config at publish time, so it always sends the latest version
//!   even when several writes were coalesced, signs it and hands it to the MQTT
//!   client. It also republishes every service after each (re)connect and every
//!   `MQTT_REISSUE_SECS`, and publishes health on start, on every status change
//!   and periodically.
//! - The **connection task** (`connection.rs`) drives rumqttc's event loop,
//!   reconnects with exponential backoff, reports the link state to the
//!   [`StatusBoard`](crate::status::StatusBoard) (`mqtt_connected`) and, on
//!   shutdown, waits until every queued message is acknowledged before it
//!   disconnects.
//!
//! # Connection choices
//!
//! - **Client id**: `config-manager-<8 random hex digits>` unless
//!   `MQTT_CLIENT_ID` is set. A random suffix means a restarted manager never
//!   takes over the session of its previous process (whose last-will must still
//!   fire), and two instances started by mistake do not disconnect each other
//!   in a loop.
//! - **Clean session**: yes. This connection subscribes to nothing (the
//!   applied-state reports come in on a connection of their own,
//!   `applied.rs`), and it does not need the broker to keep unacknowledged messages across connections: after
//!   every reconnect it republishes the current config of every service, which
//!   supersedes anything the old session still held.
//! - **Keep-alive**: 15 s. The broker publishes the last-will after 1.5 × this
//!   when the manager vanishes without closing its socket (power loss, network
//!   cut); a killed process closes its socket and the will is sent at once.
//! - **QoS 1 and retain** on every message: the broker keeps the latest config
//!   for late joiners, and QoS 1 makes the broker acknowledge each message.
//! - **Last-will**: the offline form of the health message (retained), set
//!   again before every reconnect so it carries the current epoch.

pub mod applied;
mod connection;
mod publisher;
mod queue;
mod source;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, EventLoop, MqttOptions, TlsConfiguration, Transport};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::settings::mqtt::{MqttSettings, KEEP_ALIVE};
use crate::state::{AppState, ChangeSink, NoSink};

pub use queue::ChangeQueue;

/// Requests the MQTT client buffers before `publish` waits. Small on purpose:
/// the publisher coalesces changes itself, so a deep buffer would only hold
/// stale versions during an outage.
const CHANNEL_CAPACITY: usize = 64;

/// Largest packet the manager sends: the largest envelope services accept plus
/// room for the topic and MQTT header. Larger envelopes are refused before
/// they reach the client (rumqttc would drop the connection instead).
const MAX_OUTGOING_PACKET: usize =
    config_manager_core::envelope::DEFAULT_MAX_ENVELOPE_BYTES + 4 * 1024;

/// Why the publisher could not be set up. Broker outages are not errors: the
/// publisher keeps retrying in the background.
#[derive(Debug, Error)]
pub enum MqttError {
    /// `mqtts://` without usable CA certificates (`MQTT_CA_FILE` or system roots).
    #[error("MQTT TLS setup failed (MQTT_URL / MQTT_CA_FILE): {0}")]
    Tls(String),
}

/// The state of the broker link, as the connection task reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Link {
    connected: bool,
    /// Incremented on every successful connect, so the publisher can tell a
    /// new session (which needs a full republish) from the one it knows.
    session: u64,
}

/// A configured publisher that has not started yet. Built before the
/// [`AppState`] (which needs its [`Publisher::sink`]) and started with it.
pub struct Publisher {
    inner: Option<Configured>,
}

struct Configured {
    settings: MqttSettings,
    /// For a new connection when the supervised pair restarts.
    options: MqttOptions,
    client: AsyncClient,
    eventloop: EventLoop,
    queue: Arc<ChangeQueue>,
}

impl Publisher {
    /// Sets up the client for `settings`; `None` (no `MQTT_URL`) gives a
    /// disabled publisher whose sink ignores changes. Connecting happens in
    /// the background after [`Publisher::start`], so a broker that is down
    /// never delays or fails start-up.
    pub fn new(settings: Option<&MqttSettings>) -> Result<Self, MqttError> {
        let Some(settings) = settings else {
            return Ok(Self { inner: None });
        };
        let options = mqtt_options(settings)?;
        let (client, eventloop) = new_client(&options);
        Ok(Self {
            inner: Some(Configured {
                settings: settings.clone(),
                options,
                client,
                eventloop,
                queue: Arc::new(ChangeQueue::new()),
            }),
        })
    }

    /// Whether `MQTT_URL` is set.
    pub fn is_configured(&self) -> bool {
        self.inner.is_some()
    }

    /// The change sink to give the [`AppState`].
    pub fn sink(&self) -> Arc<dyn ChangeSink> {
        match &self.inner {
            Some(c) => c.queue.clone(),
            None => Arc::new(NoSink),
        }
    }

    /// Starts the connection and publisher tasks. Records in the status board
    /// whether MQTT is configured.
    pub fn start(self, state: AppState) -> RunningPublisher {
        let configured = self.inner.is_some();
        state.status().update(|s| {
            s.mqtt_configured = configured;
            s.mqtt_connected = false;
        });
        let Some(c) = self.inner else {
            return RunningPublisher {
                tasks: None,
                applied: None,
            };
        };
        let applied = match applied::start(&c.settings, state.clone()) {
            Ok(a) => Some(a),
            Err(error) => {
                // The TLS setup already succeeded for the publisher; this
                // cannot differ, but a missing subscriber is no reason to stop.
                tracing::error!(%error, "applied-state subscriber not started");
                None
            }
        };
        tracing::info!(
            host = %c.settings.endpoint.host,
            port = c.settings.endpoint.port,
            tls = c.settings.endpoint.tls,
            client_id = %c.settings.client_id,
            reissue_secs = c.settings.reissue_interval.as_secs(),
            "MQTT publisher starting"
        );
        let (publisher_stop, publisher_stop_rx) = watch::channel(false);
        let cancel = CancellationToken::new();
        // The connection and publisher tasks run as one supervised pair
        // (supervise): if either ends unexpectedly, both restart on
        // a new connection, and the pending changes in the queue are kept.
        let first = std::sync::Mutex::new(Some((c.client, c.eventloop)));
        let (options, queue, reissue) = (c.options, c.queue, c.settings.reissue_interval);
        let st = state.clone();
        let pair = crate::supervise::spawn(
            "mqtt publisher",
            crate::supervise::Lifetime::UntilShutdown,
            &state,
            cancel.clone(),
            move || {
                let reuse = first.lock().unwrap_or_else(|p| p.into_inner()).take();
                let (client, eventloop) = reuse.unwrap_or_else(|| new_client(&options));
                run_pair(
                    client,
                    eventloop,
                    st.clone(),
                    queue.clone(),
                    publisher_stop_rx.clone(),
                    reissue,
                )
            },
        );
        RunningPublisher {
            applied,
            tasks: Some(Tasks {
                pair,
                publisher_stop,
                cancel,
            }),
        }
    }
}

/// A client with the manager's options. Each publish goes out at once
/// instead of waiting (Nagle) for the broker's delayed ACK of the previous
/// segment (~40 ms on Linux).
fn new_client(options: &MqttOptions) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options.clone(), CHANNEL_CAPACITY);
    eventloop.network_options.set_tcp_nodelay(true);
    (client, eventloop)
}

/// One run of the connection and publisher tasks. Ends when the publisher
/// was told to stop (after the connection has flushed what it queued and
/// disconnected), or as soon as either task ends on its own.
async fn run_pair(
    client: AsyncClient,
    eventloop: EventLoop,
    state: AppState,
    queue: Arc<ChangeQueue>,
    publisher_stop: watch::Receiver<bool>,
    reissue: Duration,
) {
    let (link_tx, link_rx) = watch::channel(Link::default());
    let (connection_stop, connection_stop_rx) = watch::channel(false);
    let enqueued = Arc::new(AtomicU64::new(0));
    let connection = connection::Connection::new(
        eventloop,
        client.clone(),
        state.clone(),
        link_tx,
        connection_stop_rx,
        enqueued.clone(),
    );
    let stopping = publisher_stop.clone();
    let publisher = publisher::PublisherTask::new(
        client,
        state,
        queue,
        link_rx,
        publisher_stop,
        reissue,
        enqueued,
    );
    let mut connection = tokio::spawn(connection.run());
    let mut publisher = tokio::spawn(publisher.run());
    tokio::select! {
        ended = &mut publisher => {
            if *stopping.borrow() {
                // A clean stop: the offline health message is queued; the
                // connection writes it and disconnects.
                let _ = connection_stop.send(true);
                join_bounded("connection", connection).await;
            } else {
                tracing::error!(ended = ?ended.err(), "MQTT publisher task ended unexpectedly");
                connection.abort();
            }
        }
        ended = &mut connection => {
            tracing::error!(ended = ?ended.err(), "MQTT connection task ended unexpectedly");
            publisher.abort();
        }
    }
}

/// The started publisher; [`RunningPublisher::shutdown`] ends it cleanly.
pub struct RunningPublisher {
    tasks: Option<Tasks>,
    /// The applied-state subscriber (`applied.rs`).
    applied: Option<applied::RunningApplied>,
}

struct Tasks {
    pair: JoinHandle<()>,
    publisher_stop: watch::Sender<bool>,
    /// Cancelled first on shutdown, so the supervisor does not restart the
    /// pair that ends because it was told to.
    cancel: CancellationToken,
}

/// How long shutdown waits for each task: the offline health message and
/// anything still queued get this long to be acknowledged.
const SHUTDOWN_STEP: Duration = Duration::from_secs(3);

impl RunningPublisher {
    /// Publishes the offline health message, waits (bounded) until the broker
    /// has acknowledged everything queued, then disconnects cleanly, so the
    /// broker does not also send the last-will.
    pub async fn shutdown(self) {
        if let Some(a) = self.applied {
            a.shutdown().await;
        }
        let Some(t) = self.tasks else {
            return;
        };
        t.cancel.cancel();
        let _ = t.publisher_stop.send(true);
        // The publisher's step, then the connection's.
        join_bounded_for("publisher", t.pair, 2 * SHUTDOWN_STEP).await;
    }
}

async fn join_bounded(name: &str, task: JoinHandle<()>) {
    join_bounded_for(name, task, SHUTDOWN_STEP).await;
}

async fn join_bounded_for(name: &str, mut task: JoinHandle<()>, step: Duration) {
    match tokio::time::timeout(step + Duration::from_secs(2), &mut task).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, task = name, "MQTT task ended abnormally"),
        Err(_) => {
            tracing::warn!(task = name, "MQTT task did not stop in time; aborting it");
            task.abort();
        }
    }
}

/// rumqttc options for the manager's connection (the last-will is added when
/// the publisher starts, because it is built from the live health).
fn mqtt_options(settings: &MqttSettings) -> Result<MqttOptions, MqttError> {
    // Incoming traffic is acknowledgements only; outgoing is bounded by the
    // envelope size services accept.
    connection_options(
        settings,
        settings.client_id.clone(),
        64 * 1024,
        MAX_OUTGOING_PACKET,
    )
}

/// What both of the manager's connections share: endpoint, credentials,
/// TLS, keep-alive, a clean session, and the packet bounds given.
pub(crate) fn connection_options(
    settings: &MqttSettings,
    client_id: String,
    max_incoming: usize,
    max_outgoing: usize,
) -> Result<MqttOptions, MqttError> {
    let endpoint = &settings.endpoint;
    let mut options = MqttOptions::new(client_id, endpoint.host.clone(), endpoint.port);
    options.set_keep_alive(settings.keep_alive);
    options.set_clean_session(true);
    options.set_max_packet_size(max_incoming, max_outgoing);
    if let Some(user) = &endpoint.username {
        options.set_credentials(user.clone(), endpoint.password.clone().unwrap_or_default());
    }
    if endpoint.tls {
        let tls = config_manager_client::tls_config(endpoint)
            .map_err(|e| MqttError::Tls(e.to_string()))?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::EnvSource;

    #[test]
    fn no_url_means_disabled() {
        assert!(MqttSettings::from_env(&EnvSource::of(&[]))
            .unwrap()
            .is_none());
        let publisher = Publisher::new(None).unwrap();
        assert!(!publisher.is_configured());
    }

    #[test]
    fn tls_with_an_unreadable_ca_file_fails_at_setup() {
        let s = MqttSettings::from_env(&EnvSource::of(&[
            ("MQTT_URL", "mqtts://broker"),
            ("MQTT_CA_FILE", "/nonexistent/ca.pem"),
        ]))
        .unwrap();
        let err = Publisher::new(s.as_ref()).err().expect("TLS error");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn configured_publisher_gives_a_queue_sink() {
        let s = MqttSettings::from_env(&EnvSource::of(&[("MQTT_URL", "mqtt://127.0.0.1:1")]))
            .unwrap()
            .unwrap();
        let publisher = Publisher::new(Some(&s)).unwrap();
        assert!(publisher.is_configured());
        // Never blocks, whatever the broker does.
        publisher
            .sink()
            .configs_changed(&[
                config_manager_core::domain::ServiceName::parse("tts-worker").unwrap(),
            ]);
    }
}
