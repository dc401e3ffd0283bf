//! `verify-lkg` and `verify-message`: offline checks of the two signed
//! artefacts the service produces, with the same core code the service and
//! the client library use (so "verifies here" means "verifies there").
//!
//! Both print a JSON summary on success. Failures say why (`HMAC does not
//! match`, `checksum does not match the config`, …) and exit 1; a missing or
//! malformed key is a usage error (exit 2), because then nothing was checked.

use std::path::Path;

use config_manager_core::crypto::mac::MacKeyRing;
use config_manager_core::crypto::signing::{SigningKey, TrustedKeys, VerifyingKey};
use config_manager_core::envelope::{Envelope, DEFAULT_MAX_ENVELOPE_BYTES};
use config_manager_core::lkg::LkgCache;
use serde_json::{json, Map, Value};

use super::config::{print_json, read_input};
use super::{load_env, CliError, CliResult};
use config_manager_service::settings::table::{
    CONFIG_SIGNATURE_PRIVATE_KEY, CONFIG_SIGNATURE_PUBLIC_KEY,
};
use config_manager_service::settings::EnvSource;

/// `verify-lkg FILE`
pub fn lkg(env_file: &Path, file: &Path) -> CliResult {
    let env = load_env(env_file)?;
    let keys = lkg_keys(&env)?;
    let cache = LkgCache::read_verified(file, &keys)
        .map_err(|e| CliError::Failed(format!("{}: INVALID: {e}", file.display())))?;
    let contents = cache.contents();
    let services: Map<String, Value> = contents
        .services
        .iter()
        .map(|(name, s)| (name.to_string(), json!(s.version)))
        .collect();
    print_json(&json!({
        "valid": true,
        "file": file.display().to_string(),
        "key_id": cache.key_id().as_str(),
        "sealed_with_current_key": cache.is_sealed_with_current(&keys),
        "generated_at": contents.generated_at,
        "config_epoch": contents.config_epoch.as_str(),
        "schema_hash": contents.schema_hash,
        "services": services,
        // LKG format 2: the records of `<file>.journal` applied over the snapshot.
        "journal": cache.journal(),
    }))
}

/// The LKG HMAC key ring from `LKG_HMAC_KEY_*` (current and previous),
/// read as the service reads it.
fn lkg_keys(env: &EnvSource) -> CliResult<MacKeyRing> {
    config_manager_service::settings::lkg_keys(env).map_err(|e| CliError::Usage(e.to_string()))
}

/// `verify-message FILE|- [--public-key PEM_FILE]`
pub fn message(env_file: &Path, file: &str, public_key: Option<&Path>) -> CliResult {
    let key = match public_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
            VerifyingKey::from_spki_pem(&pem)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
        }
        None => key_from_env(&load_env(env_file)?)?,
    };
    let bytes = read_input(file)?;
    let envelope = Envelope::parse(&bytes, DEFAULT_MAX_ENVELOPE_BYTES)
        .map_err(|e| CliError::Failed(format!("INVALID: {e}")))?;
    envelope
        .verify(&TrustedKeys::from_keys([key]))
        .map_err(|e| CliError::Failed(format!("INVALID: {e}")))?;
    let age = envelope
        .issued_at_time()
        .ok()
        .map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds());
    print_json(&json!({
        "valid": true,
        "service": envelope.service.as_str(),
        "version": envelope.version,
        "config_epoch": envelope.config_epoch.as_str(),
        "issued_at": envelope.issued_at,
        "age_seconds": age,
        "key_id": envelope.key_id.as_str(),
        "checksum": envelope.checksum,
    }))
}

/// The trusted key from CONFIG_SIGNATURE_PUBLIC_KEY, else derived from
/// CONFIG_SIGNATURE_PRIVATE_KEY.
fn key_from_env(env: &EnvSource) -> CliResult<VerifyingKey> {
    if let Some(pem) = env.get(CONFIG_SIGNATURE_PUBLIC_KEY) {
        return VerifyingKey::from_spki_pem(pem)
            .map_err(|e| CliError::Usage(format!("CONFIG_SIGNATURE_PUBLIC_KEY: {e}")));
    }
    if let Some(pem) = env.get(CONFIG_SIGNATURE_PRIVATE_KEY) {
        return SigningKey::from_pkcs8_pem(pem)
            .map(|k| k.verifying_key())
            .map_err(|e| CliError::Usage(format!("CONFIG_SIGNATURE_PRIVATE_KEY: {e}")));
    }
    Err(CliError::Usage(
        "no public key: pass --public-key PEM_FILE or set CONFIG_SIGNATURE_PUBLIC_KEY".into(),
    ))
}
