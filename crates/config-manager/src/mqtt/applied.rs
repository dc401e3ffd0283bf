//! The applied-state subscriber: reads what every instance says it runs
//! (`system/config/+/applied/+`) into the [`AppliedBoard`] and writes the
//! board's changes to the database in batches.
//!
//! # A connection of its own
//!
//! The reports come from every service, so from more publishers than the
//! manager trusts with anything else. They get their own MQTT connection
//! (client id `<MQTT_CLIENT_ID>-applied`, clean session, no last-will): a
//! hostile or broken publisher can at worst make *this* connection drop
//! (a packet over [`MAX_INCOMING_PACKET`] does), never the one that
//! publishes the signed configurations. Payloads between 16 KiB and that
//! size are read and dropped as `too_large`.
//!
//! # Two tasks
//!
//! - the **connection task** drives the event loop, subscribes after every
//!   connect (clean session: the broker forgets subscriptions), hands each
//!   message to [`AppliedBoard::ingest`] (parsing under 16 KiB of JSON and
//!   one map update under a mutex: no I/O on this path) and clears the
//!   retained report of instances an operator forgot;
//! - the **persistence task** writes the dirty entries every
//!   [`PERSIST_INTERVAL`] in one transaction on the blocking pool, and
//!   re-reads the known services and desired versions when they changed.
//!
//! [`AppliedBoard`]: crate::service::applied::AppliedBoard

use std::time::Duration;

use config_manager_core::applied::{applied_topic, APPLIED_TOPIC_FILTER};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{MqttError, MqttSettings};
use crate::service::applied::{self as board, Ingested, PERSIST_INTERVAL};
use crate::service::ServiceError;
use crate::state::AppState;

/// Largest packet read on this connection. Larger ones make rumqttc drop
/// the connection (it reconnects with backoff); the broker should refuse
/// them first (`message_size_limit`, docs/mqtt.md).
pub const MAX_INCOMING_PACKET: usize = 256 * 1024;

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The two running tasks; [`RunningApplied::shutdown`] stops them after a
/// last write of what is dirty.
pub struct RunningApplied {
    stop: watch::Sender<bool>,
    connection: JoinHandle<()>,
    persistence: JoinHandle<()>,
}

/// Starts the subscriber for `settings` (the manager's broker).
pub fn start(settings: &MqttSettings, state: AppState) -> Result<RunningApplied, MqttError> {
    let options = options(settings)?;
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    // Acknowledgements and forget-clears go out at once (no Nagle delay).
    eventloop.network_options.set_tcp_nodelay(true);
    let (stop, stop_rx) = watch::channel(false);
    let connection = {
        let (state, stop) = (state.clone(), stop_rx.clone());
        tokio::spawn(async move {
            // The known services first, so retained reports for services
            // the manager does not know are dropped from the start.
            refresh(&state, true).await;
            run_connection(eventloop, client, state, stop).await;
        })
    };
    let persistence = tokio::spawn(run_persistence(state, stop_rx));
    Ok(RunningApplied {
        stop,
        connection,
        persistence,
    })
}

impl RunningApplied {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        super::join_bounded("applied-state subscriber", self.connection).await;
        super::join_bounded("applied-state persistence", self.persistence).await;
    }
}

fn options(settings: &MqttSettings) -> Result<MqttOptions, MqttError> {
    // Outgoing: only empty retained messages (forgotten instances).
    super::connection_options(
        settings,
        format!("{}-applied", settings.client_id),
        MAX_INCOMING_PACKET,
        4 * 1024,
    )
}

async fn run_connection(
    mut eventloop: EventLoop,
    client: AsyncClient,
    state: AppState,
    mut stop: watch::Receiver<bool>,
) {
    let board = state.applied();
    let mut backoff = MIN_BACKOFF;
    let mut failures: u32 = 0;
    // Set after each ConnAck until the subscription is queued.
    let mut subscribed = true;
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = board.clear_requested() => {
                for (service, instance) in board.take_clear_requests() {
                    let topic = applied_topic(&service, &instance);
                    if client.try_publish(topic, QoS::AtLeastOnce, true, Vec::new()).is_err() {
                        tracing::warn!(%service, %instance, "could not clear a forgotten instance's retained report (MQTT queue full or closed)");
                    }
                }
                continue;
            }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = MIN_BACKOFF;
                failures = 0;
                subscribed = false;
                tracing::info!("applied-state subscriber connected");
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let outcome = board.ingest(&p.topic, &p.payload);
                state.metrics().applied_report(outcome);
                match outcome {
                    Ingested::Dropped(reason) => {
                        tracing::debug!(reason = reason.as_str(), "applied-state report dropped");
                    }
                    Ingested::Evicted => tracing::info!(
                        "applied-state board full: the instance offline the longest made room for a new one"
                    ),
                    Ingested::Stored | Ingested::Cleared => {}
                }
            }
            Ok(_) => {}
            Err(error) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(%error, retry_in = ?backoff, "applied-state subscriber lost the broker");
                } else {
                    tracing::debug!(%error, retry_in = ?backoff, "applied-state reconnect failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        if !subscribed {
            // After every ConnAck (clean session). The client's queue is
            // empty right after connecting, so this only fails when closed.
            subscribed = client
                .try_subscribe(APPLIED_TOPIC_FILTER, QoS::AtLeastOnce)
                .is_ok();
        }
    }
    let _ = client.try_disconnect();
    // Let the DISCONNECT go out (bounded).
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

async fn run_persistence(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PERSIST_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        persist(&state).await;
        refresh(&state, false).await;
    }
    persist(&state).await;
}

/// Loads the reports an earlier run stored (start-up, with a database).
pub async fn load(state: &AppState) {
    let Some(m) = state.manager() else {
        return;
    };
    match tokio::task::spawn_blocking(move || m.store().list_applied()).await {
        Ok(Ok(rows)) => {
            let count = state.applied().load(rows);
            tracing::info!(count, "loaded applied-state reports");
        }
        Ok(Err(error)) => tracing::warn!(%error, "could not read stored applied-state reports"),
        Err(error) => tracing::warn!(%error, "reading applied-state reports failed"),
    }
}

/// Writes the dirty entries in one transaction (normal mode only; outside
/// it they stay dirty until the database is back).
pub async fn persist(state: &AppState) {
    if !state.is_normal() {
        return;
    }
    let changes = state.applied().take_dirty();
    if changes.is_empty() {
        return;
    }
    let batch = changes.clone();
    let result = state
        .run_blocking(move |m| m.store().save_applied(&batch).map_err(ServiceError::from))
        .await;
    if let Err(error) = result {
        tracing::warn!(%error, count = changes.len(), "could not store applied-state reports; retrying");
        state.applied().mark_dirty(&changes);
    }
}

/// Re-reads the known services and the desired versions when they may have
/// changed (`force`: always). At most once per tick, however many reports
/// named an unknown service.
async fn refresh(state: &AppState, force: bool) {
    let b = state.applied();
    let known = b.known_stale();
    let desired = b.take_desired_stale();
    if !(force || known || desired) {
        return;
    }
    let read = if state.is_normal() {
        state.manager().map(|m| {
            tokio::task::spawn_blocking(move || {
                let names = m.list_services().ok()?;
                let desired = board::desired_from_manager(&m).ok()?;
                Some((names, desired))
            })
        })
    } else {
        state.fallback().map(|f| {
            tokio::task::spawn_blocking(move || {
                Some((f.list_services(), board::desired_from_fallback(&f)))
            })
        })
    };
    let Some(task) = read else {
        return;
    };
    match task.await {
        Ok(Some((names, desired))) => {
            b.set_known(names);
            b.set_desired(desired);
        }
        _ => {
            // Try again on the next tick.
            b.desired_changed();
        }
    }
}
