//! Why a configuration version exists: the `change_type` column of history
//! rows and the suffix of the `config.*` audit action. A closed set, so a
//! typo cannot write a word no filter or reader knows; the strings are the
//! ones stored since the first release (rows and API output are unchanged).

use serde::{Serialize, Serializer};

/// What made a configuration change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeType {
    /// A PUT/PATCH (API, UI or the offline CLI).
    Update,
    /// Schema evolution rewrote the stored values.
    Schema,
    /// Seeding of a rebuilt database.
    Rebuild,
    /// A history entry or point in time restored.
    Restore,
    /// A profile activated.
    Profile,
    /// Defaults written on first start.
    Seed,
    /// An import.
    Import,
}

impl ChangeType {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Update => "update",
            ChangeType::Schema => "schema",
            ChangeType::Rebuild => "rebuild",
            ChangeType::Restore => "restore",
            ChangeType::Profile => "profile",
            ChangeType::Seed => "seed",
            ChangeType::Import => "import",
        }
    }
}

impl std::fmt::Display for ChangeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ChangeType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
