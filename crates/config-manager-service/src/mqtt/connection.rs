//! The connection task: drives rumqttc's event loop, reconnects with backoff,
//! keeps the status board's `mqtt_connected` true to the link, and flushes on
//! shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use config_manager_core::health::HEALTH_TOPIC;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, Outgoing, Packet, QoS};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{source, Link, SHUTDOWN_STEP};
use crate::state::AppState;

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `event` of the last-will: the broker sends it when the manager vanished.
pub const WILL_EVENT: &str = "config-manager went offline unexpectedly (MQTT last will)";

pub(super) struct Connection {
    eventloop: EventLoop,
    client: AsyncClient,
    state: AppState,
    link: watch::Sender<Link>,
    stop: watch::Receiver<bool>,
    /// Publishes the publisher has handed to the client.
    enqueued: Arc<AtomicU64>,
    /// Publishes written to the broker in this session (counted up to
    /// `enqueued` when a session starts: older ones died with the old session).
    written: u64,
}

impl Connection {
    pub(super) fn new(
        mut eventloop: EventLoop,
        client: AsyncClient,
        state: AppState,
        link: watch::Sender<Link>,
        stop: watch::Receiver<bool>,
        enqueued: Arc<AtomicU64>,
    ) -> Self {
        set_will(&mut eventloop, &state);
        Self {
            eventloop,
            client,
            state,
            link,
            stop,
            enqueued,
            written: 0,
        }
    }

    pub(super) async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut failures: u32 = 0;
        loop {
            let event = tokio::select! {
                biased;
                _ = self.stop.changed() => break,
                event = self.eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = MIN_BACKOFF;
                    failures = 0;
                    self.written = self.enqueued.load(Ordering::Acquire);
                    tracing::info!("connected to the MQTT broker");
                    self.set_connected(true);
                }
                Ok(Event::Outgoing(Outgoing::Publish(_))) => self.written += 1,
                Ok(_) => {}
                Err(error) => {
                    let was_connected = self.link.borrow().connected;
                    self.set_connected(false);
                    failures = failures.saturating_add(1);
                    // One warning per outage; the retries of a long outage
                    // are logged at debug level only.
                    if was_connected || failures == 1 {
                        tracing::warn!(%error, retry_in = ?backoff, "MQTT broker unreachable; API writes continue and are published after reconnecting");
                    } else {
                        tracing::debug!(%error, retry_in = ?backoff, "MQTT reconnect failed");
                    }
                    // The will is fixed at connect time: refresh it so it
                    // carries the current epoch and status.
                    set_will(&mut self.eventloop, &self.state);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stop.changed() => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.drain_and_disconnect().await;
        self.set_connected(false);
    }

    /// Waits until everything queued is written and acknowledged (QoS 1), then
    /// sends DISCONNECT so the broker discards the last-will. Bounded by
    /// [`SHUTDOWN_STEP`]; without a connection there is nothing to flush.
    async fn drain_and_disconnect(&mut self) {
        if !self.link.borrow().connected {
            return;
        }
        let deadline = Instant::now() + SHUTDOWN_STEP;
        while self.written < self.enqueued.load(Ordering::Acquire)
            || self.eventloop.state.inflight() > 0
        {
            match tokio::time::timeout_at(deadline, self.eventloop.poll()).await {
                Ok(Ok(Event::Outgoing(Outgoing::Publish(_)))) => self.written += 1,
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "MQTT connection lost while flushing");
                    return;
                }
                Err(_) => {
                    tracing::warn!(
                        inflight = self.eventloop.state.inflight(),
                        "MQTT flush timed out; disconnecting anyway"
                    );
                    break;
                }
            }
        }
        if self.client.try_disconnect().is_err() {
            return;
        }
        loop {
            match tokio::time::timeout_at(deadline + Duration::from_secs(1), self.eventloop.poll())
                .await
            {
                Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(_)) => {}
            }
        }
        tracing::info!("disconnected from the MQTT broker");
    }

    fn set_connected(&self, connected: bool) {
        self.link.send_modify(|l| {
            if connected && !l.connected {
                l.session += 1;
            }
            l.connected = connected;
        });
        self.state.status().update(|s| s.mqtt_connected = connected);
    }
}

/// Sets the last-will to the offline form of the current health.
fn set_will(eventloop: &mut EventLoop, state: &AppState) {
    let payload = source::health_payload(state, Some(WILL_EVENT));
    eventloop.mqtt_options.set_last_will(LastWill::new(
        HEALTH_TOPIC,
        payload,
        QoS::AtLeastOnce,
        true,
    ));
}
