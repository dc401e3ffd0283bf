//! `GET /health`: the fields of the MQTT health contract, open to everyone
//! (container probes) and free of secrets.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use config_manager_core::store::StoreError;
use serde_json::{json, Value};

use crate::state::AppState;

/// `GET /health`: 200 when healthy, 503 otherwise (same body).
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let checked = state
        .run(|m| {
            let probe = m.store().find_epoch().map(|_| ());
            Ok((probe, m.epoch().to_string(), m.schema_version()))
        })
        .await;
    let (database_status, err, epoch, schema_version) = match checked {
        Ok((Ok(()), epoch, sv)) => ("healthy", None, epoch, sv),
        Ok((Err(e), epoch, sv)) => (status_of(&e), Some(e.to_string()), epoch, sv),
        Err(e) => ("corrupted", Some(e.to_string()), String::new(), 0),
    };
    let ok = database_status == "healthy";
    let body = json!({
        "ok": ok,
        "status": "online",
        "database_status": database_status,
        "operational_mode": "normal",
        "config_epoch": epoch,
        "schema_version": schema_version,
        "lkg_cache_valid": false,
        "litestream_status": "disabled",
        "last_backup": null,
        "mqtt_connected": false,
        "event": null,
        "err": err,
        "uptime_seconds": state.uptime_seconds(),
        "manager_version": env!("CARGO_PKG_VERSION"),
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// The database status a store error means.
pub fn status_of(e: &StoreError) -> &'static str {
    match e {
        StoreError::Locked => "locked",
        StoreError::SchemaMismatch(_) => "schema-mismatch",
        StoreError::Missing(_) => "missing",
        _ => "corrupted",
    }
}
