//! The config-manager binary's front ends on the service layer
//! (`config-manager-service`): the HTTP API (`http`), the web UI (`ui`), the
//! command line (`cli`), logging, and `serve`, which starts and stops
//! everything. `main.rs` only parses the command line and calls into here.

pub mod cli;
pub mod http;
pub mod logging;
pub mod serve;
pub mod ui;
