//! Schema evolution at start-up: when the loaded service schemas differ from
//! the ones the database was last written against (hash in `schema_version`),
//! every stored configuration is checked against the new schemas.
//!
//! - Lossless conversions first: a field that became an integer 0/1 switch
//!   (the built-in TARS schemas now type such switches the way the services
//!   parse them, with `int()`) turns a stored `true`/`false` into `1`/`0`.
//!   Nothing else is converted; a value that would lose meaning is reported
//!   like any other mismatch.
//! - Still valid once new fields get their defaults: the filled-in values are
//!   stored as a new version (`change_type = "schema"`, so history shows the
//!   new fields) and the new hash is recorded.
//! - Not valid: the service is reported with each failing field. With
//!   `auto_fix` (`ALLOW_AUTO_REBUILD=1`) only the failing fields are reset to
//!   their defaults (or dropped when the schema no longer has them), recorded in
//!   history; everything else is kept. Without it nothing is changed, the hash
//!   is not recorded, and the service runs in `schema-mismatch` read-only mode.

use crate::change_type::ChangeType;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{items_for, strip_secrets, Manager, Result};
use crate::domain::ServiceName;
use crate::schema::{FieldError, SchemaView};
use crate::store::ConfigWrite;

/// One service whose stored values do not satisfy its new schema.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaMismatch {
    /// Text, not a [`ServiceName`]: a mismatch also reports a registered
    /// schema whose stored service name is not one (that is the problem).
    pub service: String,
    pub errors: Vec<FieldError>,
}

/// What a schema check found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SchemaReport {
    /// Whether the schemas differ from the recorded ones.
    pub changed: bool,
    /// Services given a new version with new defaults filled in.
    pub upgraded: Vec<ServiceName>,
    /// Services whose failing fields were reset (auto-fix).
    pub reset: Vec<SchemaMismatch>,
    /// Services left incompatible (read-only until fixed).
    pub mismatches: Vec<SchemaMismatch>,
}

impl SchemaReport {
    /// One line naming every failing service and field (for health and logs).
    pub fn summary(&self) -> String {
        self.mismatches
            .iter()
            .map(|m| {
                let fields: Vec<String> = m
                    .errors
                    .iter()
                    .map(|e| format!("{} ({})", e.pointer, e.message))
                    .collect();
                format!("{}: {}", m.service, fields.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Manager {
    /// Checks stored configurations against changed schemas (see module docs).
    pub(super) fn evolve_schemas(
        &mut self,
        recorded_hash: &str,
        auto_fix: bool,
    ) -> Result<SchemaReport> {
        let hash = self.schemas.hash();
        let mut report = SchemaReport {
            changed: hash != recorded_hash,
            ..SchemaReport::default()
        };
        if !report.changed {
            return Ok(report);
        }
        let mut writes = Vec::new();
        for stored in self.store.list_configs()? {
            let Some(schema) = self.schemas.get(&stored.service) else {
                continue;
            };
            let view = schema.view();
            let mut candidate = strip_secrets(&view, view.with_defaults(&stored.config));
            let converted = convert_switches(&view, &mut candidate);
            let (errors, reason) = match schema.validate(&Value::Object(candidate.clone())) {
                Ok(()) if converted => (
                    Vec::new(),
                    "schema change: new fields get their defaults; true/false switches stored as 1/0",
                ),
                Ok(()) => (Vec::new(), "schema change: new fields get their defaults"),
                Err(errors) if auto_fix => {
                    reset_fields(&mut candidate, &errors, view.defaults());
                    if schema.validate(&Value::Object(candidate.clone())).is_err() {
                        report.mismatches.push(SchemaMismatch {
                            service: stored.service.to_string(),
                            errors,
                        });
                        continue;
                    }
                    (
                        errors,
                        "schema change: incompatible fields reset to their defaults",
                    )
                }
                Err(errors) => {
                    report.mismatches.push(SchemaMismatch {
                        service: stored.service.to_string(),
                        errors,
                    });
                    continue;
                }
            };
            if candidate == stored.config {
                continue;
            }
            if errors.is_empty() {
                report.upgraded.push(stored.service.clone());
            } else {
                report.reset.push(SchemaMismatch {
                    service: stored.service.to_string(),
                    errors,
                });
            }
            writes.push(ConfigWrite {
                service: schema.name().clone(),
                items: items_for(schema.name(), &view, &candidate),
                config: candidate,
                expected_version: Some(stored.version),
                actor: "system".into(),
                reason: Some(reason.into()),
                change_type: ChangeType::Schema,
                secrets: vec![],
            });
        }
        if !report.mismatches.is_empty() {
            return Ok(report);
        }
        self.store.save_configs(&writes, &self.epoch)?;
        let detail = serde_json::to_string(&report).ok();
        self.schema_version = self
            .store
            .record_schema_hash(&hash, detail.as_deref())?
            .version;
        Ok(report)
    }
}

/// Turns stored booleans into `1`/`0` for fields that accept integers but no
/// longer booleans (a boolean switch retyped as the integer its service
/// parses). Returns whether anything changed.
pub(super) fn convert_switches(view: &SchemaView, config: &mut Map<String, Value>) -> bool {
    let mut changed = false;
    for (meta, types) in view.typed_fields() {
        let takes_int = types.iter().any(|t| t == "integer");
        let takes_bool = types.iter().any(|t| t == "boolean");
        if !takes_int || takes_bool {
            continue;
        }
        if let Some(value) = config.get_mut(&meta.key) {
            if let Value::Bool(b) = *value {
                *value = Value::from(u8::from(b));
                changed = true;
            }
        }
    }
    changed
}

/// Resets each failing top-level field to its default, or drops it when the
/// schema has no default for it (a field that no longer exists).
fn reset_fields(
    config: &mut Map<String, Value>,
    errors: &[FieldError],
    defaults: &Map<String, Value>,
) {
    for e in errors {
        let key = e
            .pointer
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        if key.is_empty() {
            continue;
        }
        match defaults.get(key) {
            Some(d) => config.insert(key.to_owned(), d.clone()),
            None => config.remove(key),
        };
    }
}
