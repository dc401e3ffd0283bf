//! Cryptography of the config-manager, one concept per file:
//!
//! - [`canonical`]: RFC 8785 (JCS) canonical JSON, the byte string every signature
//!   and MAC in the project is computed over, so a Python or C service can
//!   reproduce it exactly.
//! - [`signing`]: Ed25519 keys (PEM in, PEM out), key ids, and the set of trusted
//!   public keys a service accepts.
//! - [`secret_box`]: AES-256-GCM encryption of secret values at rest, bound to
//!   their service and key, with a key ring for master-key rotation.
//! - [`mac`]: HMAC-SHA256 (used by the last-known-good cache) and constant-time
//!   comparison (used by token checks).
//! - [`key_id`]: the identifier every key carries, so rotation can keep more than
//!   one key in use at a time.
//! - [`key_ring`]: keys by id with one current key, shared by both key rings.

pub mod canonical;
pub mod key_id;
pub mod key_ring;
pub mod mac;
pub mod secret_box;
pub mod signing;

pub use key_id::{KeyId, KeyIdError};
