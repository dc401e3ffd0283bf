//! Change history: one row per changed key, appended in the same transaction as
//! the change and never rewritten (restores append new rows).

use rusqlite::{params_from_iter, Transaction};
use serde::Serialize;
use serde_json::Value;

use super::filter::Filtered;
use super::page::JsonPage;
use super::{Result, Store, StoreError};

use crate::change_type::ChangeType;
use crate::domain::{ServiceName, Version};

/// One key's change inside a write.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyChange {
    pub key: String,
    pub old_value: Option<Value>,
    pub new_value: Option<Value>,
}

/// One history row, in the shape of the REST API.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    pub service: ServiceName,
    pub key: String,
    pub old_value: Option<Value>,
    pub new_value: Option<Value>,
    pub version: Version,
    pub config_epoch: String,
    pub changed_at: String,
    pub changed_by: String,
    pub change_reason: Option<String>,
    /// Read back as the enum: a word we do not know fails the read, naming it.
    pub change_type: ChangeType,
}

/// History query. All filters are optional and combine with AND.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub service: Option<ServiceName>,
    pub key: Option<String>,
    /// Inclusive lower bound, RFC 3339 UTC.
    pub start: Option<String>,
    /// Inclusive upper bound, RFC 3339 UTC.
    pub end: Option<String>,
    /// Keyset paging: only entries with an id below this one (newest first).
    pub before_id: Option<i64>,
    /// Exactly this entry.
    pub id: Option<i64>,
    pub limit: u32,
}

/// What every history row of one write shares (the write's who, why and
/// where), so the history code needs nothing of the config write itself.
pub(super) struct HistoryContext<'a> {
    pub service: &'a ServiceName,
    pub version: Version,
    pub epoch: &'a str,
    pub now: &'a str,
    pub actor: &'a str,
    pub reason: Option<&'a str>,
    pub change_type: ChangeType,
}

pub(super) fn insert_history(
    tx: &Transaction<'_>,
    ctx: &HistoryContext<'_>,
    change: &KeyChange,
) -> Result<()> {
    let text = |v: &Option<Value>| v.as_ref().map(Value::to_string);
    tx.prepare_cached(
        "INSERT INTO history (service, key, old_value, new_value, version, config_epoch, changed_at, changed_by, change_reason, change_type)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(rusqlite::params![
        ctx.service,
        change.key,
        text(&change.old_value),
        text(&change.new_value),
        ctx.version,
        ctx.epoch,
        ctx.now,
        ctx.actor,
        ctx.reason,
        ctx.change_type.as_str()
    ])?;
    Ok(())
}

impl Store {
    /// History entries matching `filter`, newest first.
    pub fn list_history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryEntry>> {
        let mut out = Vec::new();
        self.each_history(filter, filter.limit, |e| {
            out.push(e);
            Ok(true)
        })?;
        Ok(out)
    }

    /// One page of `GET /history`: the entries matching `filter` (newest
    /// first, `filter.limit` ignored for the page's own), serialized into
    /// `page` one at a time until it is full, so the request never holds
    /// more than the page and one entry.
    pub fn history_page(&self, filter: &HistoryFilter, page: &mut JsonPage) -> Result<()> {
        self.each_history(filter, page.fetch_limit(), |e| Ok(page.push(e.id, &e)?))
    }

    /// Calls `f` with each entry matching `filter`, newest first, at most
    /// `limit`, until `f` returns `false`.
    fn each_history(
        &self,
        filter: &HistoryFilter,
        limit: u32,
        mut f: impl FnMut(HistoryEntry) -> Result<bool>,
    ) -> Result<()> {
        let mut q = Filtered::new(
            "SELECT id, service, key, old_value, new_value, version, config_epoch, changed_at, changed_by, change_reason, change_type
             FROM history WHERE 1=1",
        );
        q.text(" AND service = ?", filter.service.as_deref())
            .text(" AND key = ?", filter.key.as_deref())
            .text(" AND changed_at >= ?", filter.start.as_deref())
            .text(" AND changed_at <= ?", filter.end.as_deref())
            .integer(" AND id < ?", filter.before_id)
            .integer(" AND id = ?", filter.id);
        let (sql, args) = q.newest_first(limit);
        self.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args.iter()))?;
            while let Some(r) = rows.next()? {
                let json = |i| -> Result<Option<Value>> {
                    Ok(r.get::<_, Option<String>>(i)?
                        .map(|s| serde_json::from_str(&s))
                        .transpose()?)
                };
                let entry = HistoryEntry {
                    id: r.get(0)?,
                    service: r.get(1)?,
                    key: r.get(2)?,
                    old_value: json(3)?,
                    new_value: json(4)?,
                    version: r.get(5)?,
                    config_epoch: r.get(6)?,
                    changed_at: r.get(7)?,
                    changed_by: r.get(8)?,
                    change_reason: r.get(9)?,
                    change_type: r.get(10)?,
                };
                if !f(entry)? {
                    break;
                }
            }
            Ok(())
        })
    }

    /// The history entries with these ids, in the order given; an unknown id
    /// is [`StoreError::NotFound`].
    pub fn get_history_entries(&self, ids: &[i64]) -> Result<Vec<HistoryEntry>> {
        ids.iter()
            .map(|id| {
                self.list_history(&HistoryFilter {
                    id: Some(*id),
                    limit: 1,
                    ..HistoryFilter::default()
                })?
                .pop()
                .ok_or_else(|| StoreError::NotFound(format!("history entry {id}")))
            })
            .collect()
    }
}
