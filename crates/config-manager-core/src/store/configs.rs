//! Current configurations, their full version snapshots, and the per-key items
//! used by search. A write updates all of them, the history and the audit log
//! in one transaction.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::Serialize;
use serde_json::{Map, Value};

use super::history::{insert_history, HistoryContext, KeyChange};
use super::page::JsonPage;
use super::secrets::{apply_secret_change, SecretChange};
use super::{audit, NewAudit, Result, Store, StoreError};
use crate::audit::{AuditAction, AuditOutcome};
use crate::change_type::ChangeType;
use crate::domain::{now_rfc3339, Epoch, ServiceName, Version};

/// A service's current stored configuration (database-held values only; secret
/// values live in the secrets table).
#[derive(Debug, Clone, Serialize)]
pub struct StoredConfig {
    pub service: ServiceName,
    pub config: Map<String, Value>,
    pub version: Version,
    pub config_epoch: String,
    pub updated_at: String,
    pub updated_by: String,
}

/// One version of a service's stored configuration.
#[derive(Debug, Clone, Serialize)]
pub struct VersionSnapshot {
    pub service: ServiceName,
    pub version: Version,
    pub config: Map<String, Value>,
    pub config_epoch: String,
    pub created_at: String,
    pub created_by: String,
    pub change_reason: Option<String>,
}

/// One row of the search index.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigItem {
    pub service: ServiceName,
    pub key: String,
    /// `None` for secrets: their values are never indexed.
    pub value: Option<Value>,
    pub r#type: String,
    pub complexity: String,
    pub description: String,
    pub is_secret: bool,
}

/// A write of one service's stored configuration.
#[derive(Debug, Clone)]
pub struct ConfigWrite {
    pub service: ServiceName,
    /// The complete new stored configuration (without secret values).
    pub config: Map<String, Value>,
    /// Optimistic lock: the version the writer last saw. `None` writes
    /// unconditionally (seeding, rebuild, atomic multi-service operations that
    /// already checked).
    pub expected_version: Option<Version>,
    pub actor: String,
    pub reason: Option<String>,
    /// Why this version exists (history `change_type`, audit `config.*`).
    pub change_type: ChangeType,
    /// The new search index rows of this service.
    pub items: Vec<ConfigItem>,
    /// Secrets set or cleared by this write.
    pub secrets: Vec<SecretChange>,
}

impl Store {
    /// Writes one service's configuration. See [`Store::save_configs`].
    pub fn save_config(&self, write: &ConfigWrite, epoch: &Epoch) -> Result<StoredConfig> {
        let mut out = self.save_configs(std::slice::from_ref(write), epoch)?;
        out.pop()
            .ok_or_else(|| StoreError::Other("write produced no result".into()))
    }

    /// Writes several services' configurations atomically: either every write
    /// lands with a new version, history rows and an audit entry, or none does.
    ///
    /// A write whose `expected_version` is not current fails the whole batch
    /// with [`StoreError::Conflict`]. A write that changes nothing is a no-op
    /// and keeps its version.
    pub fn save_configs(&self, writes: &[ConfigWrite], epoch: &Epoch) -> Result<Vec<StoredConfig>> {
        let saved = self.write(|tx| {
            let now = now_rfc3339();
            writes
                .iter()
                .map(|w| save_one(tx, w, epoch.as_str(), &now))
                .collect()
        })?;
        self.bump_items_generation(writes.iter().map(|w| w.service.clone()).collect());
        Ok(saved)
    }

    /// The current stored configuration of `service`.
    pub fn get_config(&self, service: &ServiceName) -> Result<StoredConfig> {
        self.read(|c| {
            find_config(c, service)?
                .ok_or_else(|| StoreError::NotFound(format!("service {service}")))
        })
    }

    /// Every service's current stored configuration, ordered by name.
    pub fn list_configs(&self) -> Result<Vec<StoredConfig>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT service, config, version, config_epoch, updated_at, updated_by FROM configs ORDER BY service",
            )?;
            let rows = stmt.query_map([], stored_from_row)?;
            rows.map(|r| r?).collect()
        })
    }

    /// A specific version of a service's stored configuration.
    pub fn get_config_version(
        &self,
        service: &ServiceName,
        version: Version,
    ) -> Result<VersionSnapshot> {
        self.read(|c| {
            c.query_row(
                "SELECT service, version, config, config_epoch, created_at, created_by, change_reason
                 FROM config_versions WHERE service = ?1 AND version = ?2",
                params![service, version],
                snapshot_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("version {version} of {service}")))?
        })
    }

    /// The version of `service` that was current at `at` (RFC 3339), if the
    /// service existed then.
    pub fn find_config_at(
        &self,
        service: &ServiceName,
        at: &str,
    ) -> Result<Option<VersionSnapshot>> {
        self.read(|c| {
            c.query_row(
                "SELECT service, version, config, config_epoch, created_at, created_by, change_reason
                 FROM config_versions WHERE service = ?1 AND created_at <= ?2
                 ORDER BY version DESC LIMIT 1",
                params![service.as_str(), at],
                snapshot_from_row,
            )
            .optional()?
            .transpose()
        })
    }

    /// All versions of a service, newest first, at most `limit`.
    pub fn list_config_versions(
        &self,
        service: &ServiceName,
        limit: u32,
    ) -> Result<Vec<VersionSnapshot>> {
        let mut out = Vec::new();
        self.each_config_version(service, None, limit, |v| {
            out.push(v);
            Ok(true)
        })?;
        Ok(out)
    }

    /// One page of `GET /services/{s}/versions`: the versions below
    /// `before_version` (all when `None`), newest first, serialized into
    /// `page` one at a time (see [`JsonPage`]), keyed by version.
    pub fn config_versions_page(
        &self,
        service: &ServiceName,
        before_version: Option<Version>,
        page: &mut JsonPage,
    ) -> Result<()> {
        self.each_config_version(service, before_version, page.fetch_limit(), |v| {
            Ok(page.push(v.version.get(), &v)?)
        })
    }

    /// Calls `f` with each version of `service` below `before` (newest
    /// first, at most `limit`) until `f` returns `false`.
    fn each_config_version(
        &self,
        service: &ServiceName,
        before: Option<Version>,
        limit: u32,
        mut f: impl FnMut(VersionSnapshot) -> Result<bool>,
    ) -> Result<()> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT service, version, config, config_epoch, created_at, created_by, change_reason
                 FROM config_versions WHERE service = ?1 AND (?2 IS NULL OR version < ?2)
                 ORDER BY version DESC LIMIT ?3",
            )?;
            let mut rows = stmt.query(params![service.as_str(), before, limit])?;
            while let Some(r) = rows.next()? {
                if !f(snapshot_from_row(r)??)? {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Every indexed item, optionally of one service (search scores in memory:
    /// the index is small, and scoring needs every field's text anyway).
    pub fn list_items(&self, service: Option<&ServiceName>) -> Result<Vec<ConfigItem>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT service, key, value, type, complexity, description, is_secret
                 FROM config_items WHERE (?1 IS NULL OR service = ?1) ORDER BY service, key",
            )?;
            let rows = stmt.query_map(params![service], |r| {
                let value: Option<String> = r.get(2)?;
                Ok((
                    value,
                    ConfigItem {
                        service: r.get(0)?,
                        key: r.get(1)?,
                        value: None,
                        r#type: r.get(3)?,
                        complexity: r.get(4)?,
                        description: r.get(5)?,
                        is_secret: r.get(6)?,
                    },
                ))
            })?;
            rows.map(|r| {
                let (value, mut item) = r?;
                item.value = value.map(|v| serde_json::from_str(&v)).transpose()?;
                Ok(item)
            })
            .collect()
        })
    }
}

fn save_one(tx: &Transaction<'_>, w: &ConfigWrite, epoch: &str, now: &str) -> Result<StoredConfig> {
    let old = find_config(tx, &w.service)?;
    let current_version = old.as_ref().map_or(Version::NONE, |o| o.version);
    if let Some(expected) = w.expected_version {
        if expected != current_version {
            return Err(StoreError::Conflict {
                current: current_version,
            });
        }
    }
    let empty = Map::new();
    let old_config = old.as_ref().map_or(&empty, |o| &o.config);
    let mut changes = diff(old_config, &w.config);
    for s in &w.secrets {
        if let Some(change) = apply_secret_change(tx, &w.service, s, &w.actor, now)? {
            changes.push(change);
        }
    }
    if let (Some(old), true) = (&old, changes.is_empty()) {
        // Nothing changed: no new version, no history noise.
        return Ok(old.clone());
    }
    let version = current_version.next()?;
    let config_text = serde_json::to_string(&w.config)
        .map_err(|e| StoreError::Other(format!("cannot serialize config: {e}")))?;
    tx.execute(
        "INSERT INTO configs (service, config, version, config_epoch, updated_at, updated_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (service) DO UPDATE SET config = excluded.config, version = excluded.version,
             config_epoch = excluded.config_epoch, updated_at = excluded.updated_at,
             updated_by = excluded.updated_by",
        params![w.service, config_text, version, epoch, now, w.actor],
    )?;
    tx.execute(
        "INSERT INTO config_versions (service, version, config, config_epoch, created_at, created_by, change_reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![w.service, version, config_text, epoch, now, w.actor, w.reason],
    )?;
    replace_items(tx, &w.service, &w.items)?;
    let ctx = HistoryContext {
        service: &w.service,
        version,
        epoch,
        now,
        actor: &w.actor,
        reason: w.reason.as_deref(),
        change_type: w.change_type,
    };
    for change in &changes {
        insert_history(tx, &ctx, change)?;
    }
    let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
    audit::insert(
        tx,
        &NewAudit {
            actor: w.actor.clone(),
            action: AuditAction::Config(w.change_type),
            target: Some(w.service.to_string()),
            outcome: AuditOutcome::Ok,
            detail: Some(serde_json::json!({
                "version": version,
                "keys": keys,
                "reason": w.reason,
            })),
        },
        now,
    )?;
    Ok(StoredConfig {
        service: w.service.clone(),
        config: w.config.clone(),
        version,
        config_epoch: epoch.to_owned(),
        updated_at: now.to_owned(),
        updated_by: w.actor.clone(),
    })
}

/// Per-key differences between two stored configurations, in key order.
fn diff(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<KeyChange> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (o, n) = (old.get(k), new.get(k));
            (o != n).then(|| KeyChange {
                key: k.clone(),
                old_value: o.cloned(),
                new_value: n.cloned(),
            })
        })
        .collect()
}

fn replace_items(tx: &Transaction<'_>, service: &ServiceName, items: &[ConfigItem]) -> Result<()> {
    tx.execute("DELETE FROM config_items WHERE service = ?1", [service])?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO config_items (service, key, value, type, complexity, description, is_secret)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for item in items {
        let value = match (&item.value, item.is_secret) {
            (Some(v), false) => Some(v.to_string()),
            _ => None,
        };
        stmt.execute(params![
            service,
            item.key,
            value,
            item.r#type,
            item.complexity,
            item.description,
            item.is_secret
        ])?;
    }
    Ok(())
}

fn find_config(c: &Connection, service: &ServiceName) -> Result<Option<StoredConfig>> {
    let mut stmt = c.prepare_cached(
        "SELECT service, config, version, config_epoch, updated_at, updated_by FROM configs WHERE service = ?1",
    )?;
    stmt.query_row([service], stored_from_row)
        .optional()?
        .transpose()
}

fn parse_object(text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(text)? {
        Value::Object(m) => Ok(m),
        _ => Err(StoreError::Corrupt(
            "stored config is not a JSON object".into(),
        )),
    }
}

fn stored_from_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredConfig>> {
    let text: String = r.get(1)?;
    let base = (
        r.get::<_, ServiceName>(0)?,
        r.get::<_, Version>(2)?,
        r.get::<_, String>(3)?,
        r.get::<_, String>(4)?,
        r.get::<_, String>(5)?,
    );
    Ok(parse_object(&text).map(|config| StoredConfig {
        service: base.0,
        config,
        version: base.1,
        config_epoch: base.2,
        updated_at: base.3,
        updated_by: base.4,
    }))
}

fn snapshot_from_row(r: &Row<'_>) -> rusqlite::Result<Result<VersionSnapshot>> {
    let text: String = r.get(2)?;
    let base = (
        r.get::<_, ServiceName>(0)?,
        r.get::<_, Version>(1)?,
        r.get::<_, String>(3)?,
        r.get::<_, String>(4)?,
        r.get::<_, String>(5)?,
        r.get::<_, Option<String>>(6)?,
    );
    Ok(parse_object(&text).map(|config| VersionSnapshot {
        service: base.0,
        version: base.1,
        config,
        config_epoch: base.2,
        created_at: base.3,
        created_by: base.4,
        change_reason: base.5,
    }))
}
