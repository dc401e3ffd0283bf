//! One service schema: the document, kept as text, and its place in the
//! cache of what is built from it (the validator and the [`SchemaView`]), so
//! memory follows the schemas in use, not the number of schemas.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, ValidationError, Validator};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::ServiceName;

use super::cache::Slot;
use super::env::parse_env_value;
use super::env_policy::SchemaOrigin;
use super::error::{truncate_chars, FieldError, SchemaError};
use super::field::{shown_key, ParsedField};
use super::view::{properties, SchemaView};

/// Typed environment overrides of one service, with the variables that were set
/// but could not be used.
///
/// A bad override is skipped (the database or default value stays in effect) and
/// listed in `errors` with the field's pointer, so the caller can log it at
/// start-up and show it in health output instead of refusing to run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvOverrides {
    /// Field key → typed, schema-valid value.
    pub values: Map<String, Value>,
    /// One entry per variable that was set but unusable; the message names the
    /// variable but never its value (it may be a secret).
    pub errors: Vec<FieldError>,
}

/// A service's schema. Cheap to share behind an `Arc` (the registry does);
/// immutable once built, so a schema change means a new `ServiceSchema`.
///
/// Only the document is kept per schema; the validator and the
/// [`SchemaView`] (field metadata, defaults) are built from it when first
/// needed and kept for the most recently used schemas ([`super::cache`]).
pub struct ServiceSchema {
    name: ServiceName,
    /// The document as compact JSON with keys sorted at every level (what
    /// the registry hashes). Kept as text, parsed when needed: as a parsed
    /// `Value` it was ~60 KiB of a 50-field schema's ~110 KiB.
    document: Box<str>,
    /// The fields' order (the order the schema author chose for the form),
    /// which the sorted text lost: for each field in order, its position
    /// among the property names sorted. Empty when that order is sorted.
    order: Box<[u32]>,
    /// The view's defaults as compact JSON and the secret fields' keys: all
    /// that a pass over every service needs (the last-known-good snapshot at
    /// start-up), so such a pass derives no view.
    defaults: Box<str>,
    secret_keys: Box<[Box<str>]>,
    /// The validator's and the view's place in the bounded cache
    /// ([`super::cache`]): built when first needed, dropped when not used
    /// recently.
    cached: Slot,
    /// Who wrote the schema (decides what its `x-env` fields may read).
    origin: SchemaOrigin,
}

impl fmt::Debug for ServiceSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceSchema")
            .field("name", &self.name)
            .field("document_bytes", &self.document.len())
            .finish_non_exhaustive()
    }
}

impl ServiceSchema {
    /// Compiles a schema document for `name`.
    ///
    /// Fields come out in the order of `doc`'s object map; since `serde_json`
    /// sorts keys by default, prefer [`ServiceSchema::from_json_str`] when the
    /// document's own field order should reach the form.
    ///
    /// Fails with [`SchemaError::Invalid`] when the document is not a JSON
    /// Schema, not `"type": "object"`, has a property whose name fails
    /// [`crate::domain::validate_key`], misuses an `x-` keyword, or has defaults
    /// that its own rules reject: each of those is a schema bug that would
    /// otherwise surface later as unsaveable configurations.
    pub fn compile(name: ServiceName, doc: Value) -> Result<Self, SchemaError> {
        Self::compile_ordered(name, doc, None, true)
    }

    /// Parses and compiles a schema from JSON text, keeping the order in which
    /// the text lists the properties for [`SchemaView::fields`] (the order the
    /// schema author chose for the form).
    pub fn from_json_str(name: ServiceName, text: &str) -> Result<Self, SchemaError> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| SchemaError::invalid(name.as_str(), format!("not valid JSON: {e}")))?;
        let order = property_order(text);
        Self::compile_ordered(name, doc, order, true)
    }

    /// [`ServiceSchema::from_json_str`] without the two checks that need a
    /// compiled validator (the document against its draft's meta-schema, and
    /// the defaults against the document): the field metadata, the integer
    /// rule of the defaults and every structural check still run. For
    /// start-up, where a schema set the database already recorded was
    /// checked before ([`super::SchemaRegistry::check_pending`]); call
    /// [`ServiceSchema::check`] before trusting any other.
    pub fn from_json_str_deferred(name: ServiceName, text: &str) -> Result<Self, SchemaError> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| SchemaError::invalid(name.as_str(), format!("not valid JSON: {e}")))?;
        let order = property_order(text);
        Self::compile_ordered(name, doc, order, false)
    }

    /// The checks [`ServiceSchema::from_json_str_deferred`] left out:
    /// compiles the validator (it stays in the cache) and validates the
    /// defaults with it.
    pub fn check(&self) -> Result<(), SchemaError> {
        let service = self.name.as_str();
        let validator = build_validator(&self.document())
            .map_err(|e| SchemaError::invalid(service, format!("not a valid JSON Schema: {e}")))?;
        self.cached.put_validator(Arc::new(validator));
        self.check_defaults(&self.view())
    }

    /// The defaults must satisfy the schema: otherwise it could never
    /// produce a saveable configuration.
    fn check_defaults(&self, view: &SchemaView) -> Result<(), SchemaError> {
        if let Err(errors) = self.validate(&Value::Object(view.defaults().clone())) {
            let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(SchemaError::invalid(
                self.name.as_str(),
                format!(
                    "the defaults do not satisfy the schema: {}",
                    listed.join("; ")
                ),
            ));
        }
        Ok(())
    }

    fn compile_ordered(
        name: ServiceName,
        doc: Value,
        order: Option<Vec<String>>,
        check: bool,
    ) -> Result<Self, SchemaError> {
        let service = name.as_str();
        let props = properties(service, &doc)?;
        let validator = if check {
            Some(build_validator(&doc).map_err(|e| {
                SchemaError::invalid(service, format!("not a valid JSON Schema: {e}"))
            })?)
        } else {
            None
        };
        let listed: Vec<&str> = order.iter().flatten().map(String::as_str).collect();
        let view = SchemaView::derive(service, &doc, &listed)?;
        let order = sorted_positions(props, &view);
        let mut text = String::new();
        super::registry::write_sorted_json(&doc, &mut text);
        let schema = Self {
            name,
            document: text.into_boxed_str(),
            order,
            defaults: Value::Object(view.defaults().clone())
                .to_string()
                .into_boxed_str(),
            secret_keys: view.secret_keys().map(Box::from).collect(),
            cached: Slot::new(),
            origin: SchemaOrigin::Operator,
        };
        // Cached now (the defaults are checked with it just below; a
        // start-up that loads more schemas than the cache holds keeps the
        // last ones). The view is not: it is derived again when first used.
        if let Some(validator) = validator {
            schema.cached.put_validator(Arc::new(validator));
        }
        if check {
            schema.check_defaults(&view)?;
        }
        Ok(schema)
    }

    /// The same schema marked as written by `origin` (compiled schemas are
    /// the operator's until marked otherwise).
    pub fn with_origin(self, origin: SchemaOrigin) -> Self {
        Self { origin, ..self }
    }

    /// Moves this schema's cached validator and view into `cache` (the
    /// registry's, on registration).
    pub(super) fn attach_cache(&mut self, cache: &Arc<super::cache::SchemaCache>) {
        self.cached.attach(cache);
    }

    /// This schema's place in the cache (tests).
    #[cfg(test)]
    pub(super) fn cache_slot(&self) -> &Slot {
        &self.cached
    }

    /// Who wrote this schema.
    pub fn origin(&self) -> SchemaOrigin {
        self.origin
    }

    /// The service this schema describes.
    pub fn name(&self) -> &ServiceName {
        &self.name
    }

    /// The JSON Schema document as given (served by the API), parsed from
    /// [`ServiceSchema::document_text`] on each call.
    pub fn document(&self) -> Value {
        serde_json::from_str(&self.document).unwrap_or(Value::Null)
    }

    /// The document as compact JSON with object keys sorted at every level
    /// (what [`super::SchemaRegistry::hash`] covers).
    pub fn document_text(&self) -> &str {
        &self.document
    }

    /// The field metadata, defaults, title and description of this schema,
    /// derived from the document when not cached. Fetch it once per
    /// operation: each call looks it up in the registry's cache.
    pub fn view(&self) -> Arc<SchemaView> {
        self.cached.view(|| self.derive_view())
    }

    fn derive_view(&self) -> SchemaView {
        let service = self.name.as_str();
        let doc = self.document();
        let sorted = match properties(service, &doc) {
            Ok(Some(props)) => sorted_keys(props),
            _ => Vec::new(),
        };
        let listed: Vec<&str> = self
            .order
            .iter()
            .filter_map(|&i| sorted.get(usize::try_from(i).ok()?).copied())
            .collect();
        // The text derived a view when the schema was built and never
        // changes, so this does not fail.
        SchemaView::derive(service, &doc, &listed).unwrap_or_else(|_| SchemaView::empty(service))
    }

    /// [`SchemaView::with_defaults`] without deriving the view (see
    /// [`ServiceSchema::view`]): for passes over every service, where deriving
    /// each view would cost more than the rest of the pass.
    pub fn with_defaults(&self, config: &Map<String, Value>) -> Map<String, Value> {
        let mut filled = config.clone();
        // Written from a map just above, so it parses back to one.
        if let Ok(Value::Object(defaults)) = serde_json::from_str(&self.defaults) {
            for (key, value) in defaults {
                filled.entry(key).or_insert(value);
            }
        }
        filled
    }

    /// Keys of the secret fields, in document order (as
    /// [`SchemaView::secret_keys`], without deriving the view).
    pub fn secret_keys(&self) -> impl Iterator<Item = &str> {
        self.secret_keys.iter().map(|key| &**key)
    }

    /// Checks a whole configuration (normally [`SchemaView::with_defaults`]
    /// applied first) and reports every failing field, not just the first, so
    /// the operator can fix a form in one round trip.
    ///
    /// Unknown properties give one error each (`/<key>`, "unknown field"); a
    /// missing required property points at `/<key>`; a configuration that is not
    /// a JSON object gives a single error with pointer `""`. Messages describe
    /// the rule that failed and never contain the submitted value.
    pub fn validate(&self, config: &Value) -> Result<(), Vec<FieldError>> {
        if !config.is_object() {
            return Err(vec![FieldError::new(
                "",
                format!(
                    "the configuration must be a JSON object, not {}",
                    json_type_name(config)
                ),
            )]);
        }
        let validator = self
            .cached
            .validator(|| build_validator(&self.document()))
            .map_err(|e| {
                // Compiled once already when the schema was built.
                vec![FieldError::new(
                    "",
                    format!("the schema no longer compiles: {e}"),
                )]
            })?;
        let mut errors = Vec::new();
        for error in validator.iter_errors(config) {
            self.push_errors(&error, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn push_errors(&self, error: &ValidationError<'_>, out: &mut Vec<FieldError>) {
        let base = error.instance_path().as_str();
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                for key in unexpected {
                    out.push(FieldError::new(
                        child_pointer(base, key),
                        format!(
                            "unknown field: the {} schema has no such setting",
                            self.name
                        ),
                    ));
                }
            }
            ValidationErrorKind::Required { property } => {
                let key = property.as_str().unwrap_or_default();
                out.push(FieldError::new(
                    child_pointer(base, key),
                    "required field is missing",
                ));
            }
            kind => out.push(FieldError::new(base, describe(kind, error))),
        }
    }

    /// Reads the `x-env` variables of this schema through `lookup` (normally
    /// `|name| std::env::var(name).ok()`; injectable for tests) and returns the
    /// usable ones as typed values plus the unusable ones as errors. See the
    /// module `env` docs for the parsing rules.
    pub fn resolve_env(&self, lookup: &dyn Fn(&str) -> Option<String>) -> EnvOverrides {
        let mut result = EnvOverrides::default();
        let view = self.view();
        for (meta, types) in view.typed_fields() {
            let Some(var) = meta.env_var.as_deref() else {
                continue;
            };
            let Some(raw) = lookup(var) else { continue };
            let pointer = child_pointer("", &meta.key);
            let field = ParsedField {
                meta: meta.clone(),
                json_types: types.to_vec(),
            };
            let value = match parse_env_value(&field, &raw) {
                Ok(value) => value,
                Err(why) => {
                    result.errors.push(FieldError::new(
                        pointer,
                        format!("environment variable {var} {why}; override ignored"),
                    ));
                    continue;
                }
            };
            let mut probe = Map::new();
            probe.insert(meta.key.clone(), value);
            let probe = Value::Object(probe);
            let problems: Vec<String> = match self.validate(&probe) {
                Ok(()) => Vec::new(),
                Err(errors) => errors
                    .into_iter()
                    .filter(|e| {
                        e.pointer == pointer || e.pointer.starts_with(&format!("{pointer}/"))
                    })
                    .map(|e| e.message)
                    .collect(),
            };
            if problems.is_empty() {
                if let Value::Object(mut probe) = probe {
                    if let Some(value) = probe.remove(&meta.key) {
                        result.values.insert(meta.key.clone(), value);
                    }
                }
            } else {
                result.errors.push(FieldError::new(
                    pointer,
                    format!(
                        "environment variable {var}: {}; override ignored",
                        problems.join("; ")
                    ),
                ));
            }
        }
        result
    }

    /// The usable environment overrides (see [`ServiceSchema::resolve_env`]);
    /// unusable ones are skipped, and [`ServiceSchema::env_override_errors`]
    /// says why.
    pub fn env_overrides(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Map<String, Value> {
        self.resolve_env(lookup).values
    }

    /// The `x-env` variables that are set but unusable (unparseable or invalid
    /// for the field), one [`FieldError`] each.
    pub fn env_override_errors(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<FieldError> {
        self.resolve_env(lookup).errors
    }
}

/// The property names of `props`, sorted (as in the document text).
fn sorted_keys(props: &Map<String, Value>) -> Vec<&str> {
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// The order of `view`'s fields as positions among `props`' names sorted;
/// empty when the fields are in sorted order (nothing to remember).
fn sorted_positions(props: Option<&Map<String, Value>>, view: &SchemaView) -> Box<[u32]> {
    let Some(props) = props else {
        return Box::default();
    };
    let position: HashMap<&str, u32> = sorted_keys(props).into_iter().zip(0..).collect();
    let order: Vec<u32> = view
        .fields()
        .iter()
        .filter_map(|f| position.get(f.key.as_str()).copied())
        .collect();
    if order.iter().zip(0..).all(|(&i, n)| i == n) {
        Box::default()
    } else {
        order.into_boxed_slice()
    }
}

/// The validator of a schema document (draft 2020-12 unless the document
/// names another; formats asserted).
fn build_validator(doc: &Value) -> Result<Validator, ValidationError<'static>> {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(doc)
}

/// A JSON pointer to `key` below `base`, escaped per RFC 6901. A key longer
/// than any valid key is shortened: it is hostile input, and the pointer only
/// has to tell the operator which key was refused.
fn child_pointer(base: &str, key: &str) -> String {
    let key = if key.chars().count() > crate::domain::MAX_KEY_LEN {
        shown_key(key)
    } else {
        key.to_owned()
    };
    format!("{base}/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// A human message for a failed keyword, built from the schema's limits and the
/// value's type only.
fn describe(kind: &ValidationErrorKind, error: &ValidationError<'_>) -> String {
    match kind {
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            format!(
                "expected {expected}, got {}",
                json_type_name(error.instance())
            )
        }
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        ValidationErrorKind::MinLength { limit } => {
            format!("must be at least {limit} {} long", characters(*limit))
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("must be at most {limit} {} long", characters(*limit))
        }
        ValidationErrorKind::Enum { options } => {
            let listed = options
                .as_array()
                .map(|values| {
                    values
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            format!("must be one of: {listed}")
        }
        ValidationErrorKind::Constant { expected_value } => format!(
            "must be {}",
            truncate_chars(&expected_value.to_string(), 80)
        ),
        ValidationErrorKind::Pattern { pattern } => format!("does not match the pattern {pattern}"),
        ValidationErrorKind::Format { format } => format!("is not a valid {format}"),
        _ => error.masked_with("the value").to_string(),
    }
}

fn characters(n: u64) -> &'static str {
    if n == 1 {
        "character"
    } else {
        "characters"
    }
}

/// JSON Schema's name for the type of `value` (`integer` for whole numbers).
pub(crate) fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The order in which `text` lists the top-level `properties`, or `None` when
/// it cannot tell (the compile step then reports what is wrong).
fn property_order(text: &str) -> Option<Vec<String>> {
    struct Root(Option<Vec<String>>);
    struct Keys(Vec<String>);

    impl<'de> Deserialize<'de> for Root {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Root;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a schema object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Root, A::Error> {
                    let mut order = None;
                    while let Some(key) = map.next_key::<String>()? {
                        if key == "properties" {
                            order = Some(map.next_value::<Keys>()?.0);
                        } else {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    Ok(Root(order))
                }
            }
            d.deserialize_map(V)
        }
    }

    impl<'de> Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object of property schemas")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some(key) = map.next_key::<String>()? {
                        map.next_value::<IgnoredAny>()?;
                        keys.push(key);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }

    serde_json::from_str::<Root>(text)
        .ok()
        .and_then(|root| root.0)
}
