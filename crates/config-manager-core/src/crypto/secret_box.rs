//! AES-256-GCM encryption of secret values at rest.
//!
//! A sealed secret is a self-describing string:
//!
//! ```text
//! v1:<key_id>:<key_check>:<base64(nonce || ciphertext || tag)>
//! ```
//!
//! - `key_id` names the master key, so a key ring holding the previous and the
//!   new key decrypts both during a rotation, and the re-encryption job can see
//!   which values still use the old key.
//! - `key_check` is 8 hex characters of HMAC-SHA256(master key, a fixed label).
//!   It reveals nothing usable about the key, but it lets decryption tell "this
//!   id is configured with a different key than the one that encrypted" (an
//!   operator error, [`SecretBoxError::WrongKey`]) from "the ciphertext was
//!   altered" ([`SecretBoxError::Tampered`]), which AES-GCM alone cannot.
//! - The nonce is 96 random bits per encryption. With random nonces one key is
//!   safe for about 2^32 encryptions, far beyond what a configuration store does
//!   between rotations.
//! - The associated data is `service \0 key \0 key_id`: the ciphertext is bound to
//!   its place, so a value copied to another service or field (or relabelled
//!   with another key id) fails to decrypt instead of leaking into the wrong
//!   service.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use super::key_ring::KeyRing;
use super::KeyId;

/// Prefix of the only sealed format so far.
const FORMAT_V1: &str = "v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_CHECK_LABEL: &[u8] = b"config-manager secret-box key check v1";

/// Why a master key was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MasterKeyError {
    #[error("master key is not valid base64 (standard alphabet)")]
    NotBase64,
    #[error("master key must decode to exactly 32 bytes (AES-256), got {0}")]
    WrongLength(usize),
}

/// Why a secret could not be sealed or opened. Messages never contain secret
/// bytes, only ids and the binding's names.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SecretBoxError {
    /// The value names a key id that is not configured (for example the old key
    /// was removed before re-encryption finished).
    #[error("secret was encrypted with master key {0}, which is not configured")]
    UnknownKeyId(KeyId),
    /// The configured key under this id is not the one that encrypted the value.
    #[error("master key {0} is configured with different key material than the one that encrypted this secret")]
    WrongKey(KeyId),
    /// Not a sealed value at all, or truncated, or an unknown format version.
    #[error("sealed secret is malformed: {0}")]
    Corrupt(&'static str),
    /// Authentication failed: the ciphertext was altered, or moved to another
    /// service or key than it was sealed for.
    #[error("sealed secret failed authentication (altered, or moved from another service/key)")]
    Tampered,
    /// Service and key names must not contain NUL, the associated-data separator.
    #[error("service and key names must not contain NUL characters")]
    InvalidBinding,
    #[error("encryption failed")]
    Encrypt,
}

/// An AES-256 master key. `Debug` never shows it; the bytes are zeroized on drop.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        Self(bytes)
    }

    /// Decodes `CONFIG_MASTER_KEY_BASE64`: standard base64 of exactly 32 bytes.
    pub fn from_base64(encoded: &str) -> Result<Self, MasterKeyError> {
        let raw = Zeroizing::new(
            BASE64
                .decode(encoded.trim())
                .map_err(|_| MasterKeyError::NotBase64)?,
        );
        let mut bytes = Zeroizing::new([0u8; 32]);
        if raw.len() != bytes.len() {
            return Err(MasterKeyError::WrongLength(raw.len()));
        }
        bytes.copy_from_slice(&raw);
        Ok(Self(bytes))
    }

    /// The key as base64, for writing into `.env`.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.0.as_ref()))
    }

    /// The 8-hex-character key check value stored in each sealed secret.
    pub fn key_check(&self) -> String {
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(self.0.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(KEY_CHECK_LABEL);
        hex::encode(&mac.finalize().into_bytes()[..4])
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Master keys by id: the current one encrypts, every configured one decrypts.
#[derive(Debug, Clone)]
pub struct SecretKeyRing {
    ring: KeyRing<MasterKey>,
}

impl SecretKeyRing {
    /// A ring whose current (encrypting) key is `key`.
    pub fn new(current_id: KeyId, key: MasterKey) -> Self {
        Self {
            ring: KeyRing::new(current_id, key),
        }
    }

    /// Adds a key that still decrypts during a rotation's grace window.
    pub fn with_previous(self, id: KeyId, key: MasterKey) -> Self {
        Self {
            ring: self.ring.with_previous(id, key),
        }
    }

    pub fn current_id(&self) -> &KeyId {
        self.ring.current_id()
    }

    /// Encrypts `plaintext` for `service`/`key` with the current master key.
    pub fn seal(
        &self,
        service: &str,
        key: &str,
        plaintext: &[u8],
    ) -> Result<String, SecretBoxError> {
        let current = self.ring.current_id();
        let master = self
            .ring
            .get(current)
            .ok_or_else(|| SecretBoxError::UnknownKeyId(current.clone()))?;
        seal(current, master, service, key, plaintext)
    }

    /// Decrypts a sealed value with whichever configured key it names.
    pub fn open(
        &self,
        service: &str,
        key: &str,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SecretBoxError> {
        let parts = SealedParts::parse(sealed)?;
        let master = self
            .ring
            .get(&parts.key_id)
            .ok_or_else(|| SecretBoxError::UnknownKeyId(parts.key_id.clone()))?;
        parts.open(master, service, key)
    }

    /// Whether a sealed value uses another key than the current one (and so
    /// still needs re-encryption during a rotation).
    pub fn needs_reencryption(&self, sealed: &str) -> Result<bool, SecretBoxError> {
        Ok(&sealed_key_id(sealed)? != self.ring.current_id())
    }
}

/// The key id a sealed value was encrypted with.
pub fn sealed_key_id(sealed: &str) -> Result<KeyId, SecretBoxError> {
    SealedParts::parse(sealed).map(|p| p.key_id)
}

/// Encrypts `plaintext` bound to `service`/`key` under the master key `key_id`.
pub fn seal(
    key_id: &KeyId,
    master: &MasterKey,
    service: &str,
    key: &str,
    plaintext: &[u8],
) -> Result<String, SecretBoxError> {
    let aad = associated_data(service, key, key_id)?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ciphertext = master
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| SecretBoxError::Encrypt)?;
    let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ciphertext);
    Ok(format!(
        "{FORMAT_V1}:{key_id}:{}:{}",
        master.key_check(),
        BASE64.encode(blob)
    ))
}

/// `service \0 key \0 key_id`: NUL cannot occur in a valid service name, key or
/// key id, so the encoding is unambiguous; inputs containing NUL are refused.
fn associated_data(service: &str, key: &str, key_id: &KeyId) -> Result<Vec<u8>, SecretBoxError> {
    if service.contains('\0') || key.contains('\0') {
        return Err(SecretBoxError::InvalidBinding);
    }
    Ok([
        service.as_bytes(),
        key.as_bytes(),
        key_id.as_str().as_bytes(),
    ]
    .join(&0u8))
}

struct SealedParts {
    key_id: KeyId,
    key_check: String,
    blob: Vec<u8>,
}

impl SealedParts {
    fn parse(sealed: &str) -> Result<Self, SecretBoxError> {
        let mut fields = sealed.splitn(4, ':');
        let (Some(format), Some(key_id), Some(key_check), Some(body)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(SecretBoxError::Corrupt(
                "expected v1:<key_id>:<check>:<data>",
            ));
        };
        if format != FORMAT_V1 {
            return Err(SecretBoxError::Corrupt("unknown format version"));
        }
        let key_id = KeyId::parse(key_id).map_err(|_| SecretBoxError::Corrupt("invalid key id"))?;
        let blob = BASE64
            .decode(body)
            .map_err(|_| SecretBoxError::Corrupt("data is not base64"))?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretBoxError::Corrupt("data too short"));
        }
        Ok(Self {
            key_id,
            key_check: key_check.to_owned(),
            blob,
        })
    }

    fn open(
        &self,
        master: &MasterKey,
        service: &str,
        key: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SecretBoxError> {
        if self.key_check != master.key_check() {
            return Err(SecretBoxError::WrongKey(self.key_id.clone()));
        }
        let aad = associated_data(service, key, &self.key_id)?;
        let (nonce, ciphertext) = self.blob.split_at(NONCE_LEN);
        master
            .cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SecretBoxError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> KeyId {
        KeyId::parse(s).unwrap()
    }

    fn ring() -> SecretKeyRing {
        SecretKeyRing::new(id("mk-1"), MasterKey::generate())
    }

    #[test]
    fn round_trip_and_fresh_nonce_each_time() {
        let r = ring();
        let a = r.seal("llm-worker", "api_key", b"sk-123").unwrap();
        let b = r.seal("llm-worker", "api_key", b"sk-123").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("v1:mk-1:"));
        assert!(!a.contains("sk-123"));
        assert_eq!(
            r.open("llm-worker", "api_key", &a).unwrap().as_slice(),
            b"sk-123"
        );
        assert_eq!(
            r.open("llm-worker", "api_key", &b).unwrap().as_slice(),
            b"sk-123"
        );
    }

    #[test]
    fn moved_ciphertext_does_not_open() {
        let r = ring();
        let s = r.seal("llm-worker", "api_key", b"sk-123").unwrap();
        assert_eq!(
            r.open("tts-worker", "api_key", &s),
            Err(SecretBoxError::Tampered)
        );
        assert_eq!(
            r.open("llm-worker", "other_key", &s),
            Err(SecretBoxError::Tampered)
        );
    }

    #[test]
    fn altered_ciphertext_is_tampered() {
        let r = ring();
        let s = r.seal("svc", "k", b"value").unwrap();
        let (head, body) = s.rsplit_once(':').unwrap();
        let mut blob = BASE64.decode(body).unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let altered = format!("{head}:{}", BASE64.encode(&blob));
        assert_eq!(r.open("svc", "k", &altered), Err(SecretBoxError::Tampered));
    }

    #[test]
    fn relabelled_key_id_is_detected() {
        let key = MasterKey::generate();
        let r = SecretKeyRing::new(id("a"), key.clone()).with_previous(id("b"), key);
        let s = r.seal("svc", "k", b"value").unwrap();
        let relabelled = s.replacen("v1:a:", "v1:b:", 1);
        assert_eq!(
            r.open("svc", "k", &relabelled),
            Err(SecretBoxError::Tampered)
        );
    }

    #[test]
    fn wrong_and_unknown_keys_are_told_apart() {
        let s = ring().seal("svc", "k", b"value").unwrap();
        let other = ring();
        assert_eq!(
            other.open("svc", "k", &s),
            Err(SecretBoxError::WrongKey(id("mk-1")))
        );
        let elsewhere = SecretKeyRing::new(id("mk-9"), MasterKey::generate());
        assert_eq!(
            elsewhere.open("svc", "k", &s),
            Err(SecretBoxError::UnknownKeyId(id("mk-1")))
        );
    }

    #[test]
    fn corrupt_inputs() {
        let r = ring();
        for bad in [
            "",
            "plain",
            "v2:mk-1:00000000:AAAA",
            "v1:mk 1:0:AAAA",
            "v1:mk-1:0:***",
            "v1:mk-1:0:AAAA",
        ] {
            assert!(
                matches!(r.open("svc", "k", bad), Err(SecretBoxError::Corrupt(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            r.seal("s\0", "k", b"v"),
            Err(SecretBoxError::InvalidBinding)
        );
    }

    #[test]
    fn rotation_reads_old_and_new() {
        let old = MasterKey::generate();
        let before = SecretKeyRing::new(id("mk-1"), old.clone());
        let sealed_old = before.seal("svc", "k", b"v").unwrap();
        let after =
            SecretKeyRing::new(id("mk-2"), MasterKey::generate()).with_previous(id("mk-1"), old);
        assert!(after.needs_reencryption(&sealed_old).unwrap());
        let plain = after.open("svc", "k", &sealed_old).unwrap();
        let sealed_new = after.seal("svc", "k", &plain).unwrap();
        assert!(!after.needs_reencryption(&sealed_new).unwrap());
        assert_eq!(sealed_key_id(&sealed_new).unwrap(), id("mk-2"));
    }

    #[test]
    fn master_key_parsing() {
        assert_eq!(
            MasterKey::from_base64("not base64!").unwrap_err(),
            MasterKeyError::NotBase64
        );
        assert_eq!(
            MasterKey::from_base64(&BASE64.encode([0u8; 31])).unwrap_err(),
            MasterKeyError::WrongLength(31)
        );
        let k = MasterKey::generate();
        let again = MasterKey::from_base64(&format!(" {} \n", k.to_base64().as_str())).unwrap();
        assert_eq!(k.key_check(), again.key_check());
        assert_eq!(format!("{k:?}"), "MasterKey(<redacted>)");
    }
}
