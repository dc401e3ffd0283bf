//! Key identifiers.
//!
//! Every key in the system (signing, master, LKG MAC) carries an id that travels
//! with what it produced (envelope `key_id`, the `v1:<key_id>:...` prefix of a
//! ciphertext, the LKG `key_id`). That is what makes rotation possible without a
//! flag day: a verifier or decryptor picks the key by id and can hold the old and
//! the new key at the same time.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest accepted key id.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Why a key id was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyIdError {
    #[error("key id must not be empty")]
    Empty,
    #[error("key id must be at most {MAX_KEY_ID_LEN} characters")]
    TooLong,
    #[error("key id may contain only ASCII letters, digits, '.', '_' and '-'")]
    InvalidCharacter,
}

/// A key identifier such as `3f9a0c1d2e4b5a69` (signing keys, derived from the
/// public key) or `master-2026-01` (master and MAC keys, chosen by the operator).
///
/// The alphabet excludes `:` because ciphertexts are stored as
/// `v1:<key_id>:...`, and excludes whitespace and control characters so an id
/// can be logged and put in file names as it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// Checks `raw` against the key-id alphabet.
    pub fn parse(raw: &str) -> Result<Self, KeyIdError> {
        if raw.is_empty() {
            return Err(KeyIdError::Empty);
        }
        if raw.len() > MAX_KEY_ID_LEN {
            return Err(KeyIdError::TooLong);
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(KeyIdError::InvalidCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for KeyId {
    type Err = KeyIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        KeyId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hex_and_operator_ids() {
        assert!(KeyId::parse("3f9a0c1d2e4b5a69").is_ok());
        assert!(KeyId::parse("master-2026.01_b").is_ok());
    }

    #[test]
    fn rejects_separators_and_odd_input() {
        assert_eq!(KeyId::parse(""), Err(KeyIdError::Empty));
        assert_eq!(KeyId::parse(&"a".repeat(65)), Err(KeyIdError::TooLong));
        for bad in ["a:b", "a b", "ä", "a\n", "a/b", "a\0"] {
            assert_eq!(
                KeyId::parse(bad),
                Err(KeyIdError::InvalidCharacter),
                "{bad:?}"
            );
        }
        assert!(serde_json::from_str::<KeyId>("\"a:b\"").is_err());
    }
}
