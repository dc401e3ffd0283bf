//! The service layer of config-manager: everything the HTTP API, the web UI
//! and the command line share, without knowing any of them. State and the
//! mode machine, the MQTT publisher and applied-state subscriber, backups,
//! key rotation, token and session bookkeeping, the last-known-good refresh,
//! the read cache, the metrics registry and the settings.
//!
//! The layer rule is the compiler's: this crate depends on the core crate,
//! tokio and rumqttc, never on axum, hyper or tower, so no module here can
//! reach a request, a header or a route. The binary crate (`config-manager`)
//! holds the front ends (`http`, `ui`, `cli`), logging and `serve`.
//!
//! Inside the crate, modules import downward only (docs/architecture.md
//! draws the order): settings and the bookkeeping types are leaves,
//! [`state::AppState`] gathers them, and the tasks that run on the state
//! (modes, MQTT, backup, rotation, the guard) sit above it.

pub mod applied;
pub mod auth;
pub mod backup;
pub mod changes;
pub mod error;
pub mod first_run;
pub mod guard;
pub mod health;
pub mod keys;
pub mod lkg;
pub mod metrics;
pub mod modes;
pub mod mqtt;
pub mod read_cache;
pub mod runner;
pub mod settings;
pub mod state;
pub mod status;
pub mod supervise;

pub use changes::Changes;
pub use error::{DatabaseFault, ServiceError, ServiceFailure};
