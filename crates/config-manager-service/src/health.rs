//! The health snapshot (what `GET /health` answers and MQTT publishes) and
//! the meaning of store errors for the database status. Shared by the HTTP
//! handler, the MQTT health publisher and the mode machine.

use config_manager_core::health::{DatabaseStatus, HealthStatus, ManagerStatus};
use config_manager_core::store::StoreError;

use crate::state::AppState;

/// The health message as of now (also what MQTT publishes).
pub fn snapshot(state: &AppState) -> HealthStatus {
    let s = state.status().get();
    let manager = state.manager();
    // Without a database: the epoch of the data being served (the cache's),
    // else the one expected; schema version 0 = unknown.
    let config_epoch = match &manager {
        Some(m) => Some(m.epoch().clone()),
        None => state
            .fallback()
            .map(|v| v.epoch().clone())
            .or_else(|| state.expected_epoch()),
    };
    let schema_version = manager.as_ref().map_or(0, |m| m.schema_version());
    let mut h = HealthStatus {
        ok: false,
        status: ManagerStatus::Online,
        database_status: s.database_status,
        operational_mode: s.mode,
        config_epoch,
        schema_version: u32::try_from(schema_version).unwrap_or(u32::MAX),
        lkg_cache_valid: s.lkg_cache_valid,
        litestream_status: s.litestream_status,
        last_backup: s.last_backup,
        event: s.event,
        err: s.err,
        degraded_tasks: s.degraded_tasks.iter().map(|t| (*t).to_owned()).collect(),
        mqtt_connected: s.mqtt_connected,
        mqtt_configured: s.mqtt_configured,
        uptime_seconds: state.uptime_seconds(),
        manager_version: env!("CARGO_PKG_VERSION").into(),
    };
    h.ok = h.derived_ok();
    h
}

/// The database status a store error means.
pub fn status_of(e: &StoreError) -> DatabaseStatus {
    match e {
        StoreError::Locked => DatabaseStatus::Locked,
        StoreError::SchemaMismatch(_) => DatabaseStatus::SchemaMismatch,
        StoreError::Missing(_) => DatabaseStatus::Missing,
        StoreError::Corrupt(_) => DatabaseStatus::Corrupted,
        // Cannot open or read it now (permissions, descriptors, I/O): says
        // nothing about the contents, so never "corrupted" (no rebuild).
        _ => DatabaseStatus::Unavailable,
    }
}
