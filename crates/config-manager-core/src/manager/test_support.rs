//! The managers the unit tests open: a fresh SQLite file in a temporary
//! directory over the built-in schemas.

use std::sync::Arc;

use super::{Manager, ManagerOptions};
use crate::crypto::key_id::KeyId;
use crate::crypto::secret_box::{MasterKey, SecretKeyRing};
use crate::schema::SchemaRegistry;
use crate::store::Store;

/// Options with a fresh master key, no environment overrides and no
/// automatic schema fixes; tests change single fields with `..`.
pub(crate) fn test_options() -> ManagerOptions {
    let ring = SecretKeyRing::new(KeyId::parse("k1").unwrap(), MasterKey::generate());
    ManagerOptions {
        allow_unknown_services: false,
        env_policy: Arc::default(),
        env: Arc::new(|_| None),
        secrets: Some(Arc::new(ring)),
        auto_fix_schema: false,
    }
}

/// A manager over a new database (the directory lives as long as the
/// returned guard).
pub(crate) fn open_manager(options: ManagerOptions) -> (tempfile::TempDir, Manager) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("c.db")).unwrap();
    let m = Manager::open(store, SchemaRegistry::builtin().unwrap(), options).unwrap();
    (dir, m)
}
