//! Keys by id with one current key: the shape both rotatable secrets share
//! (the master keys of [`super::secret_box::SecretKeyRing`] and the HMAC keys
//! of [`super::mac::MacKeyRing`]). The current key is the one that writes
//! (encrypts, signs); every key in the ring still reads (decrypts, verifies),
//! so a rotation has a grace window in which old data stays usable.

use std::collections::BTreeMap;

use super::key_id::KeyId;

/// Keys by id, one of them current.
#[derive(Debug, Clone)]
pub struct KeyRing<K> {
    current: KeyId,
    keys: BTreeMap<KeyId, K>,
}

impl<K> KeyRing<K> {
    /// A ring whose current key is `key`.
    pub fn new(current_id: KeyId, key: K) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(current_id.clone(), key);
        Self {
            current: current_id,
            keys,
        }
    }

    /// Adds a key that still reads but no longer writes (the previous key of
    /// a rotation). The current id is never replaced.
    pub fn with_previous(mut self, id: KeyId, key: K) -> Self {
        if id != self.current {
            self.keys.insert(id, key);
        }
        self
    }

    pub fn current_id(&self) -> &KeyId {
        &self.current
    }

    /// The key with this id, if the ring has it.
    pub fn get(&self, id: &KeyId) -> Option<&K> {
        self.keys.get(id)
    }
}
