//! The latest applied-state report per running instance (`applied_state`),
//! so the operator's view of which instance runs which version survives a
//! restart of the manager. The manager writes it in batches (only the latest
//! report of each instance), never one row per MQTT message.

use rusqlite::params;

use super::{audit, NewAudit, Result, Store};
use crate::applied::InstanceId;
use crate::audit::{AuditAction, AuditOutcome};
use crate::domain::{now_rfc3339, ServiceName, Version};

/// One stored report: the validated JSON and when the manager received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApplied {
    pub service: ServiceName,
    pub instance_id: String,
    /// The report as JSON (`AppliedReport::to_json`).
    pub report: String,
    /// RFC 3339 UTC, the manager's clock.
    pub received_at: String,
}

/// One change of a batch: a report to keep, or an instance to forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppliedChange {
    Upsert(StoredApplied),
    Remove {
        service: ServiceName,
        instance_id: String,
    },
}

/// A service's current version and when it was written, without its
/// configuration (cheap: no JSON to parse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentVersion {
    pub service: ServiceName,
    pub version: Version,
    pub updated_at: String,
}

impl Store {
    /// The current version of every service with a stored configuration
    /// (what desired-vs-applied compares with).
    pub fn list_current_versions(&self) -> Result<Vec<CurrentVersion>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT service, version, updated_at FROM configs ORDER BY service",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(CurrentVersion {
                    service: r.get(0)?,
                    version: r.get(1)?,
                    updated_at: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Every stored report, by service and instance.
    pub fn list_applied(&self) -> Result<Vec<StoredApplied>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT service, instance_id, report, received_at FROM applied_state
                 ORDER BY service, instance_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredApplied {
                    service: r.get(0)?,
                    instance_id: r.get(1)?,
                    report: r.get(2)?,
                    received_at: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Applies a batch of changes in one transaction (one fsync for the
    /// whole batch). Not audited: these are reports from the services, not
    /// operator actions.
    pub fn save_applied(&self, changes: &[AppliedChange]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO applied_state (service, instance_id, report, received_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (service, instance_id) DO UPDATE SET
                     report = excluded.report, received_at = excluded.received_at",
            )?;
            let mut remove = tx.prepare_cached(
                "DELETE FROM applied_state WHERE service = ?1 AND instance_id = ?2",
            )?;
            for change in changes {
                match change {
                    AppliedChange::Upsert(s) => {
                        upsert.execute(params![
                            s.service,
                            s.instance_id,
                            s.report,
                            s.received_at
                        ])?;
                    }
                    AppliedChange::Remove {
                        service,
                        instance_id,
                    } => {
                        remove.execute(params![service, instance_id])?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Forgets one instance on an operator's request. Returns whether a row
    /// was there. Audited as `instance.forget` when something was forgotten:
    /// a row here, or (`in_memory`) the manager's in-memory entry not yet
    /// written; a request that forgets nothing (a 404) writes no audit row.
    pub fn forget_applied(
        &self,
        service: &ServiceName,
        instance_id: &InstanceId,
        actor: &str,
        in_memory: bool,
    ) -> Result<bool> {
        self.write(|tx| {
            let removed = tx.execute(
                "DELETE FROM applied_state WHERE service = ?1 AND instance_id = ?2",
                params![service, instance_id.as_str()],
            )?;
            if removed == 0 && !in_memory {
                return Ok(false);
            }
            audit::insert(
                tx,
                &NewAudit {
                    actor: actor.into(),
                    action: AuditAction::InstanceForget,
                    target: Some(format!("{service}/{instance_id}")),
                    outcome: AuditOutcome::Ok,
                    detail: None,
                },
                &now_rfc3339(),
            )?;
            Ok(removed > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn row(service: &str, instance: &str, report: &str) -> StoredApplied {
        StoredApplied {
            service: ServiceName::parse(service).unwrap(),
            instance_id: instance.into(),
            report: report.into(),
            received_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn batches_keep_the_latest_and_forget_audits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        assert!(store.list_applied().unwrap().is_empty());
        store
            .save_applied(&[
                AppliedChange::Upsert(row("tts-worker", "a", "{\"v\":1}")),
                AppliedChange::Upsert(row("tts-worker", "b", "{\"v\":1}")),
                AppliedChange::Upsert(row("tts-worker", "a", "{\"v\":2}")),
            ])
            .unwrap();
        let rows = store.list_applied().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].report, "{\"v\":2}");
        store
            .save_applied(&[AppliedChange::Remove {
                service: ServiceName::parse("tts-worker").unwrap(),
                instance_id: "b".into(),
            }])
            .unwrap();
        assert_eq!(store.list_applied().unwrap().len(), 1);
        let (svc, id) = (
            ServiceName::parse("tts-worker").unwrap(),
            InstanceId::parse("a").unwrap(),
        );
        assert!(store.forget_applied(&svc, &id, "admin", false).unwrap());
        assert!(!store.forget_applied(&svc, &id, "admin", false).unwrap());
        assert!(store.list_applied().unwrap().is_empty());
        let audit = store
            .list_audit(&crate::store::AuditFilter {
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        // One row: the second forget removed nothing and wrote no audit row.
        let forgets: Vec<_> = audit
            .iter()
            .filter(|e| e.action.as_str() == "instance.forget")
            .map(|e| e.target.as_deref())
            .collect();
        assert_eq!(forgets, [Some("tts-worker/a")]);
        // Only in memory (not yet written): still audited.
        assert!(!store.forget_applied(&svc, &id, "admin", true).unwrap());
        let audit = store
            .list_audit(&crate::store::AuditFilter {
                action: Some("instance.forget".into()),
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(audit.len(), 2);
    }
}
