//! One compiled service schema: the document, its checked field metadata, its
//! defaults and a validator built once, so every write is checked without
//! re-reading the schema.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, ValidationError, Validator};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::ServiceName;

use super::env::parse_env_value;
use super::env_policy::SchemaOrigin;
use super::error::{truncate_chars, FieldError, SchemaError};
use super::field::{parse_field, shown_key, FieldMeta, ParsedField};
use super::validators::Slot;

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

/// A service's compiled schema. Cheap to share behind an `Arc` (the registry
/// does); immutable once built, so a schema change means a new `ServiceSchema`.
pub struct ServiceSchema {
    name: ServiceName,
    /// The document as compact JSON with keys sorted at every level (what
    /// the registry hashes). Kept as text, parsed when needed: as a parsed
    /// `Value` it was ~60 KiB of a 50-field schema's ~110 KiB.
    document: Box<str>,
    title: String,
    description: String,
    fields: Vec<FieldMeta>,
    /// Non-null JSON types per field, parallel to `fields`.
    json_types: Vec<Vec<String>>,
    index: HashMap<String, usize>,
    defaults: Map<String, Value>,
    /// The compiled validator's place in the bounded cache
    /// ([`super::validators`]): compiled when first needed, dropped when
    /// not used recently.
    validator: Slot,
    /// Who wrote the schema (decides what its `x-env` fields may read).
    origin: SchemaOrigin,
}

impl fmt::Debug for ServiceSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceSchema")
            .field("name", &self.name)
            .field("fields", &self.fields.len())
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
    /// the text lists the properties for [`ServiceSchema::fields`] (the order the
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
        self.validator.put(Arc::new(validator));
        self.check_defaults()
    }

    /// The defaults must satisfy the schema: otherwise it could never
    /// produce a saveable configuration.
    fn check_defaults(&self) -> Result<(), SchemaError> {
        if let Err(errors) = self.validate(&Value::Object(self.defaults.clone())) {
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
        let service_owned = name.as_str().to_owned();
        let service = service_owned.as_str();
        let Some(root) = doc.as_object() else {
            return Err(SchemaError::invalid(
                service,
                "the schema must be a JSON object",
            ));
        };
        if root.get("type").and_then(Value::as_str) != Some("object") {
            return Err(SchemaError::invalid(
                service,
                "the schema must declare \"type\": \"object\"",
            ));
        }
        let empty = Map::new();
        let props = match root.get("properties") {
            None => &empty,
            Some(Value::Object(props)) => props,
            Some(_) => {
                return Err(SchemaError::invalid(
                    service,
                    "`properties` must be an object",
                ))
            }
        };
        let validator = if check {
            Some(build_validator(&doc).map_err(|e| {
                SchemaError::invalid(service, format!("not a valid JSON Schema: {e}"))
            })?)
        } else {
            None
        };

        // Document order first, then anything the order did not list.
        let mut keys: Vec<&String> = Vec::with_capacity(props.len());
        let mut seen: HashSet<&str> = HashSet::with_capacity(props.len());
        let listed = order
            .iter()
            .flatten()
            .filter_map(|key| props.get_key_value(key));
        for (k, _) in listed.chain(props.iter()) {
            if seen.insert(k.as_str()) {
                keys.push(k);
            }
        }

        let mut fields = Vec::with_capacity(keys.len());
        let mut json_types = Vec::with_capacity(keys.len());
        let mut index = HashMap::with_capacity(keys.len());
        let mut defaults = Map::new();
        for key in keys {
            let prop = props.get(key).unwrap_or(&Value::Null);
            let ParsedField {
                meta,
                json_types: types,
            } = parse_field(service, key, prop)?;
            if meta.has_default {
                defaults.insert(key.clone(), meta.default.clone());
            }
            index.insert(key.clone(), fields.len());
            fields.push(meta);
            json_types.push(types);
        }

        let title = root
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or(service)
            .to_owned();
        let description = root
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut text = String::new();
        super::registry::write_sorted_json(&doc, &mut text);
        let slot = Slot::new();
        // Cached now (the defaults are checked with it just below; a
        // start-up that loads more schemas than the cache holds keeps the
        // last ones).
        if let Some(validator) = validator {
            slot.put(Arc::new(validator));
        }
        let mut schema = Self {
            title,
            description,
            name,
            document: text.into_boxed_str(),
            fields,
            json_types,
            index,
            defaults,
            validator: slot,
            origin: SchemaOrigin::Operator,
        };
        // Defaults are stored as version 1 of a new service: the same integer
        // rule as a write (a default of `60.0` was stored and shown as `60.0`
        // by REST while MQTT said `60`).
        let mut defaults = std::mem::take(&mut schema.defaults);
        schema.normalize_integers(&mut defaults);
        schema.defaults = defaults;
        if let Some(e) = schema.integer_errors(&schema.defaults).first() {
            return Err(SchemaError::invalid(service, format!("the default of {e}")));
        }
        if check {
            schema.check_defaults()?;
        }
        Ok(schema)
    }

    /// The same schema marked as written by `origin` (compiled schemas are
    /// the operator's until marked otherwise).
    pub fn with_origin(self, origin: SchemaOrigin) -> Self {
        Self { origin, ..self }
    }

    /// The id of this schema's place in the validator cache (tests).
    #[cfg(test)]
    pub(super) fn validator_slot_id(&self) -> u64 {
        self.validator.id()
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

    /// The document's `title`, or the service name.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The document's `description`, or empty.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Metadata of every top-level property, in document order.
    pub fn fields(&self) -> &[FieldMeta] {
        &self.fields
    }

    /// Metadata of one property.
    pub fn field(&self, key: &str) -> Option<&FieldMeta> {
        self.index.get(key).and_then(|&i| self.fields.get(i))
    }

    /// Every declared default, keyed by property: the configuration a service
    /// gets when nothing was stored yet. Guaranteed valid against the schema.
    pub fn defaults(&self) -> Map<String, Value> {
        self.defaults.clone()
    }

    /// `config` with every missing key that has a default filled in. Keys present
    /// in `config` (including ones the schema does not know) are kept as they are.
    pub fn with_defaults(&self, config: &Map<String, Value>) -> Map<String, Value> {
        let mut filled = config.clone();
        for (key, value) in &self.defaults {
            filled.entry(key.clone()).or_insert_with(|| value.clone());
        }
        filled
    }

    /// Rewrites whole-number floats (`60.0`, `-0`) of integer fields as JSON
    /// integers (`60`, `0`). JSON Schema counts `60.0` as an integer, but the
    /// database would keep the float text and REST would show `60.0` while the
    /// canonical MQTT payload says `60`; normalizing at write time makes every
    /// reader see the same value. Fields that also accept `number` keep floats.
    pub fn normalize_integers(&self, config: &mut Map<String, Value>) {
        for (key, value) in config.iter_mut() {
            let Some(&i) = self.index.get(key) else {
                continue;
            };
            let types = self
                .json_types
                .get(i)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if !types.iter().any(|t| t == "integer") || types.iter().any(|t| t == "number") {
                continue;
            }
            if let Some(n) = value
                .as_number()
                .filter(|n| n.is_f64())
                .and_then(|n| n.as_f64())
            {
                // Only values an i64 holds exactly (|n| < 2^63).
                if n.fract() == 0.0 && n.abs() < 9_223_372_036_854_775_808.0 {
                    #[allow(clippy::cast_possible_truncation)]
                    let whole = n as i64;
                    *value = Value::from(whole);
                }
            }
        }
    }

    /// One error per integer-only field of `config` that still holds a float
    /// after [`Self::normalize_integers`]: a whole number beyond an i64
    /// (`1e300`), which JSON Schema counts as an integer but which every
    /// reader would get as a float. Non-whole floats are left to validation.
    pub fn integer_errors(&self, config: &Map<String, Value>) -> Vec<FieldError> {
        config
            .iter()
            .filter(|(key, value)| {
                let Some(&i) = self.index.get(key.as_str()) else {
                    return false;
                };
                let types = self
                    .json_types
                    .get(i)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                types.iter().any(|t| t == "integer")
                    && !types.iter().any(|t| t == "number")
                    && value
                        .as_f64()
                        .is_some_and(|n| value.is_f64() && n.fract() == 0.0)
            })
            .map(|(key, _)| {
                FieldError::new(
                    format!("/{key}"),
                    "integer out of range: must be between -(2^53-1) and 2^53-1",
                )
            })
            .collect()
    }

    /// Keys of the secret fields, in document order.
    pub fn secret_keys(&self) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .filter(|f| f.is_secret)
            .map(|f| f.key.as_str())
    }

    /// Checks a whole configuration (normally [`ServiceSchema::with_defaults`]
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
            .validator
            .get_or_compile(|| build_validator(&self.document()))
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
        for (meta, types) in self.fields.iter().zip(&self.json_types) {
            let Some(var) = meta.env_var.as_deref() else {
                continue;
            };
            let Some(raw) = lookup(var) else { continue };
            let pointer = child_pointer("", &meta.key);
            let field = ParsedField {
                meta: meta.clone(),
                json_types: types.clone(),
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
