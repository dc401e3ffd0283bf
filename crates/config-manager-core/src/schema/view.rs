//! The view of a schema document that forms, writes and reads work with:
//! every field's metadata in document order, the JSON types environment
//! overrides are parsed into, the defaults, the title and the description.
//!
//! It is derived from the document and nothing else, so it is not kept per
//! schema: at a thousand services the views of every schema were most of the
//! registry's memory (docs/performance.md, "Fleet scale"). A
//! [`super::ServiceSchema`] derives its view when it is first needed and the
//! bounded cache of [`super::cache`] keeps it next to the compiled validator
//! for the most recently used schemas.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::error::{FieldError, SchemaError};
use super::field::{check_show_when, parse_field, FieldMeta, ParsedField};

/// The derived view of one service schema (see the module docs). Obtained
/// with [`super::ServiceSchema::view`]; immutable, shared behind an `Arc`.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaView {
    title: String,
    description: String,
    fields: Vec<FieldMeta>,
    /// Non-null JSON types per field, parallel to `fields`.
    json_types: Vec<Vec<String>>,
    index: HashMap<String, usize>,
    defaults: Map<String, Value>,
}

/// The top-level `properties` of a service schema document, after the checks
/// every service schema must pass: a JSON object with `"type": "object"` and,
/// if present, an object of properties.
pub(super) fn properties<'a>(
    service: &str,
    doc: &'a Value,
) -> Result<Option<&'a Map<String, Value>>, SchemaError> {
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
    match root.get("properties") {
        None => Ok(None),
        Some(Value::Object(props)) => Ok(Some(props)),
        Some(_) => Err(SchemaError::invalid(
            service,
            "`properties` must be an object",
        )),
    }
}

impl SchemaView {
    /// Derives the view of `doc`, the schema of `service`, checking every
    /// property. Fields come out in the order `order` lists them, then the
    /// properties it does not list in the map's order. Defaults are
    /// normalized like a write ([`SchemaView::normalize_integers`]): they
    /// are stored as version 1 of a new service.
    pub(super) fn derive(service: &str, doc: &Value, order: &[&str]) -> Result<Self, SchemaError> {
        let empty = Map::new();
        let props = properties(service, doc)?.unwrap_or(&empty);

        let mut keys: Vec<&String> = Vec::with_capacity(props.len());
        let mut seen: HashSet<&str> = HashSet::with_capacity(props.len());
        let listed = order.iter().filter_map(|key| props.get_key_value(*key));
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

        check_show_when(&fields).map_err(|reason| SchemaError::invalid(service, reason))?;

        let root = doc.as_object();
        let text = |keyword: &str| root.and_then(|r| r.get(keyword)).and_then(Value::as_str);
        let mut view = Self {
            title: text("title").unwrap_or(service).to_owned(),
            description: text("description").unwrap_or("").to_owned(),
            fields,
            json_types,
            index,
            defaults,
        };
        // The same integer rule as a write (a default of `60.0` was stored
        // and shown as `60.0` by REST while MQTT said `60`).
        let mut defaults = std::mem::take(&mut view.defaults);
        view.normalize_integers(&mut defaults);
        view.defaults = defaults;
        if let Some(e) = view.integer_errors(&view.defaults).first() {
            return Err(SchemaError::invalid(service, format!("the default of {e}")));
        }
        Ok(view)
    }

    /// A view without fields, titled `service`: what a schema whose own
    /// document no longer derives would show (it cannot happen: the document
    /// is immutable and derived once when the schema was built).
    pub(super) fn empty(service: &str) -> Self {
        Self {
            title: service.to_owned(),
            description: String::new(),
            fields: Vec::new(),
            json_types: Vec::new(),
            index: HashMap::new(),
            defaults: Map::new(),
        }
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

    /// Whether `key` is a secret field of this schema.
    pub fn is_secret(&self, key: &str) -> bool {
        self.field(key).is_some_and(|f| f.is_secret)
    }

    /// The fields with their non-null JSON types (what environment overrides,
    /// `.env` imports and schema evolution convert values into), in
    /// document order.
    pub fn typed_fields(&self) -> impl Iterator<Item = (&FieldMeta, &[String])> {
        self.fields
            .iter()
            .zip(self.json_types.iter().map(Vec::as_slice))
    }

    /// Every declared default, keyed by property: the configuration a service
    /// gets when nothing was stored yet. Guaranteed valid against the schema.
    pub fn defaults(&self) -> &Map<String, Value> {
        &self.defaults
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

    /// Keys of the secret fields, in document order.
    pub fn secret_keys(&self) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .filter(|f| f.is_secret)
            .map(|f| f.key.as_str())
    }

    /// The JSON types of `key`'s values, empty for unknown keys.
    fn types_of(&self, key: &str) -> &[String] {
        self.index
            .get(key)
            .and_then(|&i| self.json_types.get(i))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Whether `key` takes integers only (not also `number`).
    fn integer_only(&self, key: &str) -> bool {
        let types = self.types_of(key);
        types.iter().any(|t| t == "integer") && !types.iter().any(|t| t == "number")
    }

    /// Rewrites whole-number floats (`60.0`, `-0`) of integer fields as JSON
    /// integers (`60`, `0`). JSON Schema counts `60.0` as an integer, but the
    /// database would keep the float text and REST would show `60.0` while the
    /// canonical MQTT payload says `60`; normalizing at write time makes every
    /// reader see the same value. Fields that also accept `number` keep floats.
    pub fn normalize_integers(&self, config: &mut Map<String, Value>) {
        for (key, value) in config.iter_mut() {
            if !self.integer_only(key) {
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
                self.integer_only(key)
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
}
