//! The config-manager service: settings and first run, the HTTP API, and the
//! wiring that starts and stops everything. `main.rs` only parses the command
//! line and calls into here.

pub mod auth;
pub mod backup;
pub mod cli;
pub mod first_run;
pub mod http;
pub mod keys;
pub mod lkg;
pub mod logging;
pub mod metrics;
pub mod modes;
pub mod mqtt;
pub mod read_cache;
pub mod serve;
pub mod service;
pub mod settings;
pub mod state;
pub mod status;
pub mod ui;
