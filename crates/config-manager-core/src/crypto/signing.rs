//! Ed25519 signing keys, public keys and the set of trusted keys.
//!
//! Keys travel as PEM because that is what operators and other languages have:
//! `openssl genpkey -algorithm ed25519` and Python's `cryptography` write the
//! private key as PKCS#8 (`BEGIN PRIVATE KEY`) and the public key as SPKI
//! (`BEGIN PUBLIC KEY`). A key's id is derived from the public key itself, so a
//! verifier can tell which key signed a message without any registry, and two
//! parties holding the same public key always agree on its id.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

use super::KeyId;

/// Why a key could not be loaded or written. Messages never contain key bytes.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error(
        "not a valid Ed25519 private key in PKCS#8 PEM (\"-----BEGIN PRIVATE KEY-----\"): {0}"
    )]
    PrivateKeyPem(String),
    #[error("not a valid Ed25519 public key in SPKI PEM (\"-----BEGIN PUBLIC KEY-----\"): {0}")]
    PublicKeyPem(String),
    #[error("could not encode the key as PEM: {0}")]
    Encode(String),
}

/// Why a signature was not accepted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature is not valid base64 (standard alphabet with padding)")]
    BadBase64,
    #[error("signature must be 64 bytes, got {0}")]
    BadLength(usize),
    #[error("signature does not verify with this key")]
    Invalid,
}

/// The id of an Ed25519 public key: the first 16 hex characters (8 bytes) of
/// SHA-256 over the 32 raw public-key bytes.
///
/// Short enough to log and to read aloud, long enough that two keys of one
/// deployment never collide by accident. It identifies, it does not authenticate:
/// the signature check does that.
pub fn key_id_for(public_key: &[u8; 32]) -> KeyId {
    let digest = Sha256::digest(public_key);
    let hex_id = hex::encode(&digest[..8]);
    // 16 lowercase hex characters always satisfy the key-id alphabet.
    KeyId::parse(&hex_id).unwrap_or_else(|_| unreachable!("hex is a valid key id"))
}

/// Decodes a signature from standard base64 (with padding) into its 64 bytes.
pub fn decode_signature(signature_b64: &str) -> Result<[u8; 64], SignatureError> {
    let raw = BASE64
        .decode(signature_b64)
        .map_err(|_| SignatureError::BadBase64)?;
    raw.as_slice()
        .try_into()
        .map_err(|_| SignatureError::BadLength(raw.len()))
}

/// Accepts PEM text as found in `.env` files, where newlines are often written
/// as the two characters `\n` and the value may be quoted.
pub fn normalize_pem(raw: &str) -> String {
    let trimmed = raw.trim().trim_matches(|c| c == '"' || c == '\'');
    if trimmed.contains("\\n") && !trimmed.contains('\n') {
        trimmed.replace("\\n", "\n")
    } else {
        trimmed.to_owned()
    }
}

/// An Ed25519 private key with its key id. `Debug` shows only the id.
#[derive(Clone)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    key_id: KeyId,
}

impl SigningKey {
    /// A new random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let inner = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        Self::from_dalek(inner)
    }

    /// A key from its 32-byte seed (tests and the contract's worked example).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_dalek(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// Loads a PKCS#8 PEM private key (v1 as written by OpenSSL, or v2 with the
    /// public key included, which must then match).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let inner = ed25519_dalek::SigningKey::from_pkcs8_pem(&normalize_pem(pem))
            .map_err(|e| KeyError::PrivateKeyPem(e.to_string()))?;
        Ok(Self::from_dalek(inner))
    }

    /// The key as PKCS#8 PEM, zeroized when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.inner
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey::from_dalek(self.inner.verifying_key())
    }

    /// Signs `message` and returns the signature as standard base64 with padding.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        BASE64.encode(self.inner.sign(message).to_bytes())
    }

    fn from_dalek(inner: ed25519_dalek::SigningKey) -> Self {
        let key_id = key_id_for(inner.verifying_key().as_bytes());
        Self { inner, key_id }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// An Ed25519 public key with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    inner: ed25519_dalek::VerifyingKey,
    key_id: KeyId,
}

impl VerifyingKey {
    /// Loads an SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_spki_pem(pem: &str) -> Result<Self, KeyError> {
        let inner = ed25519_dalek::VerifyingKey::from_public_key_pem(&normalize_pem(pem))
            .map_err(|e| KeyError::PublicKeyPem(e.to_string()))?;
        Ok(Self::from_dalek(inner))
    }

    /// The key as SPKI PEM.
    pub fn to_spki_pem(&self) -> Result<String, KeyError> {
        self.inner
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The 32 raw public-key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.inner.as_bytes()
    }

    /// Checks a base64 signature over `message`.
    pub fn verify_base64(&self, message: &[u8], signature_b64: &str) -> Result<(), SignatureError> {
        self.verify(message, &decode_signature(signature_b64)?)
    }

    /// Checks a raw 64-byte signature over `message`.
    ///
    /// Uses `verify_strict`, which also refuses small-order keys and
    /// non-canonical signature encodings, so a signature cannot be altered into
    /// a second valid one.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), SignatureError> {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.inner
            .verify_strict(message, &signature)
            .map_err(|_| SignatureError::Invalid)
    }

    fn from_dalek(inner: ed25519_dalek::VerifyingKey) -> Self {
        let key_id = key_id_for(inner.as_bytes());
        Self { inner, key_id }
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A freshly generated key pair as PEM text, ready for a `.env` file.
/// `Debug` shows only the id; the private PEM is zeroized when dropped.
pub struct KeyPairPem {
    pub key_id: KeyId,
    pub private_pem: Zeroizing<String>,
    pub public_pem: String,
}

impl KeyPairPem {
    /// Generates a new random key pair.
    pub fn generate() -> Result<Self, KeyError> {
        let key = SigningKey::generate();
        Ok(Self {
            key_id: key.key_id().clone(),
            private_pem: key.to_pkcs8_pem()?,
            public_pem: key.verifying_key().to_spki_pem()?,
        })
    }
}

impl fmt::Debug for KeyPairPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPairPem")
            .field("key_id", &self.key_id)
            .field("private_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The public keys a service accepts signatures from, by key id.
///
/// Holding more than one key is how signing keys roll over without a flag day:
/// add the new public key to every service, switch the manager to the new
/// private key, then remove the old public key.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<KeyId, VerifyingKey>,
}

impl TrustedKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key (replacing one with the same id, which is the same key).
    pub fn insert(&mut self, key: VerifyingKey) {
        self.keys.insert(key.key_id().clone(), key);
    }

    /// A set with exactly these keys.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let mut set = Self::new();
        for key in keys {
            set.insert(key);
        }
        set
    }

    pub fn get(&self, key_id: &KeyId) -> Option<&VerifyingKey> {
        self.keys.get(key_id)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `openssl genpkey -algorithm ed25519` (OpenSSL 3.0.19).
    const OPENSSL_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\n\
MC4CAQAwBQYDK2VwBCIEIImYCxoI6SfV6EdMJVyWwim3E7/QG92NGnQZfndnhh8u\n\
-----END PRIVATE KEY-----\n";
    /// `openssl pkey -in private.pem -pubout` of the key above.
    const OPENSSL_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\n\
MCowBQYDK2VwAyEARQXArKA7VNYrNPnwNYtOmmI+jl92WgOwHJOn7jJLrr8=\n\
-----END PUBLIC KEY-----\n";

    #[test]
    fn loads_openssl_keys_and_they_match() {
        let sk = SigningKey::from_pkcs8_pem(OPENSSL_PRIVATE).unwrap();
        let pk = VerifyingKey::from_spki_pem(OPENSSL_PUBLIC).unwrap();
        assert_eq!(sk.verifying_key(), pk);
        assert_eq!(sk.key_id(), pk.key_id());
        let sig = sk.sign_base64(b"hello");
        pk.verify_base64(b"hello", &sig).unwrap();
    }

    #[test]
    fn pem_round_trip_and_env_style_newlines() {
        let pair = KeyPairPem::generate().unwrap();
        assert!(pair.private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(pair.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let sk = SigningKey::from_pkcs8_pem(&pair.private_pem).unwrap();
        assert_eq!(sk.key_id(), &pair.key_id);
        let escaped = format!("\"{}\"", pair.public_pem.trim().replace('\n', "\\n"));
        let pk = VerifyingKey::from_spki_pem(&escaped).unwrap();
        assert_eq!(pk.key_id(), &pair.key_id);
    }

    #[test]
    fn key_id_is_sha256_prefix_of_raw_public_key() {
        let pk = VerifyingKey::from_spki_pem(OPENSSL_PUBLIC).unwrap();
        let want = hex::encode(&Sha256::digest(pk.as_bytes())[..8]);
        assert_eq!(pk.key_id().as_str(), want);
        assert_eq!(want.len(), 16);
    }

    #[test]
    fn malformed_pem_is_a_clear_error() {
        assert!(matches!(
            SigningKey::from_pkcs8_pem("not a key"),
            Err(KeyError::PrivateKeyPem(_))
        ));
        assert!(matches!(
            VerifyingKey::from_spki_pem(OPENSSL_PRIVATE),
            Err(KeyError::PublicKeyPem(_))
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_pem(OPENSSL_PUBLIC),
            Err(KeyError::PrivateKeyPem(_))
        ));
    }

    #[test]
    fn verify_reports_each_failure() {
        let sk = SigningKey::generate();
        let pk = sk.verifying_key();
        let sig = sk.sign_base64(b"msg");
        assert_eq!(
            pk.verify_base64(b"msg!", &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            pk.verify_base64(b"msg", "***"),
            Err(SignatureError::BadBase64)
        );
        assert_eq!(
            pk.verify_base64(b"msg", "AAAA"),
            Err(SignatureError::BadLength(3))
        );
        let other = SigningKey::generate().verifying_key();
        assert_eq!(
            other.verify_base64(b"msg", &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn debug_never_shows_secret_material() {
        let sk = SigningKey::from_pkcs8_pem(OPENSSL_PRIVATE).unwrap();
        let shown = format!("{sk:?} {:?}", KeyPairPem::generate().unwrap());
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("BEGIN"));
        assert!(!shown.contains("MC4CAQAw"));
    }

    #[test]
    fn trusted_keys_by_id() {
        let a = SigningKey::generate().verifying_key();
        let b = SigningKey::generate().verifying_key();
        let set = TrustedKeys::from_keys([a.clone(), b.clone(), a.clone()]);
        assert_eq!(set.len(), 2);
        assert_eq!(set.get(a.key_id()), Some(&a));
        assert!(set
            .get(&KeyId::parse("0000000000000000").unwrap())
            .is_none());
    }
}
