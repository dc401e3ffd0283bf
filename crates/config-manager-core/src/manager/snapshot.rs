//! The database as a last-known-good snapshot, and back: building the LKG
//! contents after a write, serving reads from a cache when the database is
//! unusable ([`FallbackView`]), and seeding a rebuilt database from a cache.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::effective::{compose, ComposeContext, EffectiveConfig, SecretView, ServiceState};
use super::search::{search_checked, SearchHit, SearchQuery};
use super::{items_for, items_schemaless, Manager, ManagerError, ManagerOptions, Result};
use crate::change_type::ChangeType;
use crate::domain::{Epoch, ServiceName, Version};
use crate::lkg::{LkgContents, LkgService};
use crate::schema::SchemaRegistry;
use crate::store::{ConfigItem, ConfigWrite, SecretChange, Store, StoredConfig};

impl Manager {
    /// Every service's state as LKG contents: stored values with defaults
    /// filled in, plus secrets in their sealed form (never clear text).
    /// O(all services): for a new snapshot; a write journals
    /// [`Manager::lkg_entries`] of what it changed.
    pub fn lkg_contents(&self) -> Result<LkgContents> {
        let mut contents = LkgContents::new(self.epoch.clone(), self.schemas.hash());
        let mut sealed: BTreeMap<ServiceName, BTreeMap<String, String>> = BTreeMap::new();
        for s in self.store.list_secrets(None)? {
            sealed
                .entry(s.service)
                .or_default()
                .insert(s.key, s.ciphertext);
        }
        for c in self.store.list_configs()? {
            let name = c.service.clone();
            let secrets = sealed.remove(&c.service).unwrap_or_default();
            contents.services.insert(name, self.lkg_entry(c, secrets));
        }
        Ok(contents)
    }

    /// The LKG entries of `services` as the database holds them now (`None`
    /// for a service without stored config): what the journal appends after
    /// a write, O(changed services).
    pub fn lkg_entries(
        &self,
        services: &[ServiceName],
    ) -> Result<Vec<(ServiceName, Option<LkgService>)>> {
        let mut out = Vec::with_capacity(services.len());
        for name in services {
            let entry = match self.store.get_config(name) {
                Ok(c) => {
                    let secrets = self
                        .store
                        .list_secrets(Some(name))?
                        .into_iter()
                        .map(|s| (s.key, s.ciphertext))
                        .collect();
                    Some(self.lkg_entry(c, secrets))
                }
                Err(crate::store::StoreError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            };
            out.push((name.clone(), entry));
        }
        Ok(out)
    }

    /// One service's entry: stored values with defaults, secrets sealed.
    fn lkg_entry(&self, c: StoredConfig, sealed: BTreeMap<String, String>) -> LkgService {
        let mut config = match self.schemas.get(&c.service) {
            Some(schema) => {
                let mut full = schema.with_defaults(&c.config);
                for key in schema.secret_keys() {
                    full.remove(key);
                }
                full
            }
            None => c.config,
        };
        config.extend(sealed.into_iter().map(|(k, v)| (k, Value::String(v))));
        LkgService {
            version: c.version,
            updated_at: c.updated_at,
            config,
        }
    }
}

/// Splits an LKG entry into stored values and sealed secrets.
fn state_from_lkg(
    schemas: &SchemaRegistry,
    epoch: &Epoch,
    name: &ServiceName,
    entry: &LkgService,
) -> ServiceState {
    let secret_keys: BTreeSet<String> = schemas
        .get(name.as_str())
        .map(|s| s.secret_keys().map(str::to_owned).collect())
        .unwrap_or_default();
    let mut stored = Map::new();
    let mut sealed_secrets = BTreeMap::new();
    for (k, v) in &entry.config {
        match (secret_keys.contains(k), v) {
            (true, Value::String(s)) => {
                sealed_secrets.insert(k.clone(), s.clone());
            }
            (true, _) => {}
            (false, v) => {
                stored.insert(k.clone(), v.clone());
            }
        }
    }
    ServiceState {
        service: name.clone(),
        stored,
        sealed_secrets,
        version: entry.version,
        updated_at: entry.updated_at.clone(),
        config_epoch: epoch.to_string(),
    }
}

/// Read-only view over a verified last-known-good cache: the same reads as
/// the manager, without a database. Used in read-only fallback.
pub struct FallbackView {
    schemas: SchemaRegistry,
    options: ManagerOptions,
    cache: LkgContents,
}

impl std::fmt::Debug for FallbackView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackView")
            .field("epoch", &self.cache.config_epoch)
            .field("services", &self.cache.services.len())
            .finish()
    }
}

impl FallbackView {
    pub fn new(schemas: SchemaRegistry, options: ManagerOptions, cache: LkgContents) -> Self {
        Self {
            schemas,
            options,
            cache,
        }
    }

    /// Epoch of the cached data.
    pub fn epoch(&self) -> &Epoch {
        &self.cache.config_epoch
    }

    /// When the cache was generated.
    pub fn generated_at(&self) -> &str {
        &self.cache.generated_at
    }

    /// Every service in the cache.
    pub fn list_services(&self) -> Vec<ServiceName> {
        self.cache.services.keys().cloned().collect()
    }

    /// Resolves a client-supplied service name against the cache.
    pub fn resolve_service(&self, raw: &str) -> Result<ServiceName> {
        let name = ServiceName::parse(raw).map_err(|e| ManagerError::InvalidName {
            what: "service name",
            reason: e.to_string(),
        })?;
        if self.cache.services.contains_key(&name) {
            Ok(name)
        } else {
            Err(ManagerError::UnknownService(name.to_string()))
        }
    }

    /// The effective configuration of `service` as of the cache.
    pub fn get_effective(
        &self,
        service: &ServiceName,
        view: SecretView,
        include_fields: bool,
    ) -> Result<EffectiveConfig> {
        let entry = self
            .cache
            .services
            .get(service)
            .ok_or_else(|| ManagerError::UnknownService(service.to_string()))?;
        let state = state_from_lkg(&self.schemas, &self.cache.config_epoch, service, entry);
        let schema = self.schemas.get(service.as_str());
        let ctx = ComposeContext {
            schema: schema.as_deref(),
            env: &*self.options.env,
            env_policy: &self.options.env_policy,
            secrets: self.options.secrets.as_deref(),
        };
        compose(&ctx, &state, view, include_fields)
    }

    /// Search over the cached values.
    pub fn search(&self, q: &SearchQuery) -> Result<(Vec<SearchHit>, usize)> {
        let mut items: Vec<ConfigItem> = Vec::new();
        for (name, entry) in &self.cache.services {
            let state = state_from_lkg(&self.schemas, &self.cache.config_epoch, name, entry);
            match self.schemas.get(name.as_str()) {
                Some(schema) => items.extend(items_for(name, &schema.view(), &state.stored)),
                None => items.extend(items_schemaless(name, &state.stored)),
            }
        }
        search_checked(items, q)
    }
}

/// What a rebuild seeded.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    /// `lkg` or `defaults`.
    pub seed_source: String,
    pub services_seeded: Vec<ServiceName>,
    /// `service/key` of secrets whose ciphertext no configured key can open.
    pub unrecoverable_secrets: Vec<String>,
}

impl Manager {
    /// Builds a manager over a brand-new database: gives it `epoch` (recording
    /// the previous one), seeds it from `cache` when given (values and sealed
    /// secrets that a configured key can still open), then fills every other
    /// schema'd service with defaults.
    pub fn rebuild_into(
        store: Store,
        schemas: SchemaRegistry,
        options: ManagerOptions,
        epoch: &Epoch,
        previous_epoch: Option<&str>,
        reason: &str,
        cache: Option<&LkgContents>,
    ) -> Result<(Manager, SeedReport)> {
        store.init_epoch(epoch, previous_epoch, reason)?;
        let mut report = SeedReport {
            seed_source: if cache.is_some() { "lkg" } else { "defaults" }.into(),
            services_seeded: Vec::new(),
            unrecoverable_secrets: Vec::new(),
        };
        if let Some(cache) = cache {
            let mut writes = Vec::new();
            for (name, entry) in &cache.services {
                let schema = schemas.get(name.as_str());
                if schema.is_none() && !options.allow_unknown_services {
                    continue;
                }
                let state = state_from_lkg(&schemas, &cache.config_epoch, name, entry);
                let mut secrets = Vec::new();
                for (key, sealed) in state.sealed_secrets {
                    let opens = options
                        .secrets
                        .as_deref()
                        .is_some_and(|ring| ring.open(name.as_str(), &key, &sealed).is_ok());
                    if opens {
                        secrets.push(SecretChange {
                            key,
                            sealed: Some((sealed.clone(), sealed_key_id(&sealed))),
                        });
                    } else {
                        report.unrecoverable_secrets.push(format!("{name}/{key}"));
                    }
                }
                let items = match &schema {
                    Some(s) => items_for(name, &s.view(), &state.stored),
                    None => items_schemaless(name, &state.stored),
                };
                writes.push(ConfigWrite {
                    service: name.clone(),
                    config: state.stored,
                    expected_version: Some(Version::NONE),
                    actor: "system".into(),
                    reason: Some(format!("{reason}: seeded from the last-known-good cache")),
                    change_type: ChangeType::Rebuild,
                    items,
                    secrets,
                });
                report.services_seeded.push(name.clone());
            }
            store.save_configs(&writes, epoch)?;
        }
        let manager = Manager::open(store, schemas, options)?;
        Ok((manager, report))
    }
}

fn sealed_key_id(sealed: &str) -> String {
    crate::crypto::secret_box::sealed_key_id(sealed)
        .map(|k| k.as_str().to_owned())
        .unwrap_or_default()
}
