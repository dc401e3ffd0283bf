//! Core of the TARS config-manager: the domain types, service schemas, the SQLite
//! store, the cryptography (canonical JSON, Ed25519 envelopes, AES-GCM secrets, HMAC)
//! and the last-known-good cache.
//!
//! This crate is synchronous and has no web, MQTT or async dependencies, so the
//! client library can reuse the envelope and signature code (with
//! `default-features = false`) without pulling in SQLite.

pub mod applied;
pub mod audit;
pub mod change_type;
pub mod crypto;
pub mod domain;
pub mod envelope;
pub mod fs;
pub mod health;
pub mod lkg;
#[cfg(feature = "store")]
pub mod manager;
#[cfg(feature = "schema")]
pub mod schema;
#[cfg(feature = "store")]
pub mod store;
