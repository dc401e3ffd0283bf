//! The audit log: every change, every denial, every secret reveal, with the
//! actor's token name (never the token itself).

use rusqlite::{params, params_from_iter, Transaction};
use serde::Serialize;
use serde_json::Value;

use super::filter::Filtered;
use super::page::JsonPage;
use super::{Result, Store};
pub use crate::audit::{AuditAction, AuditOutcome};
use crate::domain::now_rfc3339;

/// An audit entry to record.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub actor: String,
    pub action: AuditAction,
    pub target: Option<String>,
    pub outcome: AuditOutcome,
    pub detail: Option<Value>,
}

/// A recorded audit entry.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    /// Read back as the enum: a word we do not know fails the read, naming it.
    pub action: AuditAction,
    pub target: Option<String>,
    pub outcome: AuditOutcome,
    pub detail: Option<Value>,
}

/// Audit query; filters combine with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Prefix match on the action (`config.` finds every config action).
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

pub(super) fn insert(tx: &Transaction<'_>, e: &NewAudit, now: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit_log (at, actor, action, target, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now,
        e.actor,
        e.action.as_str(),
        e.target,
        e.outcome.as_str(),
        e.detail.as_ref().map(Value::to_string)
    ])?;
    Ok(())
}

impl Store {
    /// Records one audit entry in its own transaction.
    pub fn record_audit(&self, entry: &NewAudit) -> Result<()> {
        self.write(|tx| insert(tx, entry, &now_rfc3339()))
    }

    /// Records one audit entry and returns its id, so an aggregated entry
    /// (a count of repeated denials) can be updated in place later.
    pub fn record_audit_returning_id(&self, entry: &NewAudit) -> Result<i64> {
        self.write(|tx| {
            insert(tx, entry, &now_rfc3339())?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Replaces the `detail` of entry `id` (the running count of an
    /// aggregated denial row). Returns whether the row still exists.
    pub fn update_audit_detail(&self, id: i64, detail: &Value) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .prepare_cached("UPDATE audit_log SET detail = ?1 WHERE id = ?2")?
                .execute(params![detail.to_string(), id])?;
            Ok(n > 0)
        })
    }

    /// Retention: deletes entries recorded before `older_than` (an RFC 3339
    /// timestamp as stored) and then all but the newest `max_rows` entries.
    /// Returns how many rows were deleted. The audit log is the only table
    /// pruned: change history is the product's record and is kept.
    pub fn prune_audit(&self, older_than: Option<&str>, max_rows: Option<u64>) -> Result<usize> {
        self.write(|tx| {
            let mut deleted = 0;
            if let Some(t) = older_than {
                deleted += tx
                    .prepare_cached("DELETE FROM audit_log WHERE at < ?1")?
                    .execute(params![t])?;
            }
            if let Some(max) = max_rows {
                let keep = i64::try_from(max).unwrap_or(i64::MAX);
                deleted += tx
                    .prepare_cached(
                        "DELETE FROM audit_log WHERE id <= \
                         (SELECT id FROM audit_log ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                    )?
                    .execute(params![keep])?;
            }
            Ok(deleted)
        })
    }

    /// Audit entries matching `filter`, newest first.
    pub fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut out = Vec::new();
        self.each_audit(filter, filter.limit, |e| {
            out.push(e);
            Ok(true)
        })?;
        Ok(out)
    }

    /// One page of `GET /audit`, serialized into `page` entry by entry
    /// (see [`JsonPage`]; `filter.limit` is ignored for the page's own).
    pub fn audit_page(&self, filter: &AuditFilter, page: &mut JsonPage) -> Result<()> {
        self.each_audit(filter, page.fetch_limit(), |e| Ok(page.push(e.id, &e)?))
    }

    /// Calls `f` with each entry matching `filter`, newest first, at most
    /// `limit`, until `f` returns `false`.
    fn each_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
        mut f: impl FnMut(AuditEntry) -> Result<bool>,
    ) -> Result<()> {
        let mut q = Filtered::new(
            "SELECT id, at, actor, action, target, outcome, detail FROM audit_log WHERE 1=1",
        );
        q.text(" AND actor = ?", filter.actor.as_deref())
            .prefix("action", filter.action.as_ref())
            .text(" AND outcome = ?", filter.outcome.as_deref())
            .text(" AND at >= ?", filter.start.as_deref())
            .text(" AND at <= ?", filter.end.as_deref())
            .integer(" AND id < ?", filter.before_id);
        let (sql, args) = q.newest_first(limit);
        self.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args.iter()))?;
            while let Some(r) = rows.next()? {
                let detail: Option<String> = r.get(6)?;
                let entry = AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    outcome: r.get(5)?,
                    detail: detail.map(|s| serde_json::from_str(&s)).transpose()?,
                };
                if !f(entry)? {
                    break;
                }
            }
            Ok(())
        })
    }
}

/// Escapes `%`, `_` and `\\` so user text matches literally in `LIKE ... ESCAPE '\\'`.
pub(crate) fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
