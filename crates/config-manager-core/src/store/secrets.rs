//! Encrypted secret values. The store only keeps ciphertext; encryption and
//! decryption happen in the caller with the master key ring.

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;
use serde_json::Value;

use super::history::KeyChange;
use super::{Result, Store};
use crate::domain::{ServiceName, SECRET_MASK};

/// A stored secret: ciphertext plus the id of the key that sealed it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredSecret {
    pub service: ServiceName,
    pub key: String,
    pub ciphertext: String,
    pub key_id: String,
    pub updated_at: String,
    pub updated_by: String,
}

/// Setting (`Some`) or clearing (`None`) one secret inside a config write.
#[derive(Debug, Clone)]
pub struct SecretChange {
    pub key: String,
    /// `(ciphertext, key_id)`.
    pub sealed: Option<(String, String)>,
}

/// Applies a secret change; returns the masked history change, or `None` when
/// clearing a secret that was not set.
pub(super) fn apply_secret_change(
    tx: &Transaction<'_>,
    service: &ServiceName,
    change: &SecretChange,
    actor: &str,
    now: &str,
) -> Result<Option<KeyChange>> {
    let existed: bool = tx
        .query_row(
            "SELECT 1 FROM secrets WHERE service = ?1 AND key = ?2",
            params![service, change.key],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    let mask = || Some(Value::String(SECRET_MASK.into()));
    match &change.sealed {
        Some((ciphertext, key_id)) => {
            tx.execute(
                "INSERT INTO secrets (service, key, ciphertext, key_id, updated_at, updated_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (service, key) DO UPDATE SET ciphertext = excluded.ciphertext,
                     key_id = excluded.key_id, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                params![service, change.key, ciphertext, key_id, now, actor],
            )?;
            Ok(Some(KeyChange {
                key: change.key.clone(),
                old_value: if existed { mask() } else { None },
                new_value: mask(),
            }))
        }
        None if existed => {
            tx.execute(
                "DELETE FROM secrets WHERE service = ?1 AND key = ?2",
                params![service, change.key],
            )?;
            Ok(Some(KeyChange {
                key: change.key.clone(),
                old_value: mask(),
                new_value: None,
            }))
        }
        None => Ok(None),
    }
}

impl Store {
    /// Every secret of `service` (ciphertext only).
    pub fn list_secrets(&self, service: Option<&ServiceName>) -> Result<Vec<StoredSecret>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT service, key, ciphertext, key_id, updated_at, updated_by FROM secrets
                 WHERE (?1 IS NULL OR service = ?1) ORDER BY service, key",
            )?;
            let rows = stmt.query_map(params![service], |r| {
                Ok(StoredSecret {
                    service: r.get(0)?,
                    key: r.get(1)?,
                    ciphertext: r.get(2)?,
                    key_id: r.get(3)?,
                    updated_at: r.get(4)?,
                    updated_by: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Re-seals a batch in one transaction: each `(service, key, expected,
    /// new)` is replaced only if its ciphertext is still `expected`. Returns
    /// how many rows changed.
    pub fn reseal_secrets(
        &self,
        batch: &[(ServiceName, String, String, String)],
        key_id: &str,
    ) -> Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE secrets SET ciphertext = ?4, key_id = ?5
                 WHERE service = ?1 AND key = ?2 AND ciphertext = ?3",
            )?;
            let mut changed = 0;
            for (service, key, expected, new) in batch {
                changed += stmt.execute(params![service, key, expected, new, key_id])?;
            }
            Ok(changed)
        })
    }

    /// Replaces one secret's ciphertext if it is still `expected_ciphertext`
    /// (re-encryption under a new key: safe to interrupt and to race with a
    /// user's write, which wins). Returns whether the row was updated.
    pub fn reseal_secret(
        &self,
        service: &ServiceName,
        key: &str,
        expected_ciphertext: &str,
        ciphertext: &str,
        key_id: &str,
    ) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE secrets SET ciphertext = ?4, key_id = ?5
                 WHERE service = ?1 AND key = ?2 AND ciphertext = ?3",
                params![service, key, expected_ciphertext, ciphertext, key_id],
            )?;
            Ok(n == 1)
        })
    }
}
