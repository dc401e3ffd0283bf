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
//!   message to [`AppliedBoard::ingest`](crate::applied::AppliedBoard::ingest) (parsing under 16 KiB of JSON and
//!   one map update under a mutex: no I/O on this path) and clears the
//!   retained report of instances an operator forgot;
//! - the **persistence task** writes the dirty entries every
//!   [`PERSIST_INTERVAL`] in one transaction on the blocking pool, and
//!   re-reads the known services and desired versions when they changed.
//!
//! [`AppliedBoard`]: crate::applied::AppliedBoard

use std::time::Duration;

use config_manager_core::applied::{applied_topic, InstanceId, APPLIED_TOPIC_FILTER};
use config_manager_core::domain::ServiceName;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{MqttError, MqttSettings};
use crate::applied::{self as board, DropReason, Ingested, PERSIST_INTERVAL};
use crate::state::AppState;
use crate::supervise::{self, Lifetime};
use crate::ServiceError;

/// Largest packet read on this connection. Reports between 16 KiB and this
/// are read and dropped as `too_large` with the connection kept. Larger ones
/// make rumqttc drop the connection before the topic is known: counted as
/// `oversized_packet`, and the reconnect backs off (a retained one comes back
/// on every subscribe). The broker should refuse them first
/// (`message_size_limit`, docs/mqtt.md).
pub const MAX_INCOMING_PACKET: usize = 4 * 1024 * 1024;

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The two running tasks; [`RunningApplied::shutdown`] stops them after a
/// last write of what is dirty.
pub struct RunningApplied {
    stop: watch::Sender<bool>,
    /// Cancelled first on shutdown, so the supervisors do not restart a task
    /// that ends because it was told to.
    cancel: CancellationToken,
    connection: JoinHandle<()>,
    persistence: JoinHandle<()>,
}

/// Starts the subscriber for `settings` (the manager's broker). Both tasks
/// are supervised (`supervise`): one that ends unexpectedly is
/// restarted, the connection task on a new MQTT connection.
pub fn start(settings: &MqttSettings, state: AppState) -> Result<RunningApplied, MqttError> {
    let options = options(settings)?;
    let (stop, stop_rx) = watch::channel(false);
    let cancel = CancellationToken::new();
    let connection = {
        let (st, stop) = (state.clone(), stop_rx.clone());
        supervise::spawn(
            "applied-state subscriber",
            Lifetime::UntilShutdown,
            &state,
            cancel.clone(),
            move || {
                let (client, mut eventloop) = AsyncClient::new(options.clone(), 64);
                // Acknowledgements and forget-clears go out at once (no
                // Nagle delay).
                eventloop.network_options.set_tcp_nodelay(true);
                let (state, stop) = (st.clone(), stop.clone());
                async move {
                    // The known services first, so retained reports for
                    // services the manager does not know are dropped from
                    // the start.
                    refresh(&state, true).await;
                    run_connection(eventloop, client, state, stop).await;
                }
            },
        )
    };
    let persistence = {
        let (st, stop) = (state.clone(), stop_rx);
        supervise::spawn(
            "applied-state persistence",
            Lifetime::UntilShutdown,
            &state,
            cancel.clone(),
            move || run_persistence(st.clone(), stop.clone()),
        )
    };
    Ok(RunningApplied {
        stop,
        cancel,
        connection,
        persistence,
    })
}

impl RunningApplied {
    pub async fn shutdown(self) {
        self.cancel.cancel();
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

/// How long a connection must have been up for its loss to reset the
/// reconnect backoff. Resetting at every ConnAck let a connection that
/// drops right after connecting (a retained packet over the incoming limit
/// is re-sent on every subscribe) reconnect about twice a second forever.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Per-event log lines are aggregated into one line per this window.
const LOG_WINDOW: Duration = Duration::from_secs(10);

async fn run_connection(
    mut eventloop: EventLoop,
    client: AsyncClient,
    state: AppState,
    mut stop: watch::Receiver<bool>,
) {
    let board = state.applied();
    let mut backoff = MIN_BACKOFF;
    let mut failures: u32 = 0;
    let mut connected_at: Option<tokio::time::Instant> = None;
    // Set after each ConnAck until the subscription is queued.
    let mut subscribed = true;
    // Retained reports still to clear; kept until the client's queue takes
    // them (a full queue used to drop them with a warning).
    let mut clears = PendingClears::default();
    let mut window = FloodLog::default();
    let mut log_tick = tokio::time::interval(LOG_WINDOW);
    log_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = board.clear_requested() => {
                clears.add(board.take_clear_requests());
                clears.flush(&client);
                continue;
            }
            _ = log_tick.tick() => {
                window.flush();
                continue;
            }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected_at = Some(tokio::time::Instant::now());
                subscribed = false;
                if failures > 0 {
                    tracing::info!(failures, "applied-state subscriber reconnected");
                } else {
                    tracing::info!("applied-state subscriber connected");
                }
                failures = 0;
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let outcome = board.ingest(&p.topic, &p.payload);
                state.metrics().applied_report(outcome);
                match outcome {
                    Ingested::Dropped(reason) => {
                        tracing::debug!(reason = reason.as_str(), "applied-state report dropped");
                    }
                    Ingested::Evicted => window.evicted += 1,
                    Ingested::Stored | Ingested::Cleared => {}
                }
            }
            Ok(_) => {}
            Err(error) => {
                if is_oversized_packet(&error) {
                    board.note_dropped(DropReason::OversizedPacket);
                    state
                        .metrics()
                        .applied_report(Ingested::Dropped(DropReason::OversizedPacket));
                }
                // A connection that stayed up resets the backoff; one that
                // dropped right after connecting keeps backing off.
                if connected_at
                    .take()
                    .is_some_and(|t| t.elapsed() >= STABLE_AFTER)
                {
                    backoff = MIN_BACKOFF;
                }
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
        // Each polled event may have made room in the client's queue.
        clears.flush(&client);
    }
    window.flush();
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

/// Whether the connection dropped because a packet was over the incoming
/// limit (the library cannot skip it; the broker re-sends a retained one).
fn is_oversized_packet(error: &rumqttc::ConnectionError) -> bool {
    matches!(
        error,
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_)
        ))
    )
}

/// Retained reports of forgotten or evicted instances, waiting for room in
/// the MQTT client's queue.
#[derive(Default)]
struct PendingClears {
    topics: std::collections::VecDeque<String>,
    /// A full queue was already logged for the current backlog.
    waiting_logged: bool,
}

impl PendingClears {
    fn add(&mut self, requests: Vec<(ServiceName, InstanceId)>) {
        self.topics.extend(
            requests
                .iter()
                .map(|(service, instance)| applied_topic(service, instance)),
        );
    }

    /// Queues as many clears as the client takes; the rest wait for the
    /// next turn of the loop.
    fn flush(&mut self, client: &AsyncClient) {
        while let Some(topic) = self.topics.front() {
            if client
                .try_publish(topic.clone(), QoS::AtLeastOnce, true, Vec::new())
                .is_err()
            {
                if !self.waiting_logged {
                    tracing::debug!(
                        waiting = self.topics.len(),
                        "MQTT queue full: retained-report clears wait for room"
                    );
                    self.waiting_logged = true;
                }
                return;
            }
            self.topics.pop_front();
        }
        self.waiting_logged = false;
    }
}

/// Counts of per-report events, logged as one line per [`LOG_WINDOW`]
/// (5,000 reports with new ids wrote one INFO line each).
#[derive(Default)]
struct FloodLog {
    evicted: u64,
}

impl FloodLog {
    fn flush(&mut self) {
        if self.evicted > 0 {
            tracing::info!(
                evicted = self.evicted,
                window_secs = LOG_WINDOW.as_secs(),
                "applied-state board full: instances offline the longest made room for new ones"
            );
            self.evicted = 0;
        }
    }
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
