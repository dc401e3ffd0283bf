//! Why a configuration version exists: the `change_type` column of history
//! rows and the suffix of the `config.*` audit action. A closed set, so a
//! typo cannot write a word no filter or reader knows; the strings are the
//! ones stored since the first release (rows and API output are unchanged).
//! Read back as the enum too: an unknown word in a row is an error naming it
//! ([`UnknownWord`]); these are our own words, so one is a bug or a database
//! of another release, never something to pass on silently.

use serde::{Serialize, Serializer};
use thiserror::Error;

/// A stored word that is not one of ours (a change type, audit action or
/// outcome). Names the kind and the word, escaped and cut short.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unknown {kind} '{word}'")]
pub struct UnknownWord {
    pub kind: &'static str,
    pub word: String,
}

impl UnknownWord {
    /// The error for `word` of `kind`.
    pub fn new(kind: &'static str, word: &str) -> Self {
        Self {
            kind,
            word: crate::domain::display_key(word),
        }
    }

    /// The member of `all` whose stored word (`as_str`) is `word`, else
    /// the error naming it as a `kind`.
    pub(crate) fn find<T: Copy>(
        kind: &'static str,
        all: impl IntoIterator<Item = T>,
        as_str: fn(T) -> &'static str,
        word: &str,
    ) -> Result<T, Self> {
        all.into_iter()
            .find(|t| as_str(*t) == word)
            .ok_or_else(|| Self::new(kind, word))
    }
}

/// Reads a closed set of words from a text column (store feature).
#[cfg(feature = "store")]
macro_rules! from_sql_by_parse {
    ($($t:ty),*) => {$(
        impl rusqlite::types::FromSql for $t {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                <$t>::parse(value.as_str()?)
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    )*};
}
#[cfg(feature = "store")]
pub(crate) use from_sql_by_parse;

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
    /// Every change type.
    pub const ALL: [ChangeType; 7] = [
        ChangeType::Update,
        ChangeType::Schema,
        ChangeType::Rebuild,
        ChangeType::Restore,
        ChangeType::Profile,
        ChangeType::Seed,
        ChangeType::Import,
    ];

    /// The change type whose stored word is `word`.
    pub fn parse(word: &str) -> Result<Self, UnknownWord> {
        UnknownWord::find("change type", Self::ALL, Self::as_str, word)
    }

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

#[cfg(feature = "store")]
from_sql_by_parse!(ChangeType);

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
