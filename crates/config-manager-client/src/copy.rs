//! The client's own on-disk copy of the last verified signed envelope
//! (decision 3 of issue 24; the same file format as the Python client's
//! `cache.py`): read at start-up when the manager cannot be reached.
//!
//! Integrity without a shared secret: the file holds the *signed envelope*
//! exactly as it was received and verified, and reading it repeats every
//! check of a received message that does not depend on time (strict shape,
//! service, trusted key, checksum, signature). The envelope never carries a
//! secret (the manager leaves secrets out of MQTT payloads), so no secret is
//! ever written. The file is `{"format": 1, "envelope": {...}}`, replaced
//! atomically (temporary file in the same directory with mode 0600, `fsync`,
//! rename, directory `fsync`).

use std::path::{Path, PathBuf};

use config_manager_core::crypto::signing::TrustedKeys;
use config_manager_core::domain::ServiceName;
use config_manager_core::envelope::Envelope;
use serde_json::Value;

/// The file format this code reads and writes.
pub const FORMAT: u64 = 1;

/// Why the copy could not be used. Never contains a configuration value.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{0} is not a copy of format 1")]
    Unreadable(String),
    #[error("{path}: {reason}")]
    Rejected { path: String, reason: String },
}

/// Reads and verifies the copy at `path` for `service`.
pub fn read(
    path: &Path,
    service: &ServiceName,
    trusted: &TrustedKeys,
    max_payload: usize,
) -> Result<Envelope, CopyError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| CopyError::Io {
        path: shown.clone(),
        error,
    })?;
    // The copy is at most one envelope plus a few bytes of wrapping.
    if bytes.len() > max_payload.saturating_add(64) {
        return Err(CopyError::Unreadable(shown));
    }
    let doc: Value =
        serde_json::from_slice(&bytes).map_err(|_| CopyError::Unreadable(shown.clone()))?;
    let object = doc
        .as_object()
        .filter(|o| o.len() == 2 && o.get("format").and_then(Value::as_u64) == Some(FORMAT))
        .ok_or_else(|| CopyError::Unreadable(shown.clone()))?;
    let envelope = object
        .get("envelope")
        .filter(|e| e.is_object())
        .ok_or_else(|| CopyError::Unreadable(shown.clone()))?;
    let payload = serde_json::to_vec(envelope).map_err(|_| CopyError::Unreadable(shown.clone()))?;
    let rejected = |reason: String| CopyError::Rejected {
        path: shown.clone(),
        reason,
    };
    let envelope = Envelope::parse(&payload, payload.len().max(max_payload))
        .map_err(|e| rejected(e.to_string()))?;
    if &envelope.service != service {
        return Err(rejected(format!(
            "holds the configuration of {}, not {service}",
            envelope.service
        )));
    }
    envelope
        .verify(trusted)
        .map_err(|e| rejected(e.to_string()))?;
    Ok(envelope)
}

/// Atomically replaces `path` with `payload` (the verified envelope's bytes
/// as received) wrapped in the copy format. Blocking.
pub fn write(path: &Path, payload: &[u8]) -> Result<(), CopyError> {
    let io = |error: std::io::Error| CopyError::Io {
        path: path.display().to_string(),
        error,
    };
    let mut body = Vec::with_capacity(payload.len() + 32);
    body.extend_from_slice(b"{\"format\":1,\"envelope\":");
    body.extend_from_slice(payload);
    body.extend_from_slice(b"}\n");
    write_atomic(path, &body).map_err(io)
}

/// Writes `body` to a 0600 temporary file beside `path`, syncs it, renames
/// it over `path` and syncs the directory. Creates the directory (0700)
/// when missing. Blocking.
pub fn write_atomic(path: &Path, body: &[u8]) -> std::io::Result<()> {
    config_manager_core::fs::atomic::AtomicWriter::default()
        .create_dirs(0o700)
        .write(path, body)?;
    Ok(())
}

/// The default directory of the copies (decision 3): `/var/lib/tars-config`
/// when it exists or can be created and is writable (mount a volume there in
/// a container), else `$XDG_STATE_HOME/tars-config`, else
/// `~/.local/state/tars-config`.
pub fn default_dir(get: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let system = PathBuf::from("/var/lib/tars-config");
    if writable_dir(&system) {
        return system;
    }
    if let Some(state) = get("XDG_STATE_HOME") {
        return PathBuf::from(state).join("tars-config");
    }
    let home = get("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/state/tars-config")
}

/// Whether `dir` exists or can be created, and a file can be created in it.
fn writable_dir(dir: &Path) -> bool {
    use std::os::unix::fs::DirBuilderExt as _;
    if std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .is_err()
    {
        return false;
    }
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let ok = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use config_manager_core::crypto::signing::SigningKey;
    use config_manager_core::domain::{Epoch, Version};
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt as _;

    fn signed(key: &SigningKey, service: &str) -> Vec<u8> {
        let config = json!({"volume": 3}).as_object().unwrap().clone();
        Envelope::sign(
            &ServiceName::parse(service).unwrap(),
            Version::new(2).unwrap(),
            &Epoch::parse("5b0c3f0e-8a51-4c8e-9a43-7f6d2b1e0a01").unwrap(),
            config,
            key,
        )
        .unwrap()
        .to_json_bytes()
        .unwrap()
    }

    #[test]
    fn round_trip_and_every_bad_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tts-worker.json");
        let key = SigningKey::generate();
        let mut trusted = TrustedKeys::new();
        trusted.insert(key.verifying_key());
        let svc = ServiceName::parse("tts-worker").unwrap();
        write(&path, &signed(&key, "tts-worker")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let env = read(&path, &svc, &trusted, 1 << 20).unwrap();
        assert_eq!(env.version.get(), 2);

        // Another service's copy.
        let other = ServiceName::parse("stt-worker").unwrap();
        assert!(matches!(
            read(&path, &other, &trusted, 1 << 20),
            Err(CopyError::Rejected { .. })
        ));
        // Another key.
        let mut stranger = TrustedKeys::new();
        stranger.insert(SigningKey::generate().verifying_key());
        assert!(read(&path, &svc, &stranger, 1 << 20).is_err());
        // Edited value.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"volume\":3", "\"volume\":4")).unwrap();
        assert!(matches!(
            read(&path, &svc, &trusted, 1 << 20),
            Err(CopyError::Rejected { .. })
        ));
        for bad in [
            "",
            "[]",
            "{\"format\":2,\"envelope\":{}}",
            "{\"format\":1}",
            "{\"format\":1,\"envelope\":[]}",
            "{\"format\":1,\"envelope\":{},\"x\":1}",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(read(&path, &svc, &trusted, 1 << 20).is_err(), "{bad}");
        }
        // Unsigned envelope.
        std::fs::write(&path, "{\"format\":1,\"envelope\":{\"version\":1}}").unwrap();
        assert!(read(&path, &svc, &trusted, 1 << 20).is_err());
        assert!(matches!(
            read(&dir.path().join("missing.json"), &svc, &trusted, 1 << 20),
            Err(CopyError::Io { .. })
        ));
    }
}
