//! Client library for TARS services: get configuration from the config-manager
//! and apply its signed live updates safely.
//!
//! At start-up the client loads the service's config over REST
//! (`GET /api/config/services/<service>` with `X-API-Token`), or, when the
//! manager is unreachable, from its own copy of the last signed envelope it
//! verified (`CONFIG_CACHE_DIR`/`CONFIG_CACHE_PATH`, re-verified with the
//! public key; [`copy`]), or else from defaults the service supplies. It then subscribes to
//! `system/config/<service>` and applies an update only if it passes every check
//! of `contracts/README.md`: size and shape, service name, trusted Ed25519 key,
//! checksum, signature, and the freshness/replay rule of `contracts/freshness.md`
//! (version order within an epoch, age across epochs). The update must also
//! deserialize into the service's config type and be accepted by its on-change
//! callback; otherwise the previous config stays in force. Every rejection is
//! counted by reason and logged with `tracing`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use config_manager_client::{Client, ClientSettings};
//!
//! #[derive(serde::Deserialize, Default)]
//! struct TtsConfig { volume_percent: u8 }
//!
//! let client = Client::<TtsConfig>::builder(ClientSettings::from_env()?)
//!     .defaults(TtsConfig { volume_percent: 100 })
//!     .on_change(|c: &TtsConfig| {
//!         println!("volume is now {}", c.volume_percent);
//!         Ok::<(), std::convert::Infallible>(())
//!     })
//!     .start()
//!     .await?;
//! println!("starting with volume {}", client.current().volume_percent);
//! # Ok(()) }
//! ```
//!
//! Applied state: after the start-up load and after every applied or refused
//! update, the client publishes a retained report on
//! `system/config/<service>/applied/<instance_id>` (`contracts/README.md`,
//! "Applied state"), with an MQTT last will saying `offline`, so operators see
//! which version each instance runs. [`Client::last_report`] returns it;
//! `CONFIG_INSTANCE_ID` names the instance (default: host name + service) and
//! `CONFIG_REPORT_APPLIED=0` turns publishing off.
//!
//! Secrets: MQTT payloads leave secret fields out (the key is absent;
//! `docs/mqtt.md`). A service that needs its secrets uses a service-scoped
//! token for the REST load; later MQTT updates that omit a secret (or show it
//! masked, as an older publisher did) keep the value loaded over REST.

mod client;
pub mod copy;
pub mod counters;
pub mod mqtt_url;
pub mod pipeline;
pub mod settings;
mod startup;

mod mqtt;
pub mod report;

pub use client::{Client, ClientBuilder, RunnerReport, Snapshot};
pub use config_manager_core::applied::{AppliedReport, AppliedStatus, InstanceId};
pub use config_manager_core::envelope::freshness::{AppliedState, FreshnessPolicy};
pub use counters::CounterSnapshot;
pub use mqtt::tls_config;
pub use mqtt_url::MqttEndpoint;
pub use pipeline::{Outcome, RejectReason};
pub use settings::{ApiToken, ClientSettings, SettingsError, IGNORED_VARIABLES};
pub use startup::ConfigSource;

use thiserror::Error;

/// Why the client could not start.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Neither REST, nor the on-disk copy, nor defaults gave a config.
    #[error("no configuration available at start-up: {0}")]
    NoInitialConfig(String),
    #[error("no trusted public key configured; every update would be rejected")]
    NoTrustedKeys,
    #[error("TLS setup for mqtts:// failed: {0}")]
    Tls(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
