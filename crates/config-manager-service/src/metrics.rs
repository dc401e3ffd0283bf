//! Prometheus metrics, served at `GET /metrics` (OpenMetrics text format).
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client): the
//! registry lives in the application state rather than in a global recorder, so every
//! test server and every in-process router has its own numbers.
//!
//! Two kinds of metrics:
//! - **Events**, counted where they happen: HTTP requests (by method, matched
//!   route template and status), database operations (every
//!   `AppState::run_blocking`), committed configuration changes, MQTT publishes and
//!   LKG writes (the publisher and the LKG writer call [`Metrics::mqtt_publish`]
//!   and [`Metrics::lkg_write`]).
//! - **State**, read from the [`StatusBoard`](crate::status::StatusBoard) at
//!   scrape time: operational mode, database status, MQTT connection, LKG
//!   validity, backup status and age, master-key rotation progress. Reading at
//!   scrape time means no part of the service has to remember to update a
//!   gauge.
//!
//! Cardinality is bounded by construction: the `route` label is the router's
//! path *template* (`/api/config/services/{service}`), never the raw path, and
//! unmatched requests share `route="unmatched"`; `method` is one of the
//! standard verbs or `OTHER`. A client sending hostile paths or methods cannot
//! create new series. No label ever carries a service name, key, value or
//! token, so the endpoint is as safe to expose as `/api/config/health`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use config_manager_core::health::{DatabaseStatus, LitestreamStatus, OperationalMode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::applied::{DropReason, Ingested, SyncState, Totals};
use crate::status::Status;

/// Path of the scrape endpoint (outside `/api/config`: Prometheus' default
/// `metrics_path`).
pub const METRICS_PATH: &str = "/metrics";

/// `route` label of requests no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Content type of the OpenMetrics text exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets in seconds, 0.5 ms to 10 s: SQLite reads take well under a
/// millisecond, a durable write one fsync, the request timeout is 30 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the service. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    db_duration: HistogramFamily<OutcomeLabels>,
    config_changes: Counter,
    mqtt_publishes: Family<OutcomeLabels, Counter>,
    mqtt_connected: Gauge,
    lkg_writes: Family<OutcomeLabels, Counter>,
    lkg_valid: Gauge,
    mode: Family<ModeLabels, Gauge>,
    database_status: Family<StatusLabels, Gauge>,
    backup_status: Family<StatusLabels, Gauge>,
    last_backup_timestamp: Gauge<f64, AtomicU64>,
    last_backup_age: Gauge<f64, AtomicU64>,
    key_rotation_active: Gauge,
    key_rotation_remaining: Gauge,
    key_rotation_unavailable: Gauge,
    uptime: Gauge,
    applied_instances: Family<SyncLabels, Gauge>,
    applied_received: Counter,
    applied_dropped: Family<DropLabels, Counter>,
    applied_evicted: Counter,
    task_restarts: Family<TaskLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered (at zero).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("config_manager");
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency by method and route template",
            Unit::Seconds,
            http_duration.clone(),
        );
        let db_duration: HistogramFamily<OutcomeLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "db_operation_duration",
            "Latency of database operations (blocking pool included), by outcome",
            Unit::Seconds,
            db_duration.clone(),
        );
        let config_changes = Counter::default();
        registry.register(
            "config_changes",
            "Committed configuration changes (one per service and new version)",
            config_changes.clone(),
        );
        let mqtt_publishes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "mqtt_publishes",
            "MQTT config publishes by outcome (ok, error)",
            mqtt_publishes.clone(),
        );
        let mqtt_connected = Gauge::default();
        registry.register(
            "mqtt_connected",
            "1 while the MQTT connection is up",
            mqtt_connected.clone(),
        );
        let lkg_writes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "lkg_writes",
            "Last-known-good cache writes by outcome (ok, error)",
            lkg_writes.clone(),
        );
        let lkg_valid = Gauge::default();
        registry.register(
            "lkg_cache_valid",
            "1 when the last-known-good cache verified at its last check",
            lkg_valid.clone(),
        );
        let mode = Family::<ModeLabels, Gauge>::default();
        registry.register(
            "operational_mode",
            "1 for the current operational mode, 0 for the others",
            mode.clone(),
        );
        let database_status = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "database_status",
            "1 for the current database status, 0 for the others",
            database_status.clone(),
        );
        let backup_status = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "backup_status",
            "1 for the current Litestream backup status, 0 for the others",
            backup_status.clone(),
        );
        let last_backup_timestamp = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "last_backup_timestamp",
            "Unix time of the last successful backup; 0 when none is known",
            Unit::Seconds,
            last_backup_timestamp.clone(),
        );
        let last_backup_age = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "last_backup_age",
            "Seconds since the last successful backup; -1 when none is known",
            Unit::Seconds,
            last_backup_age.clone(),
        );
        let key_rotation_active = Gauge::default();
        registry.register(
            "key_rotation_active",
            "1 while a master-key rotation re-encrypts secrets",
            key_rotation_active.clone(),
        );
        let key_rotation_remaining = Gauge::default();
        registry.register(
            "key_rotation_secrets_remaining",
            "Secrets still sealed with the previous master key",
            key_rotation_remaining.clone(),
        );
        let key_rotation_unavailable = Gauge::default();
        registry.register(
            "key_rotation_secrets_unavailable",
            "Secrets no configured master key can open",
            key_rotation_unavailable.clone(),
        );
        let uptime = Gauge::default();
        registry.register_with_unit(
            "uptime",
            "Seconds since the service started",
            Unit::Seconds,
            uptime.clone(),
        );
        let applied_instances = Family::<SyncLabels, Gauge>::default();
        registry.register(
            "applied_instances",
            "Service instances by sync state against the desired config (in_sync, pending = out of sync, rejected, offline)",
            applied_instances.clone(),
        );
        let applied_received = Counter::default();
        registry.register(
            "applied_reports_received",
            "Applied-state reports kept (or clearing payloads taken)",
            applied_received.clone(),
        );
        let applied_dropped = Family::<DropLabels, Counter>::default();
        registry.register(
            "applied_reports_dropped",
            "Applied-state reports dropped, by reason",
            applied_dropped.clone(),
        );
        let applied_evicted = Counter::default();
        registry.register(
            "applied_instances_evicted",
            "Offline instances removed from the board to make room for a new instance at a cap",
            applied_evicted.clone(),
        );
        let task_restarts = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_restarts",
            "Background tasks restarted after ending unexpectedly (supervise), by task",
            task_restarts.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the label carries the release",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        let metrics = Self {
            registry,
            http_requests,
            http_duration,
            db_duration,
            config_changes,
            mqtt_publishes,
            mqtt_connected,
            lkg_writes,
            lkg_valid,
            mode,
            database_status,
            backup_status,
            last_backup_timestamp,
            last_backup_age,
            key_rotation_active,
            key_rotation_remaining,
            key_rotation_unavailable,
            uptime,
            applied_instances,
            applied_received,
            applied_dropped,
            applied_evicted,
            task_restarts,
        };
        // Series that exist before their first event, so dashboards and
        // `rate()` see a 0 instead of nothing.
        for outcome in ["ok", "error"] {
            drop(
                metrics
                    .db_duration
                    .get_or_create(&OutcomeLabels { outcome }),
            );
            drop(
                metrics
                    .mqtt_publishes
                    .get_or_create(&OutcomeLabels { outcome }),
            );
            drop(metrics.lkg_writes.get_or_create(&OutcomeLabels { outcome }));
        }
        for reason in DropReason::ALL {
            drop(metrics.applied_dropped.get_or_create(&DropLabels {
                reason: reason.as_str(),
            }));
        }
        metrics.refresh_applied(Totals::default());
        metrics.refresh(&Status::default(), 0);
        metrics
    }

    /// Counts one applied-state message by what the board did with it.
    /// A supervised task ended unexpectedly and is being restarted.
    pub fn task_restarted(&self, task: &'static str) {
        self.task_restarts.get_or_create(&TaskLabels { task }).inc();
    }

    pub fn applied_report(&self, outcome: Ingested) {
        match outcome {
            Ingested::Stored | Ingested::Cleared => self.applied_received.inc(),
            Ingested::Evicted => {
                self.applied_received.inc();
                self.applied_evicted.inc()
            }
            Ingested::Dropped(reason) => self
                .applied_dropped
                .get_or_create(&DropLabels {
                    reason: reason.as_str(),
                })
                .inc(),
        };
    }

    /// Copies the instance counts by sync state into their gauges.
    pub fn refresh_applied(&self, totals: Totals) {
        for (state, n) in [
            (SyncState::InSync, totals.in_sync),
            (SyncState::Pending, totals.pending),
            (SyncState::Rejected, totals.rejected),
            (SyncState::Offline, totals.offline),
        ] {
            self.applied_instances
                .get_or_create(&SyncLabels {
                    state: state.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Counts one HTTP request. `route` is the matched template (`None`: no
    /// route matched).
    pub fn observe_request(
        &self,
        method: RequestMethod,
        route: Option<&str>,
        status: u16,
        elapsed: Duration,
    ) {
        let method = method.as_str();
        let route = route.unwrap_or(UNMATCHED_ROUTE).to_owned();
        self.http_duration
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.http_requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }

    /// Records one database operation.
    pub fn observe_db(&self, elapsed: Duration, ok: bool) {
        self.db_duration
            .get_or_create(&OutcomeLabels {
                outcome: outcome(ok),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts committed changes (one per service that got a new version).
    pub fn config_changed(&self, services: usize) {
        self.config_changes
            .inc_by(u64::try_from(services).unwrap_or(u64::MAX));
    }

    /// Counts one MQTT publish attempt (for the publisher).
    pub fn mqtt_publish(&self, ok: bool) {
        self.mqtt_publishes
            .get_or_create(&OutcomeLabels {
                outcome: outcome(ok),
            })
            .inc();
    }

    /// Counts one LKG cache write (for the LKG writer).
    pub fn lkg_write(&self, ok: bool) {
        self.lkg_writes
            .get_or_create(&OutcomeLabels {
                outcome: outcome(ok),
            })
            .inc();
    }

    /// Copies the status board into the state gauges.
    pub fn refresh(&self, status: &Status, uptime_seconds: u64) {
        self.uptime
            .set(i64::try_from(uptime_seconds).unwrap_or(i64::MAX));
        self.mqtt_connected.set(i64::from(status.mqtt_connected));
        self.lkg_valid.set(i64::from(status.lkg_cache_valid));
        let rotation = &status.rotation;
        self.key_rotation_active.set(i64::from(
            rotation.state == crate::status::RotationState::Running,
        ));
        self.key_rotation_remaining
            .set(i64::try_from(rotation.pending).unwrap_or(i64::MAX));
        self.key_rotation_unavailable
            .set(i64::try_from(rotation.unavailable.len()).unwrap_or(i64::MAX));
        for mode in ALL_MODES {
            self.mode
                .get_or_create(&ModeLabels {
                    mode: mode.as_str(),
                })
                .set(i64::from(mode == status.mode));
        }
        for db in ALL_DATABASE_STATUSES {
            self.database_status
                .get_or_create(&StatusLabels {
                    status: db.as_str(),
                })
                .set(i64::from(db == status.database_status));
        }
        for backup in ALL_BACKUP_STATUSES {
            self.backup_status
                .get_or_create(&StatusLabels {
                    status: backup.as_str(),
                })
                .set(i64::from(backup == status.litestream_status));
        }
        let last = status
            .last_backup
            .as_deref()
            .and_then(|t| config_manager_core::domain::parse_rfc3339(t).ok());
        match last {
            Some(t) => {
                let ts = t.unix_timestamp() as f64 + f64::from(t.nanosecond()) / 1e9;
                let age = (time::OffsetDateTime::now_utc() - t).as_seconds_f64();
                self.last_backup_timestamp.set(ts);
                self.last_backup_age.set(age.max(0.0));
            }
            None => {
                self.last_backup_timestamp.set(0.0);
                self.last_backup_age.set(-1.0);
            }
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn outcome(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "error"
    }
}

/// A request's method as a metrics label: the standard verbs, anything else
/// is `Other` (extension methods are arbitrary tokens and would make the
/// series unbounded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestMethod {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other,
}

impl RequestMethod {
    /// From the method token as the request carried it (case-sensitive, as
    /// HTTP methods are).
    pub fn from_token(token: &str) -> Self {
        match token {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Other => "OTHER",
        }
    }
}

const ALL_MODES: [OperationalMode; 3] = [
    OperationalMode::Normal,
    OperationalMode::ReadOnlyFallback,
    OperationalMode::Rebuilding,
];

const ALL_DATABASE_STATUSES: [DatabaseStatus; 6] = [
    DatabaseStatus::Healthy,
    DatabaseStatus::Locked,
    DatabaseStatus::Corrupted,
    DatabaseStatus::SchemaMismatch,
    DatabaseStatus::Missing,
    DatabaseStatus::Unavailable,
];

const ALL_BACKUP_STATUSES: [LitestreamStatus; 3] = [
    LitestreamStatus::Healthy,
    LitestreamStatus::Error,
    LitestreamStatus::Disabled,
];

// The label functions match exhaustively: a new variant fails to compile here
// until it gets a label (and a place in the `ALL_*` list above).

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn hostile_routes_and_methods_share_series() {
        let m = Metrics::new();
        for i in 0..50 {
            let method = RequestMethod::from_token(&format!("X{i}"));
            m.observe_request(method, None, 404, Duration::ZERO);
        }
        let text = m.encode().unwrap();
        let series = text
            .lines()
            .filter(|l| l.starts_with("config_manager_http_requests_total{"))
            .count();
        assert_eq!(series, 1, "{text}");
        assert!(text.contains(
            "config_manager_http_requests_total{method=\"OTHER\",route=\"unmatched\",status=\"404\"} 50"
        ));
    }

    #[test]
    fn state_gauges_follow_the_status() {
        let m = Metrics::new();
        let status = Status {
            mode: OperationalMode::ReadOnlyFallback,
            last_backup: Some("2020-01-01T00:00:00Z".into()),
            rotation: crate::status::RotationStatus {
                state: crate::status::RotationState::Running,
                pending: 7,
                unavailable: vec!["tts-worker/eleven_api_key".into()],
                ..Default::default()
            },
            ..Status::default()
        };
        m.refresh(&status, 5);
        let text = m.encode().unwrap();
        assert!(text.contains("config_manager_operational_mode{mode=\"read-only-fallback\"} 1"));
        assert!(text.contains("config_manager_operational_mode{mode=\"normal\"} 0"));
        assert!(text.contains("config_manager_last_backup_timestamp_seconds 1577836800.0"));
        assert!(text.contains("config_manager_key_rotation_active 1\n"));
        assert!(text.contains("config_manager_key_rotation_secrets_remaining 7\n"));
        assert!(text.contains("config_manager_key_rotation_secrets_unavailable 1\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}
