//! Master-key rotation: re-encrypt every secret under the current key.
//!
//! The operator configures the new key as current and keeps the old one as
//! previous; reads decrypt with either. This job re-seals secrets in small
//! batches, each its own transaction that only replaces a ciphertext if it is
//! still the one that was read (compare-and-swap), so it is safe to interrupt
//! at any point and to run while users change secrets: the next run simply
//! continues with what is left.

use serde::Serialize;

use super::{Manager, ManagerError, Result};

/// Secrets re-sealed per transaction.
pub const ROTATION_BATCH: usize = 100;

/// Where the secrets stand relative to the current master key.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KeyCensus {
    pub current_key_id: String,
    pub total: usize,
    /// Sealed with the current key.
    pub current: usize,
    /// Sealed with another configured key: to be re-encrypted.
    pub pending: usize,
    /// `service/key` of secrets no configured key can open (named, never
    /// silently dropped).
    pub unavailable: Vec<String>,
}

impl Manager {
    /// Counts secrets by the key that sealed them (and whether that key works).
    pub fn key_census(&self) -> Result<KeyCensus> {
        let ring = self.ring()?;
        let mut census = KeyCensus {
            current_key_id: ring.current_id().as_str().to_owned(),
            ..KeyCensus::default()
        };
        for s in self.store.list_secrets(None)? {
            census.total += 1;
            match ring.open(&s.service, &s.key, &s.ciphertext) {
                Err(_) => census.unavailable.push(format!("{}/{}", s.service, s.key)),
                Ok(_) if ring.needs_reencryption(&s.ciphertext).unwrap_or(true) => {
                    census.pending += 1
                }
                Ok(_) => census.current += 1,
            }
        }
        Ok(census)
    }

    /// Re-seals up to `limit` secrets that use an older key. Returns how many
    /// were re-sealed (0 means nothing is left that can be re-sealed).
    pub fn reseal_batch(&self, limit: usize) -> Result<usize> {
        let ring = self.ring()?;
        let mut batch = Vec::new();
        for s in self.store.list_secrets(None)? {
            if batch.len() >= limit {
                break;
            }
            if !ring.needs_reencryption(&s.ciphertext).unwrap_or(false) {
                continue;
            }
            let Ok(plain) = ring.open(&s.service, &s.key, &s.ciphertext) else {
                continue; // unavailable: reported by the census, left untouched
            };
            let sealed = ring
                .seal(&s.service, &s.key, &plain)
                .map_err(|e| ManagerError::SecretsUnavailable(e.to_string()))?;
            batch.push((s.service, s.key, s.ciphertext, sealed));
        }
        Ok(self
            .store
            .reseal_secrets(&batch, ring.current_id().as_str())?)
    }

    fn ring(&self) -> Result<&crate::crypto::secret_box::SecretKeyRing> {
        self.options
            .secrets
            .as_deref()
            .ok_or_else(|| ManagerError::SecretsUnavailable("no master key configured".into()))
    }
}
