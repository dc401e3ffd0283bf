//! Service schemas registered over the API.

use crate::audit::{AuditAction, AuditOutcome};
use rusqlite::params;

use super::{audit, NewAudit, Result, Store, StoreError};
use crate::domain::{now_rfc3339, ServiceName};

impl Store {
    /// Every registered schema as `(service, document text)`, by service.
    pub fn list_registered_schemas(&self) -> Result<Vec<(String, String)>> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT service, document FROM service_schemas ORDER BY service")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Stores (or replaces) a registered schema and audits it.
    pub fn save_registered_schema(
        &self,
        service: &ServiceName,
        document: &str,
        actor: &str,
    ) -> Result<()> {
        if document.len() > 1024 * 1024 {
            return Err(StoreError::Other(
                "schema document larger than 1 MiB".into(),
            ));
        }
        self.write(|tx| {
            let now = now_rfc3339();
            tx.execute(
                "INSERT INTO service_schemas (service, document, registered_at, registered_by)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (service) DO UPDATE SET document = excluded.document,
                     registered_at = excluded.registered_at, registered_by = excluded.registered_by",
                params![service, document, now, actor],
            )?;
            audit::insert(
                tx,
                &NewAudit {
                    actor: actor.into(),
                    action: AuditAction::SchemaRegister,
                    target: Some(service.to_string()),
                    outcome: AuditOutcome::Ok,
                    detail: None,
                },
                &now,
            )
        })
    }
}
