//! The domain operations of config-manager, on top of the store and the schema
//! registry: effective values with their sources, validated writes with
//! optimistic locking, restores, profiles and search.
//!
//! Everything here is synchronous; the service runs it on blocking threads.

mod effective;
mod env_import;
mod error;
mod evolve;
mod profiles;
mod restore;
mod rotation;
mod search;
mod snapshot;
mod transfer;
mod write;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use effective::{compose, ComposeContext, EffectiveConfig, SecretView, ServiceState};
pub use env_import::{
    parse_dotenv, EnvImportChange, EnvImportOutcome, EnvImportRequest, EnvImportSkip,
    MAX_DOTENV_BYTES, MAX_DOTENV_VARIABLES,
};
pub use error::ManagerError;
pub use evolve::{SchemaMismatch, SchemaReport};
pub use profiles::validate_profile_name;
pub use restore::RestoreOutcome;
pub use rotation::{KeyCensus, ROTATION_BATCH};
pub use search::{search_checked, search_items, SearchHit, SearchQuery};
pub use snapshot::{FallbackView, SeedReport};
pub use transfer::{
    ExportDocument, ExportOptions, ExportedProfile, ExportedService, ImportOptions, ImportOutcome,
    ImportedService, EXPORT_FORMAT, EXPORT_FORMAT_VERSION,
};
pub use write::{PutRequest, WriteOutcome};

use crate::change_type::ChangeType;
use crate::crypto::secret_box::SecretKeyRing;
use crate::domain::{Epoch, ServiceName, Version};
use crate::schema::{
    EnvOverrides, EnvPolicy, SchemaOrigin, SchemaRegistry, SchemaView, ServiceSchema,
};
use crate::store::{ConfigItem, ConfigWrite, Store, StoredConfig};

/// Looks up an environment variable; injectable so tests need not touch the
/// process environment.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment as an [`EnvLookup`].
pub fn process_env() -> EnvLookup {
    Arc::new(|name| std::env::var(name).ok())
}

/// `schema`'s environment overrides, reading only the variables `policy`
/// lets a schema of its origin read (the others count as unset). Every
/// override the manager applies comes from here.
pub(crate) fn policed_env(
    schema: &ServiceSchema,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    policy: &EnvPolicy,
) -> EnvOverrides {
    let origin = schema.origin();
    schema.resolve_env(&|name: &str| {
        if policy.check(name, origin).is_ok() {
            env(name)
        } else {
            None
        }
    })
}

impl ManagerOptions {
    /// `schema`'s environment overrides under this manager's policy.
    pub(crate) fn env_overrides(&self, schema: &ServiceSchema) -> EnvOverrides {
        policed_env(schema, &*self.env, &self.env_policy)
    }
}

/// Options that change what the manager accepts.
#[derive(Clone)]
pub struct ManagerOptions {
    /// Accept writes to services that have no schema (stored as free-form objects).
    pub allow_unknown_services: bool,
    pub env: EnvLookup,
    /// Which variables `x-env` fields may read through `env` (see
    /// [`EnvPolicy`]); every read of an override goes through it.
    pub env_policy: Arc<EnvPolicy>,
    /// Key ring for secret fields; `None` makes secret writes fail clearly.
    pub secrets: Option<Arc<SecretKeyRing>>,
    /// On an incompatible schema change, reset only the failing fields to
    /// their defaults instead of refusing writes (`ALLOW_AUTO_REBUILD=1`).
    pub auto_fix_schema: bool,
}

impl std::fmt::Debug for ManagerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerOptions")
            .field("allow_unknown_services", &self.allow_unknown_services)
            .finish_non_exhaustive()
    }
}

/// The configuration manager over one database.
#[derive(Debug)]
pub struct Manager {
    store: Arc<Store>,
    schemas: SchemaRegistry,
    options: ManagerOptions,
    epoch: Epoch,
    schema_version: i64,
    schema_report: SchemaReport,
    search_index: search::SearchIndex,
}

/// Result alias of the manager.
pub type Result<T, E = ManagerError> = std::result::Result<T, E>;

impl Manager {
    /// Opens the manager: gives a new database its epoch, records the schema
    /// hash, and stores the defaults of every schema'd service that has no
    /// configuration yet as version 1.
    pub fn open(store: Store, schemas: SchemaRegistry, options: ManagerOptions) -> Result<Self> {
        Self::open_shared(Arc::new(store), schemas, options)
    }

    /// [`Manager::open`] over a store that another manager shares (a schema
    /// registration builds a new manager over the same database).
    fn open_shared(
        store: Arc<Store>,
        mut schemas: SchemaRegistry,
        options: ManagerOptions,
    ) -> Result<Self> {
        let mut invalid_registered = Vec::new();
        for (service, document) in store.list_registered_schemas()? {
            let compiled = ServiceName::parse(&service)
                .map_err(|e| e.to_string())
                .and_then(|name| {
                    ServiceSchema::from_json_str(name, &document).map_err(|e| e.to_string())
                });
            match compiled {
                // Registered over the API, whenever that was: the API rules
                // for `x-env` apply (see `policed_env`).
                Ok(schema) => schemas.register(schema.with_origin(SchemaOrigin::Api)),
                Err(reason) => invalid_registered.push(SchemaMismatch {
                    service,
                    errors: vec![crate::schema::FieldError::new(
                        "",
                        format!("registered schema no longer compiles: {reason}"),
                    )],
                }),
            }
        }
        let epoch = match store.find_epoch()? {
            Some(info) => info.config_epoch,
            None => {
                let epoch = Epoch::generate();
                store.init_epoch(&epoch, None, "created")?;
                epoch
            }
        };
        let recorded = store.find_schema_version()?;
        let auto_fix = options.auto_fix_schema;
        let mut manager = Self {
            store,
            schemas,
            options,
            epoch,
            schema_version: recorded.as_ref().map_or(0, |v| v.version),
            schema_report: SchemaReport::default(),
            search_index: search::SearchIndex::default(),
        };
        match recorded {
            None => {
                manager.schema_version = manager
                    .store
                    .record_schema_hash(&manager.schemas.hash(), None)?
                    .version;
            }
            Some(v) => manager.schema_report = manager.evolve_schemas(&v.schema_hash, auto_fix)?,
        }
        manager.schema_report.mismatches.extend(invalid_registered);
        manager.seed_defaults()?;
        manager.scrub_profile_secrets()?;
        Ok(manager)
    }

    /// Registers (or replaces) a service's schema at run time and returns the
    /// manager to use from now on. The stored values of the service must
    /// satisfy the new schema once its defaults are filled in; otherwise the
    /// registration is refused with the failing fields and nothing changes.
    /// `document` is the schema's JSON text (kept as sent, so field order —
    /// the order of the generated form — survives).
    pub fn register_schema(
        &self,
        name: &ServiceName,
        document: &str,
        actor: &str,
    ) -> Result<Manager> {
        let schema = ServiceSchema::from_json_str(name.clone(), document)
            .map_err(|e| {
                ManagerError::Validation(vec![crate::schema::FieldError::new("", e.to_string())])
            })?
            .with_origin(SchemaOrigin::Api);
        let view = schema.view();
        let refused: Vec<crate::schema::FieldError> = view
            .fields()
            .iter()
            .filter_map(|f| {
                let var = f.env_var.as_deref()?;
                let refusal = self
                    .options
                    .env_policy
                    .check(var, SchemaOrigin::Api)
                    .err()?;
                Some(crate::schema::FieldError::new(
                    format!("/properties/{}/x-env", f.key),
                    refusal.to_string(),
                ))
            })
            .collect();
        if !refused.is_empty() {
            return Err(ManagerError::Validation(refused));
        }
        let name = name.clone();
        let stored = self.stored_or_empty(&name)?;
        if let Some(stored) = &stored {
            let candidate = strip_secrets(&view, view.with_defaults(&stored.config));
            schema
                .validate(&Value::Object(candidate))
                .map_err(ManagerError::Validation)?;
        }
        // The configuration the new schema would publish (stored values or
        // none, its defaults, the overrides it may read) must fit an MQTT
        // config message, or it would be saved and never published (issue
        // 14, finding 12, reached through defaults instead of a write).
        let mut published = strip_secrets(
            &view,
            view.with_defaults(&stored.map(|s| s.config).unwrap_or_default()),
        );
        for (key, value) in self.options.env_overrides(&schema).values {
            if !view.is_secret(&key) {
                published.insert(key, value);
            }
        }
        if let Some(e) = write::size_error(&published) {
            return Err(ManagerError::Validation(vec![e]));
        }
        self.store.save_registered_schema(&name, document, actor)?;
        let mut schemas = self.schemas.clone();
        schemas.register(schema);
        Self::open_shared(self.store.clone(), schemas, self.options.clone())
    }

    fn seed_defaults(&self) -> Result<()> {
        let existing: BTreeSet<String> = self
            .store
            .list_configs()?
            .into_iter()
            .map(|c| c.service.to_string())
            .collect();
        let writes: Vec<ConfigWrite> = self
            .schemas
            .names()
            .into_iter()
            .filter(|n| !existing.contains(n.as_str()))
            .filter_map(|n| self.schemas.get(n.as_str()))
            .map(|schema| {
                let view = schema.view();
                let config = strip_secrets(&view, view.defaults().clone());
                ConfigWrite {
                    service: schema.name().clone(),
                    items: items_for(schema.name(), &view, &config),
                    config,
                    expected_version: Some(Version::NONE),
                    actor: "system".into(),
                    reason: Some("defaults from the service schema".into()),
                    change_type: ChangeType::Seed,
                    secrets: vec![],
                }
            })
            .collect();
        if !writes.is_empty() {
            self.store.save_configs(&writes, &self.epoch)?;
        }
        Ok(())
    }

    /// Every `x-env` variable a loaded schema names but may not read, as
    /// `service/key: reason` (logged at start-up: a schema registered before
    /// the rules existed, or a schema file naming a reserved variable).
    pub fn env_refusals(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in self.schemas.names() {
            let Some(schema) = self.schemas.get(name.as_str()) else {
                continue;
            };
            // The document is compact JSON, so a field naming a variable
            // shows as `"x-env":`; most schemas name none, and their views
            // need not be derived (this runs over every schema at start-up).
            if !schema.document_text().contains("\"x-env\":") {
                continue;
            }
            for f in schema.view().fields() {
                let Some(var) = f.env_var.as_deref() else {
                    continue;
                };
                if let Err(why) = self.options.env_policy.check(var, schema.origin()) {
                    out.push(format!("{name}/{}: {why}", f.key));
                }
            }
        }
        out
    }

    /// The underlying store (for health checks and maintenance).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The loaded schemas.
    pub fn schemas(&self) -> &SchemaRegistry {
        &self.schemas
    }

    /// The options this manager was opened with (to open another one alike).
    pub fn options(&self) -> &ManagerOptions {
        &self.options
    }

    /// This database's epoch.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// What the start-up schema check found; `mismatches` non-empty means the
    /// stored values do not satisfy the loaded schemas (read-only until fixed).
    pub fn schema_report(&self) -> &SchemaReport {
        &self.schema_report
    }

    /// The current schema version (bumped whenever the loaded schemas change).
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    /// Every known service: those with a schema and those with stored
    /// config, in name order.
    pub fn list_services(&self) -> Result<Vec<ServiceName>> {
        let mut names: BTreeSet<ServiceName> = self.schemas.names().into_iter().collect();
        names.extend(self.store.list_configs()?.into_iter().map(|c| c.service));
        Ok(names.into_iter().collect())
    }

    /// Resolves a client-supplied service name: it must be well-formed and
    /// either have a schema or (when allowed) stored config.
    pub fn resolve_service(&self, raw: &str) -> Result<ServiceName> {
        let name = ServiceName::parse(raw).map_err(|e| ManagerError::InvalidName {
            what: "service name",
            reason: e.to_string(),
        })?;
        if self.schemas.get(name.as_str()).is_some() || self.options.allow_unknown_services {
            return Ok(name);
        }
        match self.store.get_config(&name) {
            Ok(_) => Ok(name),
            Err(crate::store::StoreError::NotFound(_)) => {
                Err(ManagerError::UnknownService(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn stored_or_empty(&self, service: &ServiceName) -> Result<Option<StoredConfig>> {
        match self.store.get_config(service) {
            Ok(c) => Ok(Some(c)),
            Err(crate::store::StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Removes secret fields from a stored configuration: their values live
/// encrypted in the secrets table only.
fn strip_secrets(view: &SchemaView, mut config: Map<String, Value>) -> Map<String, Value> {
    for key in view.secret_keys() {
        config.remove(key);
    }
    config
}

/// Search-index rows for a stored configuration (secret values never indexed).
fn items_for(
    service: &ServiceName,
    view: &SchemaView,
    stored: &Map<String, Value>,
) -> Vec<ConfigItem> {
    let mut items: Vec<ConfigItem> = view
        .fields()
        .iter()
        .map(|f| ConfigItem {
            service: service.clone(),
            key: f.key.clone(),
            value: if f.is_secret {
                None
            } else {
                Some(
                    stored
                        .get(&f.key)
                        .cloned()
                        .unwrap_or_else(|| f.default.clone()),
                )
            },
            r#type: f.r#type.clone(),
            complexity: match f.complexity {
                crate::domain::Complexity::Simple => "simple".into(),
                crate::domain::Complexity::Advanced => "advanced".into(),
            },
            description: f.description.clone(),
            is_secret: f.is_secret,
        })
        .collect();
    items.sort_by(|a, b| a.key.cmp(&b.key));
    items
}

/// Search-index rows for a service without a schema: every stored key.
fn items_schemaless(service: &ServiceName, stored: &Map<String, Value>) -> Vec<ConfigItem> {
    stored
        .iter()
        .map(|(k, v)| ConfigItem {
            service: service.clone(),
            key: k.clone(),
            value: Some(v.clone()),
            r#type: crate::schema::json_type_name(v).into(),
            complexity: "simple".into(),
            description: String::new(),
            is_secret: false,
        })
        .collect()
}

#[cfg(test)]
mod evolve_tests;
#[cfg(test)]
mod input_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
