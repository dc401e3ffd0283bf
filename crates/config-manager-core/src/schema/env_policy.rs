//! Which environment variables an `x-env` override may read.
//!
//! An `x-env` field publishes the variable's value to every reader of the
//! service and on MQTT, so reading "any variable" would hand the service's own
//! keys and tokens to anyone who can register a schema. The rules:
//!
//! - **Reserved** variables are never read, whoever wrote the schema: every
//!   variable config-manager itself reads, and every variable in the same
//!   namespace (the part up to the first `_`: `CONFIG_*`, `LKG_*`, `MQTT_*`,
//!   `LITESTREAM_*`, …). The caller passes the names it reads (the binary's
//!   `ALL_VARIABLES`); the namespaces are derived from them, so a new setting
//!   is covered without a second list.
//! - Schemas of the **operator** (built-in ones and `CONFIG_SCHEMA_DIR` files)
//!   may read any other variable.
//! - Schemas registered **over the API** may read only variables matching the
//!   operator's allow list (`CONFIG_ENV_ALLOW`: exact names or `PREFIX_*`
//!   patterns); the default list is empty, so they read none.

use std::collections::BTreeSet;

use thiserror::Error;

/// Who wrote a schema, which decides what its `x-env` fields may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaOrigin {
    /// Built into the binary or read from `CONFIG_SCHEMA_DIR`: the operator's.
    #[default]
    Operator,
    /// Registered over `PUT /api/config/services/{s}/schema` (stored in the
    /// database): any write-role caller's.
    Api,
}

/// One entry of the allow list: an exact name or a `PREFIX_*` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvPattern {
    Exact(String),
    /// Matches every name starting with the text before the `*`.
    Prefix(String),
}

impl EnvPattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            EnvPattern::Exact(n) => n == name,
            EnvPattern::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// Why an allow-list entry was refused (the entry is echoed: it is the
/// operator's own setting, not a secret).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{entry:?} is not a variable name (A-Z, 0-9, '_') or a PREFIX_* pattern")]
pub struct EnvPatternError {
    pub entry: String,
}

/// Why a schema's `x-env` variable will not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnvRefusal {
    #[error("{0} is one of config-manager's own settings (or in their namespace) and is never readable through x-env")]
    Reserved(String),
    #[error("{0} is not in CONFIG_ENV_ALLOW: schemas registered over the API may only read variables the operator allowed")]
    NotAllowed(String),
}

/// The rules above, built once from the settings.
#[derive(Debug, Clone, Default)]
pub struct EnvPolicy {
    reserved_names: BTreeSet<String>,
    reserved_prefixes: BTreeSet<String>,
    allowed: Vec<EnvPattern>,
}

impl EnvPolicy {
    /// A policy reserving `own_variables` (and their namespaces) and letting
    /// API-registered schemas read what `allowed` matches.
    pub fn new<'a>(
        own_variables: impl IntoIterator<Item = &'a str>,
        allowed: Vec<EnvPattern>,
    ) -> Self {
        let mut reserved_names = BTreeSet::new();
        let mut reserved_prefixes = BTreeSet::new();
        for name in own_variables {
            reserved_names.insert(name.to_owned());
            if let Some((namespace, _)) = name.split_once('_') {
                reserved_prefixes.insert(format!("{namespace}_"));
            }
        }
        Self {
            reserved_names,
            reserved_prefixes,
            allowed,
        }
    }

    /// Parses `CONFIG_ENV_ALLOW`: names or `PREFIX_*` patterns separated by
    /// commas (whitespace around entries ignored, empty entries skipped).
    pub fn parse_allow_list(raw: &str) -> Result<Vec<EnvPattern>, EnvPatternError> {
        raw.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let (text, prefix) = match entry.strip_suffix('*') {
                    Some(p) => (p, true),
                    None => (entry, false),
                };
                let mut chars = text.chars();
                let ok = text.len() <= super::MAX_ENV_VAR_LEN
                    && chars.next().is_some_and(|c| c.is_ascii_uppercase())
                    && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                match (ok, prefix) {
                    (true, true) => Ok(EnvPattern::Prefix(text.to_owned())),
                    (true, false) => Ok(EnvPattern::Exact(text.to_owned())),
                    (false, _) => Err(EnvPatternError {
                        entry: entry.chars().take(80).collect(),
                    }),
                }
            })
            .collect()
    }

    /// Whether `name` is one of the service's own variables or in their
    /// namespace.
    pub fn is_reserved(&self, name: &str) -> bool {
        self.reserved_names.contains(name)
            || self
                .reserved_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }

    /// Whether a schema of `origin` may read `name`.
    pub fn check(&self, name: &str, origin: SchemaOrigin) -> Result<(), EnvRefusal> {
        if self.is_reserved(name) {
            return Err(EnvRefusal::Reserved(name.to_owned()));
        }
        match origin {
            SchemaOrigin::Operator => Ok(()),
            SchemaOrigin::Api if self.allowed.iter().any(|p| p.matches(name)) => Ok(()),
            SchemaOrigin::Api => Err(EnvRefusal::NotAllowed(name.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reserved_names_and_namespaces_are_never_readable() {
        let allow = EnvPolicy::parse_allow_list("TARS_*, CONFIG_*, MQTT_URL").unwrap();
        let p = EnvPolicy::new(
            ["CONFIG_API_TOKENS", "MQTT_URL", "REBUILD_TOKEN", "RUST_LOG"],
            allow,
        );
        for name in [
            "CONFIG_API_TOKENS",
            "CONFIG_MASTER_KEY_BASE64",
            "MQTT_URL",
            "MQTT_PASSWORD",
            "REBUILD_TOKEN",
            "RUST_LOG",
        ] {
            for origin in [SchemaOrigin::Operator, SchemaOrigin::Api] {
                assert_eq!(
                    p.check(name, origin),
                    Err(EnvRefusal::Reserved(name.into())),
                    "{name}"
                );
            }
        }
        assert_eq!(p.check("TARS_X", SchemaOrigin::Api), Ok(()));
        assert_eq!(p.check("HOME", SchemaOrigin::Operator), Ok(()));
        assert_eq!(
            p.check("HOME", SchemaOrigin::Api),
            Err(EnvRefusal::NotAllowed("HOME".into()))
        );
    }

    #[test]
    fn default_policy_lets_api_schemas_read_nothing() {
        let p = EnvPolicy::default();
        assert!(p.check("TARS_OPENAI_API_KEY", SchemaOrigin::Api).is_err());
        assert!(p
            .check("TARS_OPENAI_API_KEY", SchemaOrigin::Operator)
            .is_ok());
    }

    #[test]
    fn allow_list_syntax() {
        assert_eq!(
            EnvPolicy::parse_allow_list(" A_1 ,, B_* ").unwrap(),
            vec![
                EnvPattern::Exact("A_1".into()),
                EnvPattern::Prefix("B_".into())
            ]
        );
        assert_eq!(EnvPolicy::parse_allow_list("").unwrap(), vec![]);
        for bad in ["*", "a", "A-B", "A*B", "A B"] {
            assert!(EnvPolicy::parse_allow_list(bad).is_err(), "{bad:?}");
        }
    }
}
