//! Profiles: named snapshots of every service's stored configuration.

use crate::audit::{AuditAction, AuditOutcome};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{audit, NewAudit, Result, Store, StoreError};
use crate::domain::now_rfc3339;

/// A profile without its snapshot (for listings).
#[derive(Debug, Clone, Serialize)]
pub struct ProfileSummary {
    pub profile_name: String,
    pub description: Option<String>,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub updated_by: String,
}

/// A profile with its snapshot: service name → stored configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    #[serde(flatten)]
    pub summary: ProfileSummary,
    pub config_snapshot: Map<String, Value>,
}

const SELECT: &str = "SELECT name, description, created_at, created_by, updated_at, updated_by, config_snapshot FROM profiles";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ProfileSummary, String)> {
    Ok((
        ProfileSummary {
            profile_name: r.get(0)?,
            description: r.get(1)?,
            created_at: r.get(2)?,
            created_by: r.get(3)?,
            updated_at: r.get(4)?,
            updated_by: r.get(5)?,
        },
        r.get(6)?,
    ))
}

impl Store {
    /// Every profile, by name.
    pub fn list_profiles(&self) -> Result<Vec<ProfileSummary>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!("{SELECT} ORDER BY name"))?;
            let rows = stmt.query_map([], from_row)?;
            Ok(rows
                .map(|r| r.map(|(s, _)| s))
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// One profile with its snapshot.
    pub fn get_profile(&self, name: &str) -> Result<Profile> {
        self.read(|c| {
            let (summary, text) = c
                .query_row(&format!("{SELECT} WHERE name = ?1"), [name], from_row)
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("profile {name}")))?;
            match serde_json::from_str(&text)? {
                Value::Object(config_snapshot) => Ok(Profile {
                    summary,
                    config_snapshot,
                }),
                _ => Err(StoreError::Corrupt(
                    "profile snapshot is not an object".into(),
                )),
            }
        })
    }

    /// Creates or overwrites a profile (keeping its creation stamp) and audits it.
    pub fn save_profile(
        &self,
        name: &str,
        description: Option<&str>,
        snapshot: &Map<String, Value>,
        actor: &str,
    ) -> Result<Profile> {
        let text = serde_json::to_string(snapshot)
            .map_err(|e| StoreError::Other(format!("cannot serialize profile: {e}")))?;
        self.write(|tx| {
            let now = now_rfc3339();
            tx.execute(
                "INSERT INTO profiles (name, description, config_snapshot, created_at, created_by, updated_at, updated_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET description = excluded.description,
                     config_snapshot = excluded.config_snapshot, updated_at = excluded.updated_at,
                     updated_by = excluded.updated_by",
                params![name, description, text, now, actor],
            )?;
            audit::insert(
                tx,
                &NewAudit {
                    actor: actor.into(),
                    action: AuditAction::ProfileSave,
                    target: Some(name.into()),
                    outcome: AuditOutcome::Ok,
                    detail: None,
                },
                &now,
            )?;
            Ok(())
        })?;
        self.get_profile(name)
    }

    /// Replaces a profile's snapshot without changing its stamps (a
    /// maintenance rewrite, not an edit), auditing the `removed` keys as
    /// `profile.secrets_removed` by `system`.
    pub fn replace_profile_snapshot(
        &self,
        name: &str,
        snapshot: &Map<String, Value>,
        removed: &[String],
    ) -> Result<()> {
        let text = serde_json::to_string(snapshot)
            .map_err(|e| StoreError::Other(format!("cannot serialize profile: {e}")))?;
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE profiles SET config_snapshot = ?2 WHERE name = ?1",
                params![name, text],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("profile {name}")));
            }
            audit::insert(
                tx,
                &NewAudit {
                    actor: "system".into(),
                    action: AuditAction::ProfileSecretsRemoved,
                    target: Some(name.into()),
                    outcome: AuditOutcome::Ok,
                    detail: Some(serde_json::json!({ "removed": removed })),
                },
                &now_rfc3339(),
            )
        })
    }

    /// Deletes a profile; [`StoreError::NotFound`] if there is none.
    pub fn delete_profile(&self, name: &str, actor: &str) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute("DELETE FROM profiles WHERE name = ?1", [name])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("profile {name}")));
            }
            audit::insert(
                tx,
                &NewAudit {
                    actor: actor.into(),
                    action: AuditAction::ProfileDelete,
                    target: Some(name.into()),
                    outcome: AuditOutcome::Ok,
                    detail: None,
                },
                &now_rfc3339(),
            )
        })
    }
}
