//! Writes that notify by construction: what a committed write changed, read
//! from its outcome, so the write path itself tells MQTT, the LKG cache, the
//! read cache and the applied-state board ([`AppState::write_blocking`]). A
//! handler cannot forget it: it only has the write runner, and the outcome
//! types of the manager's writes say which services they changed.

use config_manager_core::domain::ServiceName;
use config_manager_core::manager::{
    EnvImportOutcome, ImportOutcome, Manager, RestoreOutcome, WriteOutcome,
};
use config_manager_core::store::StoredConfig;

use crate::state::AppState;
use crate::ServiceFailure;

/// The services whose stored configuration a committed write changed (none
/// for a dry run or a write that changed nothing).
pub trait Changes {
    fn changed_services(&self) -> Vec<ServiceName>;
}

impl Changes for WriteOutcome {
    fn changed_services(&self) -> Vec<ServiceName> {
        if self.changed {
            vec![self.stored.service.clone()]
        } else {
            Vec::new()
        }
    }
}

impl Changes for EnvImportOutcome {
    fn changed_services(&self) -> Vec<ServiceName> {
        if self.written {
            vec![self.service.clone()]
        } else {
            Vec::new()
        }
    }
}

impl Changes for RestoreOutcome {
    fn changed_services(&self) -> Vec<ServiceName> {
        vec![self.service.clone()]
    }
}

impl Changes for ImportOutcome {
    fn changed_services(&self) -> Vec<ServiceName> {
        if self.dry_run {
            return Vec::new();
        }
        self.services_updated
            .iter()
            .map(|s| s.service.clone())
            .collect()
    }
}

/// Configurations written (point-in-time restore, profile activation).
impl Changes for Vec<StoredConfig> {
    fn changed_services(&self) -> Vec<ServiceName> {
        self.iter().map(|c| c.service.clone()).collect()
    }
}

/// An outcome with something the handler reads alongside it (the epoch).
impl<T: Changes, U> Changes for (T, U) {
    fn changed_services(&self) -> Vec<ServiceName> {
        self.0.changed_services()
    }
}

impl AppState {
    /// [`AppState::run_blocking`] for writes: after the commit, the services
    /// the outcome names are notified (`AppState::notify_changed`) before
    /// the caller gets the outcome (so before any response is sent).
    pub async fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Changes + Send + 'static,
        E: ServiceFailure,
        F: FnOnce(&Manager) -> Result<T, E> + Send + 'static,
    {
        let outcome = self.run_blocking(f).await?;
        self.notify_changed(&outcome.changed_services()).await;
        Ok(outcome)
    }

    /// Installs a manager built by a schema registration and notifies the
    /// service it registered (after the swap, so the publisher reads the new
    /// schema's defaults).
    pub async fn install_manager(&self, manager: Manager, registered: &ServiceName) {
        self.replace_manager(manager);
        self.notify_changed(std::slice::from_ref(registered)).await;
    }
}

#[cfg(test)]
mod tests {
    use config_manager_core::manager::ImportedService;

    use super::*;

    fn import(dry_run: bool) -> ImportOutcome {
        ImportOutcome {
            services_updated: vec![ImportedService {
                service: ServiceName::parse("router").unwrap(),
                version: config_manager_core::domain::Version::new(2).unwrap(),
            }],
            services_unchanged: vec![ServiceName::parse("tts-worker").unwrap()],
            profiles_saved: Vec::new(),
            secrets_written: Vec::new(),
            dry_run,
        }
    }

    #[test]
    fn an_import_changes_what_it_updated_unless_it_was_a_dry_run() {
        let router = vec![ServiceName::parse("router").unwrap()];
        assert_eq!(import(false).changed_services(), router);
        assert!(import(true).changed_services().is_empty());
        assert_eq!((import(false), "epoch").changed_services(), router);
    }
}
