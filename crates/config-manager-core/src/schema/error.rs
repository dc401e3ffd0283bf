//! The two kinds of failure of this module: a configuration that breaks a
//! schema ([`FieldError`], reported to the client field by field) and a schema
//! that cannot be used at all ([`SchemaError`], a start-up or registration
//! failure).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest message text of a [`FieldError`], in characters.
///
/// Messages are built from the schema (limits, enum options, patterns), never
/// from the offending value, but a schema can still hold long enum lists or
/// patterns; the cap keeps a 422 response readable.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// One failing field of a configuration, as the API reports it.
///
/// `pointer` is an RFC 6901 JSON pointer into the submitted configuration
/// (`/volume_percent`; `""` for the configuration as a whole), so the web form
/// can show the message next to the right input. `message` never repeats the
/// submitted value: it may be a secret or arbitrarily large.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub pointer: String,
    pub message: String,
}

impl FieldError {
    /// Builds an error, capping the message at [`MAX_MESSAGE_CHARS`].
    pub fn new(pointer: impl Into<String>, message: impl AsRef<str>) -> Self {
        Self {
            pointer: pointer.into(),
            message: truncate_chars(message.as_ref(), MAX_MESSAGE_CHARS),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "(root): {}", self.message)
        } else {
            write!(f, "{}: {}", self.pointer, self.message)
        }
    }
}

/// Why a schema document could not be compiled, loaded or registered.
///
/// These are operator-facing errors (bad files at start-up, a bad schema sent
/// to the registration API); every variant names the service or the file so the
/// operator knows what to fix.
#[derive(Debug, Error)]
pub enum SchemaError {
    /// The document is not a usable service schema: not valid JSON Schema, not an
    /// object schema, a bad key or extension keyword, or a default that fails the
    /// schema itself.
    #[error("schema of service {service:?} is invalid: {reason}")]
    Invalid { service: String, reason: String },
    /// A schema file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A schema file is unusable before its content is looked at (its name is
    /// not a valid service name, it is too large or not JSON).
    #[error("schema file {}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    /// A schema file was read but its document is invalid.
    #[error("schema file {}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<SchemaError>,
    },
    /// [`super::SchemaRegistry::try_register`] was given a service that already
    /// has a schema.
    #[error("a schema for service {0:?} is already registered")]
    Duplicate(String),
}

impl SchemaError {
    pub(crate) fn invalid(service: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            service: service.to_owned(),
            reason: truncate_chars(&reason.into(), 4 * MAX_MESSAGE_CHARS),
        }
    }
}

/// Cuts `s` to at most `max` characters, marking the cut with `…`.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((cut, _)) => {
            let keep = s[..cut]
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(cut, |(i, _)| i);
            format!("{}…", &s[..keep])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        assert_eq!(truncate_chars("äöüß", 3).chars().count(), 3);
        assert_eq!(truncate_chars("", 0), "");
        let long = FieldError::new("/x", "y".repeat(10_000));
        assert_eq!(long.message.chars().count(), MAX_MESSAGE_CHARS);
    }
}
