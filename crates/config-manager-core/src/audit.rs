//! The words of audit rows: what was done (`action`) and how it ended
//! (`outcome`). Closed sets with one spelling each, used by every writer of
//! audit rows; the strings are the ones stored so far, so existing rows,
//! filters (`?action=config.`) and API output are unchanged. Rows are read
//! back as these enums; an unknown word is an error naming it
//! ([`UnknownWord`]).

use serde::{Serialize, Serializer};

#[cfg(feature = "store")]
use crate::change_type::from_sql_by_parse;
use crate::change_type::{ChangeType, UnknownWord};

/// What an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A configuration version written (`config.update`, `config.import`, ...).
    Config(ChangeType),
    ConfigExport,
    ConfigImportDryRun,
    /// A `.env` import (`import-env`), dry run or not; variable names only.
    ConfigImportEnv,
    SchemaRegister,
    ProfileSave,
    ProfileSecretsRemoved,
    ProfileDelete,
    SecretReveal,
    AccessDenied,
    SessionLogin,
    SessionLogout,
    DatabaseRebuild,
    DatabaseRestore,
    EpochFileMismatch,
    /// An operator forgot a retired instance's applied-state report.
    InstanceForget,
}

impl AuditAction {
    /// Every action but the `config.*` ones (those are
    /// [`AuditAction::Config`] of each [`ChangeType`]).
    const OTHERS: [AuditAction; 15] = [
        AuditAction::ConfigExport,
        AuditAction::ConfigImportDryRun,
        AuditAction::ConfigImportEnv,
        AuditAction::SchemaRegister,
        AuditAction::ProfileSave,
        AuditAction::ProfileSecretsRemoved,
        AuditAction::ProfileDelete,
        AuditAction::SecretReveal,
        AuditAction::AccessDenied,
        AuditAction::SessionLogin,
        AuditAction::SessionLogout,
        AuditAction::DatabaseRebuild,
        AuditAction::DatabaseRestore,
        AuditAction::EpochFileMismatch,
        AuditAction::InstanceForget,
    ];

    /// The action whose stored word is `word`.
    pub fn parse(word: &str) -> Result<Self, UnknownWord> {
        let all = ChangeType::ALL
            .into_iter()
            .map(AuditAction::Config)
            .chain(Self::OTHERS);
        UnknownWord::find("audit action", all, Self::as_str, word)
    }

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Config(c) => match c {
                ChangeType::Update => "config.update",
                ChangeType::Schema => "config.schema",
                ChangeType::Rebuild => "config.rebuild",
                ChangeType::Restore => "config.restore",
                ChangeType::Profile => "config.profile",
                ChangeType::Seed => "config.seed",
                ChangeType::Import => "config.import",
            },
            AuditAction::ConfigExport => "config.export",
            AuditAction::ConfigImportDryRun => "config.import_dry_run",
            AuditAction::ConfigImportEnv => "config.import_env",
            AuditAction::SchemaRegister => "schema.register",
            AuditAction::ProfileSave => "profile.save",
            AuditAction::ProfileSecretsRemoved => "profile.secrets_removed",
            AuditAction::ProfileDelete => "profile.delete",
            AuditAction::SecretReveal => "secret.reveal",
            AuditAction::AccessDenied => "access.denied",
            AuditAction::SessionLogin => "session.login",
            AuditAction::SessionLogout => "session.logout",
            AuditAction::DatabaseRebuild => "database.rebuild",
            AuditAction::DatabaseRestore => "database.restore",
            AuditAction::EpochFileMismatch => "epoch-file.mismatch",
            AuditAction::InstanceForget => "instance.forget",
        }
    }
}

/// How an audited operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    Ok,
    /// Refused by authentication or authorization.
    Denied,
    /// Refused by a check (a dry run that would fail).
    Refused,
    /// Failed.
    Error,
    /// Done despite failed checks (`restore --force`).
    Forced,
    /// Something found wrong was rewritten (the epoch file).
    Rewritten,
}

impl AuditOutcome {
    /// Every outcome.
    pub const ALL: [AuditOutcome; 6] = [
        AuditOutcome::Ok,
        AuditOutcome::Denied,
        AuditOutcome::Refused,
        AuditOutcome::Error,
        AuditOutcome::Forced,
        AuditOutcome::Rewritten,
    ];

    /// The outcome whose stored word is `word`.
    pub fn parse(word: &str) -> Result<Self, UnknownWord> {
        UnknownWord::find("audit outcome", Self::ALL, Self::as_str, word)
    }

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Refused => "refused",
            AuditOutcome::Error => "error",
            AuditOutcome::Forced => "forced",
            AuditOutcome::Rewritten => "rewritten",
        }
    }
}

macro_rules! display_and_serialize {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    )*};
}

display_and_serialize!(AuditAction, AuditOutcome);
#[cfg(feature = "store")]
from_sql_by_parse!(AuditAction, AuditOutcome);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_actions_are_config_dot_change_type() {
        for c in ChangeType::ALL {
            assert_eq!(AuditAction::Config(c).as_str(), format!("config.{c}"));
        }
    }

    #[test]
    fn every_word_reads_back_as_itself() {
        let actions: Vec<AuditAction> = ChangeType::ALL
            .into_iter()
            .map(AuditAction::Config)
            .chain(AuditAction::OTHERS)
            .collect();
        for a in &actions {
            // A new variant must join `OTHERS` (this match stops compiling).
            match a {
                AuditAction::Config(_)
                | AuditAction::ConfigExport
                | AuditAction::ConfigImportDryRun
                | AuditAction::ConfigImportEnv
                | AuditAction::SchemaRegister
                | AuditAction::ProfileSave
                | AuditAction::ProfileSecretsRemoved
                | AuditAction::ProfileDelete
                | AuditAction::SecretReveal
                | AuditAction::AccessDenied
                | AuditAction::SessionLogin
                | AuditAction::SessionLogout
                | AuditAction::DatabaseRebuild
                | AuditAction::DatabaseRestore
                | AuditAction::EpochFileMismatch
                | AuditAction::InstanceForget => {}
            }
            assert_eq!(AuditAction::parse(a.as_str()), Ok(*a));
        }
        assert_eq!(actions.len(), 22);
        for o in AuditOutcome::ALL {
            assert_eq!(AuditOutcome::parse(o.as_str()), Ok(o));
        }
        for c in ChangeType::ALL {
            assert_eq!(ChangeType::parse(c.as_str()), Ok(c));
        }
    }

    #[test]
    fn unknown_words_are_errors_naming_them() {
        let e = AuditAction::parse("config.teleport").unwrap_err();
        assert_eq!(e.to_string(), "unknown audit action 'config.teleport'");
        let e = AuditOutcome::parse("OK").unwrap_err();
        assert_eq!(e.to_string(), "unknown audit outcome 'OK'");
        let e = ChangeType::parse("up\ndate").unwrap_err();
        assert_eq!(e.to_string(), "unknown change type 'up\\ndate'");
        assert!(AuditAction::parse("").is_err());
    }
}
