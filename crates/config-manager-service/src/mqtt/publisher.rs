//! The publisher task: turns change notices, (re)connects, the re-issue timer
//! and status changes into retained QoS 1 messages.
//!
//! Only this task publishes, one message after the other, and it reads each
//! config when it publishes it. So the last message the broker retains for a
//! service is always the latest version that existed when it was sent, even
//! when a periodic re-issue and a change overlap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use config_manager_core::domain::ServiceName;
use config_manager_core::envelope::config_topic;
use config_manager_core::health::HEALTH_TOPIC;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::queue::{ChangeQueue, Pending};
use super::source::{self, PublishError};
use super::{Link, SHUTDOWN_STEP};
use crate::state::AppState;
use crate::status::Status;

/// Delay before a config that could not be read (database busy or in
/// trouble) is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// How many services are read and signed in one trip to the blocking pool.
const SIGN_BATCH: usize = 64;

/// `event` of the health message sent on a graceful shutdown.
pub const STOPPED_EVENT: &str = "config-manager stopped";

/// Why a message was not handed to the MQTT client.
enum SendError {
    /// Shutdown was requested while waiting for room in the client's queue.
    Stopping,
    /// The client's event loop is gone.
    Closed,
}

pub(super) struct PublisherTask {
    client: AsyncClient,
    state: AppState,
    queue: Arc<ChangeQueue>,
    link: watch::Receiver<Link>,
    status: watch::Receiver<Status>,
    stop: watch::Receiver<bool>,
    reissue: Duration,
    enqueued: Arc<AtomicU64>,
    /// Services whose last read failed transiently, retried at `retry_at`.
    retry_at: Option<Instant>,
}

impl PublisherTask {
    pub(super) fn new(
        client: AsyncClient,
        state: AppState,
        queue: Arc<ChangeQueue>,
        link: watch::Receiver<Link>,
        stop: watch::Receiver<bool>,
        reissue: Duration,
        enqueued: Arc<AtomicU64>,
    ) -> Self {
        let status = state.status().subscribe();
        Self {
            client,
            state,
            queue,
            link,
            status,
            stop,
            reissue,
            enqueued,
            retry_at: None,
        }
    }

    pub(super) async fn run(mut self) {
        let mut session_seen = 0;
        let mut reissue = tokio::time::interval_at(Instant::now() + self.reissue, self.reissue);
        reissue.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while !self.stopping() {
            let connected = self.link.borrow().connected;
            let retry_at = self.retry_at;
            tokio::select! {
                biased;
                _ = self.stop.changed() => break,
                changed = self.link.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let link = *self.link.borrow_and_update();
                    if link.connected && link.session != session_seen {
                        session_seen = link.session;
                        self.on_connected().await;
                    }
                }
                _ = self.queue.notified(), if connected => {
                    if let Some(pending) = self.queue.take() {
                        self.publish_pending(pending).await;
                    }
                }
                _ = wait_until(retry_at), if connected && retry_at.is_some() => {
                    self.retry_at = None;
                    if let Some(pending) = self.queue.take() {
                        self.publish_pending(pending).await;
                    }
                }
                changed = self.status.changed(), if connected => {
                    if changed.is_err() {
                        break;
                    }
                    self.publish_health().await;
                }
                _ = reissue.tick() => {
                    if connected {
                        tracing::debug!("periodic re-issue of every retained config");
                        self.publish_all().await;
                        self.publish_health().await;
                    }
                }
            }
        }
        self.publish_offline().await;
    }

    /// A new session: health first (so subscribers see the manager online),
    /// then every service's config, which also repairs a broker that lost its
    /// retained store and supersedes whatever was queued during the outage.
    async fn on_connected(&mut self) {
        self.queue.clear();
        self.publish_health().await;
        let count = self.publish_all().await;
        tracing::info!(
            services = count,
            "published every service's config after connecting"
        );
    }

    async fn publish_pending(&mut self, pending: Pending) {
        match pending {
            Pending::All => {
                self.publish_all().await;
            }
            Pending::Services(services) => self.publish_services(services).await,
        }
    }

    /// Publishes every service; returns how many were sent.
    async fn publish_all(&mut self) -> usize {
        let state = self.state.clone();
        let services =
            match tokio::task::spawn_blocking(move || source::list_services(&state)).await {
                Ok(Ok(services)) => services,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot list services to publish; retrying");
                    self.queue.mark_all();
                    self.retry_at = Some(Instant::now() + RETRY_AFTER);
                    return 0;
                }
                Err(error) => {
                    tracing::error!(%error, "listing services panicked");
                    return 0;
                }
            };
        let count = services.len();
        self.publish_services(services).await;
        count
    }

    /// Reads and signs `services` on the blocking pool, then publishes them
    /// in order, [`SIGN_BATCH`] at a time: memory stays that of one batch of
    /// signed payloads whatever the number of services (a reconnect
    /// republishes every one). Failures are logged and counted; transient
    /// ones are retried.
    async fn publish_services(&mut self, services: Vec<ServiceName>) {
        for batch in services.chunks(SIGN_BATCH) {
            if !self.publish_batch(batch.to_vec()).await {
                return;
            }
        }
    }

    /// One batch of [`PublisherTask::publish_services`]; `false` when publishing
    /// must stop (shutdown, or the client is closed).
    async fn publish_batch(&mut self, services: Vec<ServiceName>) -> bool {
        let state = self.state.clone();
        let signed = tokio::task::spawn_blocking(move || {
            services
                .into_iter()
                .map(|service| {
                    let payload = source::signed_config(&state, &service);
                    (service, payload)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let signed = match signed {
            Ok(signed) => signed,
            Err(error) => {
                tracing::error!(%error, "signing configs panicked");
                return true;
            }
        };
        for (service, payload) in signed {
            match payload {
                Ok(bytes) => {
                    let topic = config_topic(&service);
                    match self.send(topic, bytes).await {
                        Ok(()) => self.state.metrics().mqtt_publish(true),
                        Err(SendError::Stopping) => return false,
                        Err(SendError::Closed) => {
                            self.state.metrics().mqtt_publish(false);
                            tracing::error!("MQTT client is closed; cannot publish");
                            return false;
                        }
                    }
                }
                Err(PublishError::Gone(_)) => {
                    tracing::debug!(service = %service, "service no longer exists; nothing to publish");
                }
                Err(error) => {
                    self.state.metrics().mqtt_publish(false);
                    tracing::warn!(service = %service, %error, "config not published");
                    if error.is_transient() {
                        self.queue.mark([service]);
                        self.retry_at = Some(Instant::now() + RETRY_AFTER);
                    }
                }
            }
        }
        true
    }

    async fn publish_health(&mut self) {
        // Mark the current status as seen: this message carries it.
        self.status.borrow_and_update();
        let payload = source::health_payload(&self.state, None);
        if let Err(SendError::Closed) = self.send(HEALTH_TOPIC.to_owned(), payload).await {
            tracing::error!("MQTT client is closed; cannot publish health");
        }
    }

    /// On shutdown: the offline health message, bounded in time. Sent even if
    /// the link looks down (it waits in the client's queue, harmlessly), so
    /// the connection task always has something to flush and wakes up.
    async fn publish_offline(&mut self) {
        let payload = source::health_payload(&self.state, Some(STOPPED_EVENT));
        let publish = self
            .client
            .publish(HEALTH_TOPIC.to_owned(), QoS::AtLeastOnce, true, payload);
        match tokio::time::timeout(SHUTDOWN_STEP, publish).await {
            Ok(Ok(())) => {
                self.enqueued.fetch_add(1, Ordering::AcqRel);
            }
            Ok(Err(error)) => tracing::warn!(%error, "could not queue the offline health message"),
            Err(_) => tracing::warn!("MQTT queue full at shutdown; offline health not sent"),
        }
    }

    /// Hands one retained QoS 1 message to the client. Waits while the
    /// client's queue is full (only this task waits: API requests never do),
    /// unless shutdown is requested.
    async fn send(&mut self, topic: String, payload: Vec<u8>) -> Result<(), SendError> {
        let publish = self.client.publish(topic, QoS::AtLeastOnce, true, payload);
        tokio::select! {
            result = publish => match result {
                Ok(()) => {
                    self.enqueued.fetch_add(1, Ordering::AcqRel);
                    Ok(())
                }
                Err(_) => Err(SendError::Closed),
            },
            _ = wait_for_stop(&mut self.stop) => Err(SendError::Stopping),
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Resolves once shutdown is requested (or the requester is gone).
async fn wait_for_stop(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleeps until `at`; never resolves for `None` (the branch is disabled then).
async fn wait_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
