//! The version number of a service's stored configuration.
//!
//! A service's first stored configuration is version 1 and every change adds
//! one; 0 stands for "nothing stored yet" (what a write that creates a
//! service expects, what a service without a row reports). Versions only
//! grow within one configuration epoch, which is what lets clients refuse a
//! replayed older message (`contracts/freshness.md`), so a version is never
//! negative and never wraps.
//!
//! On the wire a version is a plain JSON integer, as it always was: the type
//! changes nothing in the API, the MQTT contract or the database.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::display_key;

/// A configuration version: a non-negative integer (see the module
/// documentation). The field is private, so every `Version` went through
/// [`Version::new`] or a check equivalent to it (deserialization, database
/// rows, [`Version::next`]). `Default` is [`Version::NONE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct Version(i64);

/// A value that is not a configuration version. Names the value (a number
/// is safe to show; text read back from the database is escaped and cut
/// short).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VersionError {
    /// Below zero.
    #[error("version must be >= 0, got {0}")]
    Negative(i64),
    /// Above the largest version ([`i64::MAX`]).
    #[error("version {0} is larger than {max}", max = i64::MAX)]
    TooLarge(u64),
    /// The largest version has no next one.
    #[error("version {0} is the largest there can be; there is no next one")]
    Exhausted(i64),
    /// Not an integer at all (text of a query or header, a stored value of
    /// another type).
    #[error("'{0}' is not a version (an integer >= 0)")]
    NotAnInteger(String),
}

impl Version {
    /// "Nothing stored yet": the version a service without a configuration
    /// has, and the one a write that must create the service expects.
    pub const NONE: Version = Version(0);

    /// A service's first stored configuration.
    pub const FIRST: Version = Version(1);

    /// Checks that `raw` is a version (>= 0).
    pub fn new(raw: i64) -> Result<Self, VersionError> {
        if raw < 0 {
            return Err(VersionError::Negative(raw));
        }
        Ok(Self(raw))
    }

    /// The number.
    pub fn get(self) -> i64 {
        self.0
    }

    /// The version a change of this one writes. An error (not a panic, not a
    /// wrap to a smaller number that clients would take for a replay) at the
    /// largest version.
    pub fn next(self) -> Result<Self, VersionError> {
        self.0
            .checked_add(1)
            .map(Self)
            .ok_or(VersionError::Exhausted(self.0))
    }
}

impl TryFrom<i64> for Version {
    type Error = VersionError;

    fn try_from(raw: i64) -> Result<Self, VersionError> {
        Self::new(raw)
    }
}

impl TryFrom<u64> for Version {
    type Error = VersionError;

    fn try_from(raw: u64) -> Result<Self, VersionError> {
        i64::try_from(raw)
            .map(Self)
            .map_err(|_| VersionError::TooLarge(raw))
    }
}

impl From<Version> for i64 {
    fn from(v: Version) -> Self {
        v.0
    }
}

/// Decimal digits, as in an ETag (`"7-<epoch>"`) or a query string.
impl FromStr for Version {
    type Err = VersionError;

    fn from_str(raw: &str) -> Result<Self, VersionError> {
        let n: i64 = raw
            .parse()
            .map_err(|_| VersionError::NotAnInteger(display_key(raw)))?;
        Self::new(n)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Reads a JSON integer (or, through formats that carry text such as query
/// strings, the digits of one) and checks it: a negative number, one above
/// [`i64::MAX`], a fraction, a string or any other type is an error.
impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = Version;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a version (an integer >= 0)")
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Version, E> {
                Version::new(v).map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Version, E> {
                Version::try_from(v).map_err(E::custom)
            }
        }

        d.deserialize_i64(Visitor)
    }
}

/// Versions are bound as SQL integers.
#[cfg(feature = "store")]
impl rusqlite::ToSql for Version {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

/// A version read back from the database is checked like any other: a
/// negative number, or a value that is not an integer (SQLite columns take
/// any type), fails the read naming the value.
#[cfg(feature = "store")]
impl rusqlite::types::FromSql for Version {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::ValueRef;
        let checked = match value {
            ValueRef::Integer(n) => Version::new(n),
            ValueRef::Real(x) => Err(VersionError::NotAnInteger(x.to_string())),
            ValueRef::Text(t) => Err(VersionError::NotAnInteger(display_key(
                &String::from_utf8_lossy(t),
            ))),
            ValueRef::Blob(b) => Err(VersionError::NotAnInteger(format!(
                "<{} byte blob>",
                b.len()
            ))),
            ValueRef::Null => Err(VersionError::NotAnInteger("NULL".into())),
        };
        checked.map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn new_refuses_negative_numbers_naming_them() {
        assert_eq!(Version::new(0), Ok(Version::NONE));
        assert_eq!(Version::new(1), Ok(Version::FIRST));
        assert_eq!(Version::new(i64::MAX).map(Version::get), Ok(i64::MAX));
        for bad in [-1, -7, i64::MIN] {
            let err = Version::new(bad).unwrap_err();
            assert_eq!(err, VersionError::Negative(bad));
            assert!(err.to_string().contains(&bad.to_string()), "{err}");
        }
        assert_eq!(
            Version::try_from(u64::MAX),
            Err(VersionError::TooLarge(u64::MAX))
        );
        assert_eq!(Version::try_from(7_u64).map(i64::from), Ok(7));
    }

    #[test]
    fn next_is_checked_at_the_top() {
        assert_eq!(Version::NONE.next(), Ok(Version::FIRST));
        let top = Version::new(i64::MAX).unwrap();
        let err = top.next().unwrap_err();
        assert_eq!(err, VersionError::Exhausted(i64::MAX));
        assert!(err.to_string().contains(&i64::MAX.to_string()), "{err}");
        assert_eq!(
            Version::new(i64::MAX - 1).unwrap().next(),
            Ok(top),
            "the last step still works"
        );
    }

    #[test]
    fn json_is_a_bare_integer_both_ways() {
        let v = Version::new(7).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "7");
        assert_eq!(serde_json::from_str::<Version>("7").unwrap(), v);
        assert_eq!(serde_json::from_str::<Version>("0").unwrap(), Version::NONE);
        assert_eq!(
            serde_json::to_string(&Some(v)).unwrap(),
            "7",
            "an optional version is the integer or null"
        );
        assert_eq!(
            serde_json::from_str::<Option<Version>>("null").unwrap(),
            None
        );
    }

    #[test]
    fn json_that_is_not_a_version_is_refused() {
        for (bad, says) in [
            ("-1", "version must be >= 0, got -1"),
            (
                "18446744073709551615",
                "18446744073709551615 is larger than",
            ),
            ("1.5", "a version (an integer >= 0)"),
            ("1e3", "a version (an integer >= 0)"),
            ("\"7\"", "a version (an integer >= 0)"),
            ("true", "a version (an integer >= 0)"),
            ("[7]", "a version (an integer >= 0)"),
            ("{}", "a version (an integer >= 0)"),
            ("null", "a version (an integer >= 0)"),
        ] {
            let err = serde_json::from_str::<Version>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn text_parses_as_decimal_digits() {
        assert_eq!("12".parse::<Version>().map(Version::get), Ok(12));
        assert_eq!("-3".parse::<Version>(), Err(VersionError::Negative(-3)));
        for bad in ["", "x", "1.5", " 1", "9223372036854775808", "1\n"] {
            let err = bad.parse::<Version>().unwrap_err();
            assert!(matches!(err, VersionError::NotAnInteger(_)), "{bad:?}");
        }
        let err = "x\n\"".parse::<Version>().unwrap_err().to_string();
        assert_eq!(err, "'x\\n\\\"' is not a version (an integer >= 0)");
        assert!(
            "9".repeat(500)
                .parse::<Version>()
                .unwrap_err()
                .to_string()
                .len()
                < 100,
            "long text is cut short"
        );
    }

    #[cfg(feature = "store")]
    #[test]
    fn a_stored_value_that_is_not_a_version_fails_the_read_naming_it() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let read = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, Version>(0));
        assert_eq!(read("SELECT 7").unwrap(), Version::new(7).unwrap());
        for (sql, says) in [
            ("SELECT -2", "version must be >= 0, got -2"),
            ("SELECT 1.5", "'1.5' is not a version"),
            ("SELECT 'seven'", "'seven' is not a version"),
            ("SELECT x'00ff'", "'<2 byte blob>' is not a version"),
            ("SELECT NULL", "'NULL' is not a version"),
        ] {
            let err = read(sql).unwrap_err().to_string();
            assert!(err.contains(says), "{sql}: {err}");
        }
        // NULL is fine where a version is optional.
        let none = conn.query_row("SELECT NULL", [], |r| r.get::<_, Option<Version>>(0));
        assert_eq!(none.unwrap(), None);
        // And a version binds as the integer.
        let back: i64 = conn
            .query_row("SELECT ?1", [Version::new(9).unwrap()], |r| r.get(0))
            .unwrap();
        assert_eq!(back, 9);
    }
}
