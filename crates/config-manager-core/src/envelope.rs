//! The signed MQTT configuration envelope published on `system/config/<service>`.
//!
//! ```json
//! {"checksum":"…","config":{…},"config_epoch":"…","issued_at":"…",
//!  "key_id":"…","service":"tts-worker","signature":"…","version":7}
//! ```
//!
//! **Signed bytes** (defined once, here, and in `contracts/README.md`): the RFC 8785
//! canonical JSON of the envelope object with the `signature` member removed,
//! i.e. of `{checksum, config, config_epoch, issued_at, key_id, service,
//! version}`. `checksum` is the lowercase hex SHA-256 of the canonical JSON of
//! `config`. `signature` is the standard base64 (with padding) of the 64-byte
//! Ed25519 signature over the signed bytes. Any language with an RFC 8785 library
//! and Ed25519 can verify a message from the parsed JSON alone.
//!
//! **`version` changed meaning.** In the earlier Python contract `version` was the
//! message-format number, always `1`. Here it is the configuration's version
//! number (≥ 1), monotonic within a `config_epoch`; that is what lets a client
//! reject a replayed older message without relying on clocks (see
//! [`freshness`]). The format itself is identified by the topic and by the exact
//! member set: unknown members are refused.
//!
//! Secrets never appear in cleartext here: the publisher masks or omits secret
//! fields before signing (services fetch their own secrets over authenticated
//! REST).

pub mod freshness;

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::OffsetDateTime;

use crate::crypto::canonical::{self, CanonicalError, MAX_SAFE_INTEGER};
use crate::crypto::mac::constant_time_eq;
use crate::crypto::signing::{decode_signature, SignatureError, SigningKey, TrustedKeys};
use crate::crypto::KeyId;
use crate::domain::{format_rfc3339, parse_rfc3339, Epoch, ServiceName, Version};

/// Topic prefix of configuration updates; the full topic is
/// `system/config/<service>`.
pub const CONFIG_TOPIC_PREFIX: &str = "system/config/";

/// Default upper bound on an envelope's size. A full service config is a few
/// kilobytes; anything far larger is refused before parsing.
pub const DEFAULT_MAX_ENVELOPE_BYTES: usize = 256 * 1024;

/// Room an envelope needs besides its `config` member: the other members
/// (service name ≤ 64, checksum, epoch, time, key id, signature) and their
/// names take well under 1 KiB; the rest is margin.
pub const ENVELOPE_OVERHEAD_BYTES: usize = 2 * 1024;

/// Largest configuration, as canonical JSON of what is published (secrets
/// omitted, environment overrides applied), that still fits an envelope of
/// [`DEFAULT_MAX_ENVELOPE_BYTES`]. Writes of larger configurations are refused,
/// so nothing is saved that could never be published.
pub const MAX_CONFIG_BYTES: usize = DEFAULT_MAX_ENVELOPE_BYTES - ENVELOPE_OVERHEAD_BYTES;

/// The members an envelope has, in the order they are listed in the contract.
const MEMBERS: [&str; 8] = [
    "version",
    "service",
    "config",
    "checksum",
    "config_epoch",
    "issued_at",
    "key_id",
    "signature",
];

/// The MQTT topic of a service's configuration updates.
pub fn config_topic(service: &ServiceName) -> String {
    format!("{CONFIG_TOPIC_PREFIX}{service}")
}

/// SHA-256 (lowercase hex) of the canonical JSON of a config object.
pub fn config_checksum(config: &Map<String, Value>) -> Result<String, CanonicalError> {
    let bytes = canonical::object_to_canonical_bytes(config)?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// Why an envelope could not be built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("config version must be between 1 and 2^53-1, got {0}")]
    InvalidVersion(Version),
    #[error("config has no canonical JSON form: {0}")]
    Canonical(#[from] CanonicalError),
}

/// Why received bytes are not an envelope. Messages never echo payload content
/// beyond a short, escaped member name.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    #[error("payload is {len} bytes, more than the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    #[error("payload is not a JSON object")]
    NotObject,
    #[error("payload has no signature")]
    Unsigned,
    #[error("payload lacks the {0:?} member")]
    MissingField(&'static str),
    #[error("member {field:?} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("payload has an unknown member {0}")]
    UnknownField(String),
}

/// Why a parsed envelope is not authentic.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    #[error("signed with key {0}, which is not trusted")]
    UnknownKey(KeyId),
    #[error("signature is not valid base64")]
    BadBase64,
    #[error("signature has {0} bytes, Ed25519 signatures have 64")]
    BadSignatureLength(usize),
    #[error("checksum does not match the config")]
    ChecksumMismatch,
    #[error("signature does not verify")]
    BadSignature,
    #[error("envelope has no canonical JSON form: {0}")]
    Malformed(CanonicalError),
}

/// A configuration update as published on MQTT. Build one with
/// [`Envelope::sign`]; read one with [`Envelope::parse`] then
/// [`Envelope::verify`].
#[derive(Clone, PartialEq, Serialize)]
pub struct Envelope {
    /// The configuration's version, ≥ 1 and at most 2^53-1 (JSON numbers
    /// beyond are not exact everywhere), monotonic within `config_epoch`.
    pub version: Version,
    pub service: ServiceName,
    /// The full effective configuration (secrets masked).
    pub config: Map<String, Value>,
    /// Lowercase hex SHA-256 of the canonical JSON of `config`.
    pub checksum: String,
    /// The database epoch this version belongs to (a UUID).
    pub config_epoch: Epoch,
    /// RFC 3339 UTC time of signing.
    pub issued_at: String,
    /// Id of the signing key ([`crate::crypto::signing::key_id_for`]).
    pub key_id: KeyId,
    /// Base64 Ed25519 signature over [`Envelope::signed_bytes`].
    pub signature: String,
}

impl Envelope {
    /// Signs `config` as `version` of `service` in `epoch`, issued now.
    pub fn sign(
        service: &ServiceName,
        version: Version,
        epoch: &Epoch,
        config: Map<String, Value>,
        key: &SigningKey,
    ) -> Result<Self, EnvelopeError> {
        Self::sign_at(
            service,
            version,
            epoch,
            config,
            OffsetDateTime::now_utc(),
            key,
        )
    }

    /// Like [`Envelope::sign`] with an explicit issue time (tests, re-issue).
    pub fn sign_at(
        service: &ServiceName,
        version: Version,
        epoch: &Epoch,
        config: Map<String, Value>,
        issued_at: OffsetDateTime,
        key: &SigningKey,
    ) -> Result<Self, EnvelopeError> {
        // A version is never negative: its magnitude is the number.
        if version == Version::NONE || version.get().unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(EnvelopeError::InvalidVersion(version));
        }
        let mut envelope = Self {
            version,
            service: service.clone(),
            checksum: config_checksum(&config)?,
            config,
            config_epoch: epoch.clone(),
            issued_at: format_rfc3339(issued_at),
            key_id: key.key_id().clone(),
            signature: String::new(),
        };
        envelope.signature = key.sign_base64(&envelope.signed_bytes()?);
        Ok(envelope)
    }

    /// The bytes the signature covers: RFC 8785 canonical JSON of the envelope
    /// without `signature`.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        let mut object = self.to_object();
        object.remove("signature");
        canonical::object_to_canonical_bytes(&object)
    }

    /// The payload to publish: the whole envelope as canonical JSON, so every
    /// publish of the same envelope is byte-identical.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        canonical::object_to_canonical_bytes(&self.to_object())
    }

    /// The envelope as a JSON object.
    pub fn to_object(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("version".into(), Value::from(self.version.get()));
        m.insert("service".into(), Value::from(self.service.as_str()));
        m.insert("config".into(), Value::Object(self.config.clone()));
        m.insert("checksum".into(), Value::from(self.checksum.as_str()));
        m.insert(
            "config_epoch".into(),
            Value::from(self.config_epoch.as_str()),
        );
        m.insert("issued_at".into(), Value::from(self.issued_at.as_str()));
        m.insert("key_id".into(), Value::from(self.key_id.as_str()));
        m.insert("signature".into(), Value::from(self.signature.as_str()));
        m
    }

    /// `issued_at` as a time. [`Envelope::parse`] has already checked it.
    pub fn issued_at_time(&self) -> Result<OffsetDateTime, crate::domain::TimestampError> {
        parse_rfc3339(&self.issued_at)
    }

    /// Reads an envelope from received bytes, refusing (in this order) payloads
    /// over `max_len` bytes, non-JSON (including duplicate member names),
    /// non-objects, missing or empty signatures, missing, unknown and ill-typed
    /// members. It does not check authenticity: call [`Envelope::verify`].
    pub fn parse(bytes: &[u8], max_len: usize) -> Result<Self, ParseError> {
        if bytes.len() > max_len {
            return Err(ParseError::TooLarge {
                len: bytes.len(),
                max: max_len,
            });
        }
        let value =
            canonical::parse_strict(bytes).map_err(|e| ParseError::NotJson(e.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(ParseError::NotObject);
        };
        match object.get("signature") {
            None | Some(Value::Null) => return Err(ParseError::Unsigned),
            Some(Value::String(s)) if s.is_empty() => return Err(ParseError::Unsigned),
            Some(_) => {}
        }
        if let Some(unknown) = object.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
            return Err(ParseError::UnknownField(short_name(unknown)));
        }
        let mut take =
            |field: &'static str| object.remove(field).ok_or(ParseError::MissingField(field));
        let version = take("version")?;
        let service = take("service")?;
        let config = take("config")?;
        let checksum = take("checksum")?;
        let config_epoch = take("config_epoch")?;
        let issued_at = take("issued_at")?;
        let key_id = take("key_id")?;
        let signature = take("signature")?;

        let version = match version.as_u64() {
            Some(v @ 1..=MAX_SAFE_INTEGER) => {
                Version::try_from(v).map_err(|e| invalid("version", e.to_string()))?
            }
            _ => {
                return Err(invalid(
                    "version",
                    "must be an integer between 1 and 2^53-1",
                ))
            }
        };
        let service = ServiceName::parse(&string("service", service)?)
            .map_err(|e| invalid("service", e.to_string()))?;
        let Value::Object(config) = config else {
            return Err(invalid("config", "must be an object"));
        };
        let checksum = string("checksum", checksum)?;
        if checksum.len() != 64
            || !checksum
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(invalid("checksum", "must be 64 lowercase hex characters"));
        }
        let config_epoch = string("config_epoch", config_epoch)?;
        let config_epoch = Epoch::parse(&config_epoch)
            .ok()
            .filter(|_| config_epoch.len() == 36)
            .ok_or_else(|| invalid("config_epoch", "must be a hyphenated UUID"))?;
        let issued_at = string("issued_at", issued_at)?;
        if parse_rfc3339(&issued_at).is_err() {
            return Err(invalid("issued_at", "must be an RFC 3339 timestamp"));
        }
        let key_id = KeyId::parse(&string("key_id", key_id)?)
            .map_err(|e| invalid("key_id", e.to_string()))?;
        let signature = string("signature", signature)?;
        Ok(Self {
            version,
            service,
            config,
            checksum,
            config_epoch,
            issued_at,
            key_id,
            signature,
        })
    }

    /// Checks, in this order: the key id is trusted, the signature is well-formed
    /// base64 of 64 bytes, the checksum matches the config, and the signature
    /// verifies over the signed bytes. The checksum is checked before the
    /// signature only so that a changed config is reported as such; both must
    /// pass either way.
    pub fn verify(&self, trusted: &TrustedKeys) -> Result<(), VerifyError> {
        let key = trusted
            .get(&self.key_id)
            .ok_or_else(|| VerifyError::UnknownKey(self.key_id.clone()))?;
        let expected = config_checksum(&self.config).map_err(VerifyError::Malformed)?;
        let signed = self.signed_bytes().map_err(VerifyError::Malformed)?;
        let signature = decode_signature(&self.signature).map_err(|e| match e {
            SignatureError::BadLength(n) => VerifyError::BadSignatureLength(n),
            _ => VerifyError::BadBase64,
        })?;
        if !constant_time_eq(expected.as_bytes(), self.checksum.as_bytes()) {
            return Err(VerifyError::ChecksumMismatch);
        }
        key.verify(&signed, &signature)
            .map_err(|_| VerifyError::BadSignature)
    }
}

impl fmt::Debug for Envelope {
    /// Shows the identifying members only: configs can be large.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("service", &self.service)
            .field("version", &self.version)
            .field("config_epoch", &self.config_epoch)
            .field("issued_at", &self.issued_at)
            .field("key_id", &self.key_id)
            .field("checksum", &self.checksum)
            .finish_non_exhaustive()
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError::InvalidField {
        field,
        reason: reason.into(),
    }
}

fn string(field: &'static str, value: Value) -> Result<String, ParseError> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(invalid(field, "must be a string")),
    }
}

/// An attacker-chosen member name, escaped and cut short for error messages.
fn short_name(name: &str) -> String {
    let escaped: String = name.chars().take(40).flat_map(char::escape_debug).collect();
    if name.chars().count() > 40 {
        format!("\"{escaped}…\"")
    } else {
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests;
