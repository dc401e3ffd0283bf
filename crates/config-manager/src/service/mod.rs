//! The service layer: what the HTTP API, MQTT, the mode machine, backups and
//! key rotation share, without knowing any of them. It may import the core
//! crate, `state`, `status`, `settings` and `metrics`; it never imports
//! `http`, `cli` or `ui` (those are front ends that call into it).

pub mod applied;
pub mod changes;
pub mod error;
pub mod guard;
pub mod health;
pub mod supervise;

pub use changes::Changes;
pub use error::{DatabaseFault, ServiceError, ServiceFailure};
