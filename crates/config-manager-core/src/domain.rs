//! Newtypes shared by every layer, so a service name, a version or an epoch
//! cannot be confused with an arbitrary string or number.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

mod version;

pub use version::{Version, VersionError};

/// Longest accepted service name. Service names become MQTT topic levels, URL path
/// segments and file names, so they are kept short and plain.
pub const MAX_SERVICE_NAME_LEN: usize = 64;

/// Longest accepted configuration key (a top-level property name in a schema).
pub const MAX_KEY_LEN: usize = 128;

/// Why a name was refused. The message is safe to show to a client: it never
/// echoes the (possibly hostile) input back.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must start with a lowercase ASCII letter and contain only a-z, 0-9 and '-'")]
    InvalidService,
    #[error("must start with a letter and contain only ASCII letters, digits and '_'")]
    InvalidKey,
    #[error("must start with an ASCII letter or digit and contain only letters, digits, '.', '_' and '-'")]
    InvalidInstance,
}

/// What a set secret value reads as everywhere except the reveal call.
pub const SECRET_MASK: &str = "********";

/// A service name such as `tts-worker`.
///
/// The grammar `^[a-z][a-z0-9-]*$` (at most [`MAX_SERVICE_NAME_LEN`] bytes) is the
/// one of the MQTT contract; it rules out path traversal, MQTT wildcards, SQL
/// meta-characters and look-alike Unicode by construction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ServiceName(String);

impl ServiceName {
    /// Checks `raw` against the service-name grammar.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > MAX_SERVICE_NAME_LEN {
            return Err(NameError::TooLong {
                max: MAX_SERVICE_NAME_LEN,
            });
        }
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !(first_ok && rest_ok) {
            return Err(NameError::InvalidService);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Read-only access as text (a checked name is a valid `&str` wherever one
/// is taken); the name cannot be changed through it.
impl std::ops::Deref for ServiceName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// Looks a name up by its text in maps keyed by `ServiceName` (equality,
/// order and hash are those of the text).
impl std::borrow::Borrow<str> for ServiceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Compares with text as the text does.
impl PartialEq<str> for ServiceName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ServiceName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        ServiceName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Checks a configuration key (a top-level schema property name).
///
/// Keys follow the identifier style of the TARS settings (`tts_volume`), which
/// keeps them safe as JSON pointers, HTML ids and environment-variable suffixes.
pub fn validate_key(raw: &str) -> Result<(), NameError> {
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    if raw.len() > MAX_KEY_LEN {
        return Err(NameError::TooLong { max: MAX_KEY_LEN });
    }
    let mut chars = raw.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(NameError::InvalidKey)
    }
}

/// How a refused key appears in an error: control characters and quotes
/// escaped, at most 40 characters (the key is hostile input; the operator
/// only needs to recognize it).
pub fn display_key(raw: &str) -> String {
    let escaped: String = raw.chars().take(41).flat_map(char::escape_debug).collect();
    if raw.chars().count() > 40 {
        let cut: String = escaped.chars().take(40).collect();
        format!("{cut}…")
    } else {
        escaped
    }
}

/// Names and epochs are bound as SQL text, so store code passes the typed value.
#[cfg(feature = "store")]
impl rusqlite::ToSql for ServiceName {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

/// A service name read back from the database that is not one: a row
/// written by something else than this program, or a bug. Unlike
/// [`NameError`] (client input, never echoed) it names the value, escaped
/// and cut short, so the operator can find the row.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("stored service name '{value}' is invalid: {reason}")]
pub struct StoredNameError {
    pub value: String,
    pub reason: NameError,
}

/// A name read back from the database is checked like any other; one that
/// fails the grammar fails the read ([`StoredNameError`]).
#[cfg(feature = "store")]
impl rusqlite::types::FromSql for ServiceName {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        ServiceName::parse(text).map_err(|reason| {
            rusqlite::types::FromSqlError::Other(Box::new(StoredNameError {
                value: display_key(text),
                reason,
            }))
        })
    }
}

#[cfg(feature = "store")]
impl rusqlite::ToSql for Epoch {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

/// An epoch read back from the database is checked like any other: a row
/// that is not a UUID is an error naming the value, not a silent epoch.
#[cfg(feature = "store")]
impl rusqlite::types::FromSql for Epoch {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        Epoch::parse(text).map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

/// A configuration epoch: a UUID that changes whenever the database is rebuilt,
/// so a version number is only meaningful together with its epoch. The field
/// is private: every `Epoch` is a UUID ([`Epoch::parse`], [`Epoch::generate`],
/// or deserialized through the same check).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Epoch(String);

/// A value that is not a configuration epoch (a UUID). Names the value,
/// escaped and cut short (it may be hostile input; an epoch is no secret).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("'{0}' is not a UUID")]
pub struct EpochError(String);

impl Epoch {
    /// A fresh random epoch.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Checks that `raw` is a UUID (any form the `uuid` crate reads; the
    /// envelope additionally requires the hyphenated one) and keeps it as
    /// written: signatures cover the exact text.
    pub fn parse(raw: &str) -> Result<Self, EpochError> {
        if raw.len() > 45 || uuid::Uuid::try_parse(raw).is_err() {
            return Err(EpochError(display_key(raw)));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Epoch {
    type Error = EpochError;

    fn try_from(raw: String) -> Result<Self, EpochError> {
        Self::parse(&raw)
    }
}

impl From<Epoch> for String {
    fn from(epoch: Epoch) -> Self {
        epoch.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an effective value came from, in precedence order
/// (`Env` wins over `Database`, which wins over `Default`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Env,
    Database,
    Default,
}

/// Whether a field shows in the simple view or only in the advanced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Complexity {
    #[default]
    Simple,
    Advanced,
}

/// Current UTC time as RFC 3339 with millisecond precision, the one timestamp
/// format used in the database, the API and MQTT payloads.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// Formats a time as RFC 3339 UTC with millisecond precision (`2026-01-02T03:04:05.678Z`).
/// Fixed width, so the strings sort in time order in SQLite.
///
/// Callers pass UTC times (every parse goes through [`parse_rfc3339`]); a time
/// whose UTC equivalent falls outside `time`'s range is formatted at its own
/// offset rather than panicking.
pub fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.checked_to_offset(time::UtcOffset::UTC).unwrap_or(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Why a timestamp was refused. Never echoes the input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TimestampError {
    #[error("is not an RFC 3339 timestamp")]
    Syntax,
    /// Valid RFC 3339 whose UTC time falls outside the years 0000-9999 (what RFC 3339 can write), e.g.
    /// `9999-12-31T23:59:59-23:59`. `time`'s `to_offset` panics on these;
    /// the checked conversion turns them into this error.
    #[error("is outside the years 0000-9999 once converted to UTC")]
    OutOfRange,
}

/// Parses an RFC 3339 timestamp (any offset) into UTC. Every parse of a
/// timestamp from outside (MQTT payloads, query parameters, files) goes
/// through here, so none of them can panic.
pub fn parse_rfc3339(raw: &str) -> Result<time::OffsetDateTime, TimestampError> {
    let t = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| TimestampError::Syntax)?;
    let utc = t
        .checked_to_offset(time::UtcOffset::UTC)
        .ok_or(TimestampError::OutOfRange)?;
    if !(0..=9999).contains(&utc.year()) {
        return Err(TimestampError::OutOfRange);
    }
    Ok(utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_uuids_kept_as_written() {
        let raw = "550e8400-E29B-41d4-a716-446655440000";
        assert_eq!(Epoch::parse(raw).map(|e| e.to_string()), Ok(raw.to_owned()));
        assert!(Epoch::parse(Epoch::generate().as_str()).is_ok());
        for bad in ["", "e1", "550e8400-e29b-41d4-a716-44665544000", "x\n\"'"] {
            let err = Epoch::parse(bad).unwrap_err().to_string();
            assert!(err.contains("is not a UUID"), "{err}");
        }
        // The value is named, escaped and cut short.
        let err = Epoch::parse("e1\nforged").unwrap_err().to_string();
        assert_eq!(err, "'e1\\nforged' is not a UUID");
        let long = "a".repeat(500);
        assert!(Epoch::parse(&long).unwrap_err().to_string().len() < 60);
    }

    #[test]
    fn deserializing_an_epoch_checks_it() {
        let ok: Epoch = serde_json::from_str("\"550e8400-e29b-41d4-a716-446655440000\"").unwrap();
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            "\"550e8400-e29b-41d4-a716-446655440000\""
        );
        let err = serde_json::from_str::<Epoch>("\"e1\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'e1' is not a UUID"), "{err}");
    }

    #[cfg(feature = "store")]
    #[test]
    fn an_epoch_row_that_is_not_a_uuid_is_an_error() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let read = |v: &str| conn.query_row("SELECT ?1", [v], |r| r.get::<_, Epoch>(0));
        assert!(read("550e8400-e29b-41d4-a716-446655440000").is_ok());
        let err = read("e1").unwrap_err().to_string();
        assert!(err.contains("'e1' is not a UUID"), "{err}");
    }

    #[cfg(feature = "store")]
    #[test]
    fn a_service_row_outside_the_grammar_fails_the_read_naming_it() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let read = |v: &str| conn.query_row("SELECT ?1", [v], |r| r.get::<_, ServiceName>(0));
        assert_eq!(read("tts-worker").unwrap().as_str(), "tts-worker");
        let err = read("Bad\nName").unwrap_err().to_string();
        assert!(
            err.contains("stored service name 'Bad\\nName' is invalid: must start with"),
            "{err}"
        );
        let err = read(&"x".repeat(500)).unwrap_err().to_string();
        assert!(err.len() < 250, "the value is cut short: {err}");
    }

    #[test]
    fn out_of_range_timestamps_are_errors_not_panics() {
        for raw in [
            "9999-12-31T23:59:59-23:59",
            "9999-12-31T23:00:00-01:00",
            "0000-01-01T00:00:00+23:59",
        ] {
            assert_eq!(parse_rfc3339(raw), Err(TimestampError::OutOfRange), "{raw}");
        }
        assert_eq!(parse_rfc3339("yesterday"), Err(TimestampError::Syntax));
        assert!(parse_rfc3339("9999-12-31T23:59:59Z").is_ok());
        assert!(parse_rfc3339("9999-12-31T23:59:59+01:00").is_ok());
        assert!(parse_rfc3339("0001-01-01T00:00:00+00:01").is_ok());
    }

    #[test]
    fn service_names() {
        assert!(ServiceName::parse("tts-worker").is_ok());
        for bad in [
            "",
            "../etc",
            "a/b",
            "A",
            "1abc",
            "tts worker",
            "x'; drop table",
            "tts\u{0}",
            "tts-wörker",
            "+",
            "#",
        ] {
            assert!(ServiceName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            ServiceName::parse(&"a".repeat(10_000)),
            Err(NameError::TooLong {
                max: MAX_SERVICE_NAME_LEN
            })
        );
    }

    #[test]
    fn keys() {
        assert!(validate_key("tts_volume").is_ok());
        for bad in [
            "",
            "_x",
            "a-b",
            "a.b",
            "a/b",
            "ä",
            "a b",
            "a\u{0}b",
            "__proto__",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_key(&"a".repeat(200_000)).is_err());
        assert_eq!(display_key("a\u{0}b"), "a\\0b");
        assert_eq!(display_key(&"k".repeat(200_000)).chars().count(), 41);
    }

    #[test]
    fn timestamps_roundtrip_and_sort() {
        let s = now_rfc3339();
        assert_eq!(s.len(), 24);
        let t = parse_rfc3339(&s).unwrap();
        assert_eq!(format_rfc3339(t), s);
        assert!(
            format_rfc3339(parse_rfc3339("2026-01-01T00:00:00+02:00").unwrap())
                .starts_with("2025-12-31T22:00:00")
        );
    }
}
