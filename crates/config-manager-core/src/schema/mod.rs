//! Service schemas: one JSON Schema document per service describes its settings
//! (types, defaults, ranges, help text, secret and advanced markers, environment
//! overrides). The [`SchemaRegistry`] is the single definition of "valid": the
//! REST API, the store, profile activation and rebuild seeding all validate
//! through it, and the web form is generated from the same [`FieldMeta`].
//!
//! # Documents
//!
//! Schemas are **JSON Schema draft 2020-12** (a document may select another
//! draft with `$schema`; the built-ins declare 2020-12). A service schema must
//! be an object schema, `"type": "object"`, whose top-level `properties` are the
//! service's settings; property names must pass [`crate::domain::validate_key`].
//! The built-in ones also set `"additionalProperties": false`, so unknown keys
//! are rejected; a schema that leaves it out accepts them.
//!
//! Standard keywords carry the rules: `type` (`"number"` for floats,
//! `"integer"` for whole numbers, `["string", "null"]` for nullable fields),
//! `default`, `minimum`/`maximum`, `exclusiveMinimum`/`exclusiveMaximum`,
//! `enum`, `pattern`, `minLength`/`maxLength`, `format` (asserted: `"uri"`
//! must be a URI), `title`, `description`, `examples`. External `$ref`s are not
//! resolved (no network or file access while compiling).
//!
//! Extension keywords (all optional, all checked when a schema is compiled):
//!
//! | keyword | meaning |
//! |---|---|
//! | `writeOnly: true` + `x-secret: true` | a secret: stored encrypted, masked in every read, revealed only by the audited reveal call. Either marker alone also counts. Secrets must be strings (optionally nullable) and their default must be `null` or `""`. |
//! | `x-complexity: "simple"` \| `"advanced"` | which view of the form shows the field; missing means simple. |
//! | `x-env: "VAR_NAME"` | an environment variable of the config-manager (`^[A-Z][A-Z0-9_]*$`) that overrides the stored value; the field is then read-only. Which variables may be read is decided by [`EnvPolicy`] (never the service's own settings; API-registered schemas only what `CONFIG_ENV_ALLOW` allows). |
//! | `x-service-env: ["VAR", …]` | the environment variable(s) the **service** reads the setting from (1 to 8 names matching `^[A-Za-z_][A-Za-z0-9_]{0,127}$`, no repeats; first = primary, the rest aliases). config-agent sets all of them; `import-env` maps them back to the field. Absent: the key upper-cased. Unrelated to `x-env`. |
//! | `x-unused: true` | no code of the service reads the setting; kept so stored configurations and the service's model still fit. The form says so. |
//! | `x-group: "Voice"` | the title of the form section the field is shown in (1 to 60 characters, no control characters). Fields without it come first, in an unnamed section. Display only. |
//! | `x-show-when: {"field": "tts_provider", "equals": "elevenlabs"}` | the form shows the field only while the named field has that value (or one of an array of 1 to 16 values). The named field must exist, be neither secret nor conditional itself, and be able to take each value. Display only: a hidden field keeps its value, is saved as-is and is validated as always. |
//! | `x-help` | longer help text for the form's tooltip; [`FieldMeta::help_text`] falls back to `description`. |
//! | `x-type` | UI type hint where the JSON type is too coarse: `path`, `secret`, `enum` (or a plain JSON type). |
//!
//! # Compiling
//!
//! [`ServiceSchema::compile`] (or [`ServiceSchema::from_json_str`], which also
//! keeps the document's field order) checks the document against the draft's
//! meta-schema, builds the validator once, extracts [`FieldMeta`] for every
//! property, and refuses a schema whose own defaults fail it: such a schema
//! could never produce a saveable configuration.
//!
//! Only the document is kept per schema (as text). What is built from it —
//! the compiled validator and the [`SchemaView`] with the [`FieldMeta`] of
//! every field and the defaults — is kept by [`cache`] for the most recently
//! used schemas (`CONFIG_SCHEMA_CACHE_SIZE`, default 256), and a schema
//! builds it again when it was evicted. At start-up the
//! service loads `CONFIG_SCHEMA_DIR` with [`SchemaRegistry::load_dir_deferred`]
//! (every check but the two that need a validator) and then
//! [`SchemaRegistry::check_pending`]: when the database recorded this very
//! schema set (same [`SchemaRegistry::hash`]), every schema in it passed
//! those checks when the hash was recorded, so nothing is compiled;
//! otherwise every deferred schema is compiled and checked before the
//! database is opened, as before.
//!
//! # Validation errors
//!
//! [`ServiceSchema::validate`] reports every failing field as a [`FieldError`]
//! with an RFC 6901 pointer (`/volume_percent`): one error per unknown key
//! (`/that_key`, "unknown field"), one per broken rule otherwise, and a single
//! error with pointer `""` when the configuration is not an object. Messages
//! are built from the schema's rules and the value's *type* only, never from the
//! submitted value (it may be a secret or huge), and are capped at
//! [`error::MAX_MESSAGE_CHARS`] characters.
//!
//! # Environment overrides
//!
//! [`ServiceSchema::resolve_env`] reads each `x-env` variable through a lookup
//! function and parses it into the field's type (booleans accept
//! `1/0/true/false/yes/no`; a nullable field reads an empty value or `null` as
//! `null`). The parsed value must also satisfy the field's rules. A value that
//! fails either step is **skipped, not fatal**: it is returned in
//! [`EnvOverrides::errors`] (also available as
//! [`ServiceSchema::env_override_errors`]) and the stored or default value stays
//! in effect. [`ServiceSchema::env_overrides`] returns just the usable values.
//! Precedence of the effective value is environment > database > default.
//!
//! # Built-in schemas and the registry
//!
//! The six TARS services (`llm-worker`, `memory-worker`, `router`,
//! `stt-worker`, `tts-worker`, `wake-activation`) ship in the crate's
//! `schemas/` directory and are embedded with `include_str!`
//! ([`SchemaRegistry::builtin`]). [`SchemaRegistry::load_dir`] adds (or
//! replaces) schemas from `<service>.json` files, all-or-nothing.
//! [`SchemaRegistry::hash`] fingerprints the set for the database's
//! `schema_version` row.

pub mod cache;
mod env;
mod env_policy;
pub mod error;
mod field;
mod registry;
mod service_schema;
mod view;
/// For the manager's search rows (built with the `store` feature).
#[cfg(feature = "store")]
pub(crate) use env::{parse_integer, parse_number};
pub(crate) use service_schema::json_type_name;

#[cfg(test)]
mod tests;

pub use env_policy::{EnvPattern, EnvPatternError, EnvPolicy, EnvRefusal, SchemaOrigin};
pub use error::{FieldError, SchemaError};
pub use field::{
    valid_service_env_var, FieldMeta, ShowWhen, MAX_ENV_VAR_LEN, MAX_GROUP_CHARS,
    MAX_SERVICE_ENV_NAMES, MAX_SHOW_WHEN_VALUES, UI_TYPES,
};
pub use registry::{SchemaRegistry, BUILTIN_SCHEMAS, MAX_SCHEMA_FILE_BYTES};
pub use service_schema::{EnvOverrides, ServiceSchema};
pub use view::SchemaView;

/// Re-exported because [`FieldMeta::complexity`] uses it.
pub use crate::domain::Complexity;
