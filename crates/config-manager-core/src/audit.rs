//! The words of audit rows: what was done (`action`) and how it ended
//! (`outcome`). Closed sets with one spelling each, used by every writer of
//! audit rows; the strings are the ones stored so far, so existing rows,
//! filters (`?action=config.`) and API output are unchanged. Reading keeps
//! plain strings (a database may hold words of another release).

use serde::{Serialize, Serializer};

use crate::change_type::ChangeType;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_actions_are_config_dot_change_type() {
        for c in [
            ChangeType::Update,
            ChangeType::Schema,
            ChangeType::Rebuild,
            ChangeType::Restore,
            ChangeType::Profile,
            ChangeType::Seed,
            ChangeType::Import,
        ] {
            assert_eq!(AuditAction::Config(c).as_str(), format!("config.{c}"));
        }
    }
}
