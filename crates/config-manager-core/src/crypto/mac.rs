//! HMAC-SHA256 and constant-time comparison.
//!
//! The last-known-good cache is authenticated with HMAC-SHA256 under its own key
//! (`LKG_HMAC_KEY_BASE64`), separate from the master key, so leaking or rotating
//! one never weakens the other. Every comparison of a MAC or a token runs in
//! constant time, so response timing reveals nothing about how much of a guess
//! was right.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use thiserror::Error;
use zeroize::Zeroizing;

use super::key_ring::KeyRing;
use super::KeyId;

type HmacSha256 = Hmac<Sha256>;

/// Shortest accepted MAC key: as long as the SHA-256 output, as RFC 2104
/// recommends; shorter keys lower the security of the MAC.
pub const MIN_MAC_KEY_LEN: usize = 32;

/// Why a MAC key or a MAC was not accepted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MacError {
    #[error("MAC key is not valid base64")]
    KeyNotBase64,
    #[error("MAC key must decode to at least {MIN_MAC_KEY_LEN} bytes, got {0}")]
    KeyTooShort(usize),
    #[error("MAC is not valid {0}")]
    BadEncoding(&'static str),
    #[error("MAC does not match")]
    Mismatch,
    #[error("no MAC key with id {0} is configured")]
    UnknownKey(KeyId),
}

/// An HMAC-SHA256 key. `Debug` never shows it; the bytes are zeroized on drop.
#[derive(Clone)]
pub struct MacKey(Zeroizing<Vec<u8>>);

impl MacKey {
    /// A new random 32-byte key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Decodes a base64 key (standard alphabet) of at least 32 bytes.
    pub fn from_base64(encoded: &str) -> Result<Self, MacError> {
        let bytes = Zeroizing::new(
            BASE64
                .decode(encoded.trim())
                .map_err(|_| MacError::KeyNotBase64)?,
        );
        Self::from_bytes(&bytes)
    }

    /// A key from raw bytes (at least 32).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MacError> {
        if bytes.len() < MIN_MAC_KEY_LEN {
            return Err(MacError::KeyTooShort(bytes.len()));
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// The key as base64, for writing into `.env`.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.0.as_slice()))
    }

    /// HMAC-SHA256 of `data`.
    pub fn tag(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// HMAC-SHA256 of `data` as lowercase hex.
    pub fn tag_hex(&self, data: &[u8]) -> String {
        hex::encode(self.tag(data))
    }

    /// HMAC-SHA256 of `data` as standard base64.
    pub fn tag_base64(&self, data: &[u8]) -> String {
        BASE64.encode(self.tag(data))
    }

    /// Checks a raw tag in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> Result<(), MacError> {
        let mut mac = self.mac();
        mac.update(data);
        mac.verify_slice(tag).map_err(|_| MacError::Mismatch)
    }

    /// Checks a hex tag (either case) in constant time.
    pub fn verify_hex(&self, data: &[u8], tag_hex: &str) -> Result<(), MacError> {
        let tag = hex::decode(tag_hex).map_err(|_| MacError::BadEncoding("hex"))?;
        self.verify(data, &tag)
    }

    /// Checks a base64 tag in constant time.
    pub fn verify_base64(&self, data: &[u8], tag_b64: &str) -> Result<(), MacError> {
        let tag = BASE64
            .decode(tag_b64)
            .map_err(|_| MacError::BadEncoding("base64"))?;
        self.verify(data, &tag)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; the constructor cannot fail.
        <HmacSha256 as hmac::Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(<redacted>)")
    }
}

/// MAC keys by id: the current one signs, every configured one verifies.
///
/// During an HMAC-key rotation the previous key stays in the ring, so a cache
/// written before the switch still verifies and is re-sealed with the new key
/// on the next write.
#[derive(Debug, Clone)]
pub struct MacKeyRing {
    ring: KeyRing<MacKey>,
}

impl MacKeyRing {
    /// A ring whose current (signing) key is `key`.
    pub fn new(current_id: KeyId, key: MacKey) -> Self {
        Self {
            ring: KeyRing::new(current_id, key),
        }
    }

    /// Adds a key that verifies but no longer signs (the previous key).
    pub fn with_previous(self, id: KeyId, key: MacKey) -> Self {
        Self {
            ring: self.ring.with_previous(id, key),
        }
    }

    pub fn current_id(&self) -> &KeyId {
        self.ring.current_id()
    }

    pub fn current_key(&self) -> &MacKey {
        // The constructor always inserts the current key and nothing removes it.
        self.ring
            .get(self.ring.current_id())
            .unwrap_or_else(|| unreachable!("current key is always in the ring"))
    }

    /// The key with this id, or [`MacError::UnknownKey`].
    pub fn get(&self, id: &KeyId) -> Result<&MacKey, MacError> {
        self.ring
            .get(id)
            .ok_or_else(|| MacError::UnknownKey(id.clone()))
    }
}

/// Compares two byte strings in constant time (for equal lengths; the length
/// itself is not hidden). Use [`tokens_equal`] for secrets of varying length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Compares a presented token with a configured one without revealing, through
/// timing, how long the configured token is or how much of it matched: both are
/// hashed to 32 bytes first and the digests are compared in constant time.
pub fn tokens_equal(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    constant_time_eq(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 6 (its other cases use keys below our 32-byte minimum).
    #[test]
    fn rfc4231_case_6() {
        let key = MacKey::from_bytes(&[0xaa; 131]).unwrap();
        let data = b"Test Using Larger Than Block-Size Key - Hash Key First";
        assert_eq!(
            key.tag_hex(data),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        key.verify_hex(
            data,
            "60E431591EE0B67F0D8A26AACBF5B77F8E0BC6213728C5140546040F0EE37F54",
        )
        .unwrap();
    }

    #[test]
    fn verify_detects_change_and_bad_encoding() {
        let key = MacKey::generate();
        let tag = key.tag_base64(b"data");
        key.verify_base64(b"data", &tag).unwrap();
        assert_eq!(key.verify_base64(b"datA", &tag), Err(MacError::Mismatch));
        assert_eq!(
            key.verify_hex(b"data", "zz"),
            Err(MacError::BadEncoding("hex"))
        );
        assert_eq!(
            key.verify_base64(b"data", "!"),
            Err(MacError::BadEncoding("base64"))
        );
        assert_eq!(key.verify(b"data", &[0; 5]), Err(MacError::Mismatch));
        let other = MacKey::generate();
        assert_eq!(other.verify_base64(b"data", &tag), Err(MacError::Mismatch));
    }

    #[test]
    fn key_parsing_is_strict_and_debug_redacts() {
        assert_eq!(
            MacKey::from_base64("%%%").unwrap_err(),
            MacError::KeyNotBase64
        );
        assert_eq!(
            MacKey::from_base64(&BASE64.encode([1u8; 16])).unwrap_err(),
            MacError::KeyTooShort(16)
        );
        let key = MacKey::generate();
        let again = MacKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(key.tag(b"x"), again.tag(b"x"));
        assert_eq!(format!("{key:?}"), "MacKey(<redacted>)");
    }

    #[test]
    fn ring_signs_with_current_and_verifies_with_previous() {
        let old = MacKey::generate();
        let new = MacKey::generate();
        let old_id = KeyId::parse("lkg-1").unwrap();
        let new_id = KeyId::parse("lkg-2").unwrap();
        let ring = MacKeyRing::new(new_id.clone(), new).with_previous(old_id.clone(), old.clone());
        assert_eq!(ring.current_id(), &new_id);
        let tag = old.tag(b"doc");
        ring.get(&old_id).unwrap().verify(b"doc", &tag).unwrap();
        assert!(matches!(
            ring.get(&KeyId::parse("lkg-0").unwrap()),
            Err(MacError::UnknownKey(_))
        ));
    }

    #[test]
    fn constant_time_helpers() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(tokens_equal("secret-token", "secret-token"));
        assert!(!tokens_equal("secret-token", "secret-tokeN"));
        assert!(!tokens_equal("", "x"));
    }
}
