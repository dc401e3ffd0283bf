//! The token table from `CONFIG_API_TOKENS`.
//!
//! Format: comma-separated entries `[name=]token:role[:service+service...]`.
//! - `role` is `config.read` or `config.write` (write includes read);
//! - `name` is what the audit log records (default: `token-` and the first 8
//!   hex digits of the token's SHA-256, so the token itself is never written);
//! - the optional service list limits the token to those services; such a token
//!   can read their full configuration including secrets, and nothing else.
//!
//! The plain `token:role` form of the earlier implementation stays valid.

use config_manager_core::crypto::mac::constant_time_eq;
use config_manager_core::domain::ServiceName;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Shortest accepted token; shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Write,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "config.read",
            Role::Write => "config.write",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Audit identity (never the token).
    pub name: String,
    pub role: Role,
    /// `Some` for service-scoped tokens.
    pub services: Option<Vec<ServiceName>>,
}

impl Caller {
    /// Whether the token is limited to some services (the `http::auth`
    /// extractors `Unscoped` and `ScopedService` check it).
    pub fn is_scoped(&self) -> bool {
        self.services.is_some()
    }

    /// Whether this caller may see `service` at all.
    pub fn may_access(&self, service: &str) -> bool {
        self.services
            .as_ref()
            .is_none_or(|s| s.iter().any(|n| n.as_str() == service))
    }

    /// Whether this caller may read `service`'s secrets in clear text: only a
    /// token scoped to that service.
    pub fn may_read_secrets_of(&self, service: &str) -> bool {
        self.services
            .as_ref()
            .is_some_and(|s| s.iter().any(|n| n.as_str() == service))
    }
}

/// A malformed token table (the message never contains a token).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("entry {0} is empty")]
    Empty(usize),
    #[error("entry {0} must look like [name=]token:role[:service+service]")]
    Shape(usize),
    #[error("entry {0} has an unknown role (use config.read or config.write)")]
    Role(usize),
    #[error("entry {0}: tokens must be at least {MIN_TOKEN_LEN} characters")]
    Short(usize),
    #[error("entry {0}: token contains characters outside A-Z a-z 0-9 - _ . ~ + /")]
    Charset(usize),
    #[error("entry {0} has an invalid name or service")]
    Name(usize),
    #[error("entry {0} repeats a token or a name")]
    Duplicate(usize),
}

struct Entry {
    token: String,
    /// SHA-256 of `token`, computed once: a request hashes only the token it
    /// presents, whatever the number of configured tokens.
    digest: [u8; 32],
    caller: Caller,
}

/// The configured tokens. `Debug` shows names only.
pub struct TokenTable {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.caller.name))
            .finish()
    }
}

impl TokenTable {
    /// Parses `CONFIG_API_TOKENS`.
    pub fn parse(raw: &str) -> Result<Self, TokenError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, part) in raw.split(',').enumerate() {
            let n = i + 1;
            let part = part.trim();
            if part.is_empty() {
                return Err(TokenError::Empty(n));
            }
            let (name, rest) = match part.split_once('=') {
                Some((name, rest)) => (Some(name.trim()), rest),
                None => (None, part),
            };
            let mut fields = rest.split(':');
            let (Some(token), Some(role)) = (fields.next(), fields.next()) else {
                return Err(TokenError::Shape(n));
            };
            let scope = fields.next();
            if fields.next().is_some() {
                return Err(TokenError::Shape(n));
            }
            let role = match role.trim() {
                "config.read" => Role::Read,
                "config.write" => Role::Write,
                _ => return Err(TokenError::Role(n)),
            };
            let token = token.trim();
            if token.len() < MIN_TOKEN_LEN {
                return Err(TokenError::Short(n));
            }
            if !token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.~+/".contains(c))
            {
                return Err(TokenError::Charset(n));
            }
            let name = match name {
                Some(name) => {
                    let ok = !name.is_empty()
                        && name.len() <= 64
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                    if !ok {
                        return Err(TokenError::Name(n));
                    }
                    name.to_owned()
                }
                None => default_name(token),
            };
            let services = scope
                .map(|s| {
                    s.split('+')
                        .map(|svc| ServiceName::parse(svc.trim()).map_err(|_| TokenError::Name(n)))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?;
            if entries
                .iter()
                .any(|e| e.token == token || e.caller.name == name)
            {
                return Err(TokenError::Duplicate(n));
            }
            entries.push(Entry {
                token: token.to_owned(),
                digest: Sha256::digest(token.as_bytes()).into(),
                caller: Caller {
                    name,
                    role,
                    services,
                },
            });
        }
        Ok(Self { entries })
    }

    /// Finds the caller for a presented token. Every configured token is
    /// compared, in constant time, whatever matches: timing says nothing about
    /// which token (or how much of one) was right.
    /// Both sides are compared as SHA-256 digests (as
    /// [`tokens_equal`](config_manager_core::crypto::mac::tokens_equal) does),
    /// so neither length nor content leaks.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        let presented = Sha256::digest(presented.as_bytes());
        let mut found = None;
        for e in &self.entries {
            if constant_time_eq(&presented, &e.digest) && found.is_none() {
                found = Some(e.caller.clone());
            }
        }
        found
    }

    /// Number of configured tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Audit name of an unnamed token: a short hash, not the token.
pub fn default_name(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    format!("token-{}", &hex::encode(digest)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "aaaaaaaaaaaaaaaa1";
    const T2: &str = "bbbbbbbbbbbbbbbb2";

    #[test]
    fn parses_plain_named_and_scoped() {
        let t = TokenTable::parse(&format!(
            "{T1}:config.read, ops={T2}:config.write, tts=cccccccccccccccc3:config.read:tts-worker+stt-worker"
        ))
        .unwrap();
        let c = t.authenticate(T1).unwrap();
        assert_eq!(c.role, Role::Read);
        assert!(c.name.starts_with("token-") && !c.name.contains(T1));
        assert_eq!(t.authenticate(T2).unwrap().name, "ops");
        let scoped = t.authenticate("cccccccccccccccc3").unwrap();
        assert!(scoped.may_access("tts-worker") && !scoped.may_access("router"));
        assert!(scoped.may_read_secrets_of("stt-worker"));
        assert!(t.authenticate("nope").is_none());
        assert!(t.authenticate("").is_none());
    }

    #[test]
    fn rejects_bad_tables_without_echoing_tokens() {
        for (raw, want) in [
            ("", TokenError::Empty(1)),
            ("abc", TokenError::Shape(1)),
            (&format!("{T1}:admin") as &str, TokenError::Role(1)),
            ("short:config.read", TokenError::Short(1)),
            (&format!("{T1} x:config.read"), TokenError::Charset(1)),
            (
                &format!("{T1}:config.read,{T1}:config.write"),
                TokenError::Duplicate(2),
            ),
            (&format!("b@d={T1}:config.read"), TokenError::Name(1)),
            (&format!("{T1}:config.read:../etc"), TokenError::Name(1)),
        ] {
            let err = TokenTable::parse(raw).err().unwrap();
            assert_eq!(err, want, "{raw}");
            assert!(!err.to_string().contains(T1));
        }
    }
}
