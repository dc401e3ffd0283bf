//! Field metadata: what the web form, the search index and the store need to
//! know about one top-level setting, read once from the schema document.
//!
//! The JSON Schema document stays the single definition; [`FieldMeta`] is a
//! flattened, checked view of one property so that no other module has to
//! interpret JSON Schema keywords (or this project's `x-` extensions) itself.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::{validate_key, Complexity};

use super::error::{truncate_chars, SchemaError};

/// UI type hints accepted in `x-type`. The first six are plain JSON Schema types;
/// `enum`, `path` and `secret` refine a string for the form (dropdown, path
/// input, masked input).
pub const UI_TYPES: [&str; 9] = [
    "string", "integer", "number", "boolean", "array", "object", "enum", "path", "secret",
];

/// Longest accepted `x-env` variable name.
pub const MAX_ENV_VAR_LEN: usize = 128;

/// Most variable names one `x-service-env` list may give: a setting with a
/// primary name and a few legacy aliases, not a dumping ground.
pub const MAX_SERVICE_ENV_NAMES: usize = 8;

/// Longest `x-group` section title, in characters.
pub const MAX_GROUP_CHARS: usize = 60;

/// Most values one `x-show-when` `equals` list may give.
pub const MAX_SHOW_WHEN_VALUES: usize = 16;

/// `x-show-when`: the form shows the field only while another field of the
/// same service has one of these values. Display only: a hidden field keeps
/// its value and is saved as-is, and validation never looks at it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShowWhen {
    /// The key of the controlling field (a property of the same schema that
    /// has no `x-show-when` of its own).
    pub field: String,
    /// The values that show the field (a single value in the schema is read
    /// as a list of one).
    pub equals: Vec<Value>,
}

/// Everything known about one top-level setting of a service.
///
/// Serialized as-is into the API's schema/field listings, so the web UI can
/// build an input (by `type`), show ranges and help, mask secrets and mark
/// fields overridden by the environment without reading JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldMeta {
    /// Property name, checked with [`crate::domain::validate_key`].
    pub key: String,
    /// UI type: `x-type` if given, else `secret` for secrets, `enum` when the
    /// property has an `enum`, else its (first non-null) JSON type.
    pub r#type: String,
    /// `x-complexity`; fields without it are simple.
    pub complexity: Complexity,
    /// `description`, or empty.
    pub description: String,
    /// `x-help`, falling back to `description`.
    pub help_text: String,
    /// `examples`, or empty.
    pub examples: Vec<Value>,
    /// `x-secret: true`, `writeOnly: true` or `x-type: "secret"`: stored
    /// encrypted and masked in every read.
    pub is_secret: bool,
    /// `default`, or `null` when the property has none (see `has_default`).
    pub default: Value,
    /// Whether the property declares a `default` (a declared `null` counts).
    pub has_default: bool,
    /// `x-env`: an environment variable of the config-manager that overrides
    /// the stored value and makes the field read-only.
    pub env_var: Option<String>,
    /// `x-service-env`: the environment variable(s) the *service* reads this
    /// setting from (a launcher such as config-agent sets every one of them;
    /// imports from a `.env` map them back). Empty when the schema does not
    /// say; the variable is then the key upper-cased (see
    /// [`FieldMeta::service_env_names`]).
    pub service_env: Vec<String>,
    /// `x-unused: true`: no code of the service reads this setting; it is kept
    /// so that stored configurations and the service's config model still fit.
    pub unused: bool,
    /// `x-group`: the title of the form section this field is shown in
    /// ("Voice", "Secrets"); `None` puts it in the unnamed first section.
    pub group: Option<String>,
    /// `x-show-when`: the form shows this field only while another field has
    /// one of the listed values (display only, see [`ShowWhen`]).
    pub show_when: Option<ShowWhen>,
    pub enum_values: Option<Vec<Value>>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: Option<f64>,
    pub exclusive_maximum: Option<f64>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub pattern: Option<String>,
    /// `format` (for example `uri`); asserted by validation.
    pub format: Option<String>,
    /// `null` is an accepted value (`"type": ["string", "null"]`).
    pub nullable: bool,
    /// `title`, falling back to the key.
    pub title: String,
}

/// A field's metadata plus the JSON types its values may have; the types are
/// what environment overrides are parsed into.
#[derive(Debug, Clone)]
pub(crate) struct ParsedField {
    pub meta: FieldMeta,
    /// Non-null JSON types from `type` (empty when the property only has `enum`).
    pub json_types: Vec<String>,
}

/// Shortens a hostile property name before it goes into an error message.
pub(crate) fn shown_key(key: &str) -> String {
    truncate_chars(key, 80)
}

/// Reads and checks one property of a service schema.
pub(crate) fn parse_field(
    service: &str,
    key: &str,
    prop: &Value,
) -> Result<ParsedField, SchemaError> {
    let fail = |reason: String| {
        SchemaError::invalid(service, format!("property {:?}: {reason}", shown_key(key)))
    };
    validate_key(key).map_err(|e| fail(format!("not a valid key: {e}")))?;
    let Some(prop) = prop.as_object() else {
        return Err(fail("must be a schema object".into()));
    };

    let (json_types, nullable_by_type) = json_types(prop).map_err(fail)?;
    let enum_values = match prop.get("enum") {
        None => None,
        Some(Value::Array(values)) => Some(values.clone()),
        Some(_) => return Err(fail("`enum` must be an array".into())),
    };
    if json_types.is_empty() && enum_values.is_none() {
        return Err(fail(
            "declare a non-null `type` (or an `enum`) so forms and environment overrides know how to read the value"
                .into(),
        ));
    }
    let nullable = nullable_by_type
        || enum_values
            .as_ref()
            .is_some_and(|values| values.iter().any(Value::is_null));

    let x_type = opt_str(prop, "x-type").map_err(fail)?;
    if let Some(t) = x_type {
        if !UI_TYPES.contains(&t) {
            return Err(fail(format!(
                "`x-type` must be one of {}",
                UI_TYPES.join(", ")
            )));
        }
    }
    let x_secret = opt_bool(prop, "x-secret").map_err(fail)?.unwrap_or(false);
    let write_only = opt_bool(prop, "writeOnly").map_err(fail)?.unwrap_or(false);
    let is_secret = x_secret || write_only || x_type == Some("secret");
    let string_only = json_types.iter().all(|t| t == "string") && !json_types.is_empty();
    if is_secret && !string_only {
        return Err(fail(
            "a secret must have type string (optionally nullable)".into(),
        ));
    }
    match x_type {
        Some("path") if !string_only => {
            return Err(fail("`x-type: path` needs type string".into()));
        }
        Some("enum") if enum_values.is_none() => {
            return Err(fail("`x-type: enum` needs an `enum` list".into()));
        }
        Some(t @ ("string" | "integer" | "number" | "boolean" | "array" | "object"))
            if !json_types.iter().any(|j| j == t) =>
        {
            return Err(fail(format!("`x-type: {t}` does not match its `type`")));
        }
        _ => {}
    }

    let ui_type = match x_type {
        Some(t) => t.to_owned(),
        None if is_secret => "secret".to_owned(),
        None if enum_values.is_some() => "enum".to_owned(),
        None => json_types
            .first()
            .cloned()
            .unwrap_or_else(|| "string".to_owned()),
    };

    let complexity = match opt_str(prop, "x-complexity").map_err(fail)? {
        None | Some("simple") => Complexity::Simple,
        Some("advanced") => Complexity::Advanced,
        Some(_) => {
            return Err(fail(
                "`x-complexity` must be \"simple\" or \"advanced\"".into(),
            ))
        }
    };

    let env_var = opt_str(prop, "x-env").map_err(fail)?;
    if let Some(var) = env_var {
        if !valid_env_var(var) {
            return Err(fail(format!(
                "`x-env` must be an upper-case variable name (A-Z, 0-9, '_', at most {MAX_ENV_VAR_LEN} characters)"
            )));
        }
    }

    let service_env = service_env(prop).map_err(fail)?;
    let unused = opt_bool(prop, "x-unused").map_err(fail)?.unwrap_or(false);
    let group = group(prop).map_err(fail)?;
    let show_when = show_when(key, prop).map_err(fail)?;

    let has_default = prop.contains_key("default");
    let default = prop.get("default").cloned().unwrap_or(Value::Null);
    if is_secret && !(default.is_null() || default == Value::String(String::new())) {
        return Err(fail(
            "a secret's default must be null or empty: schemas are not a place for secrets".into(),
        ));
    }

    let description = opt_str(prop, "description")
        .map_err(fail)?
        .unwrap_or("")
        .to_owned();
    let help_text = opt_str(prop, "x-help")
        .map_err(fail)?
        .map_or_else(|| description.clone(), str::to_owned);
    let title = opt_str(prop, "title")
        .map_err(fail)?
        .unwrap_or(key)
        .to_owned();
    let examples = match prop.get("examples") {
        None => Vec::new(),
        Some(Value::Array(values)) => values.clone(),
        Some(_) => return Err(fail("`examples` must be an array".into())),
    };

    let meta = FieldMeta {
        key: key.to_owned(),
        r#type: ui_type,
        complexity,
        description,
        help_text,
        examples,
        is_secret,
        default,
        has_default,
        env_var: env_var.map(str::to_owned),
        service_env,
        unused,
        group,
        show_when,
        enum_values,
        minimum: prop.get("minimum").and_then(Value::as_f64),
        maximum: prop.get("maximum").and_then(Value::as_f64),
        exclusive_minimum: prop.get("exclusiveMinimum").and_then(Value::as_f64),
        exclusive_maximum: prop.get("exclusiveMaximum").and_then(Value::as_f64),
        min_length: prop.get("minLength").and_then(Value::as_u64),
        max_length: prop.get("maxLength").and_then(Value::as_u64),
        pattern: opt_str(prop, "pattern").map_err(fail)?.map(str::to_owned),
        format: opt_str(prop, "format").map_err(fail)?.map(str::to_owned),
        nullable,
        title,
    };
    Ok(ParsedField { meta, json_types })
}

impl FieldMeta {
    /// The variables the service reads this setting from: `x-service-env`, or
    /// the key upper-cased when the schema does not say (decision recorded in
    /// docs/adopting.md).
    pub fn service_env_names(&self) -> Vec<String> {
        if self.service_env.is_empty() {
            vec![self.key.to_ascii_uppercase()]
        } else {
            self.service_env.clone()
        }
    }
}

/// Reads `x-service-env`: an array of 1..=[`MAX_SERVICE_ENV_NAMES`] distinct
/// names matching `^[A-Za-z_][A-Za-z0-9_]{0,127}$` (what POSIX shells and
/// `.env` files accept). The error never echoes an entry: a hostile schema
/// could put anything there.
fn service_env(prop: &Map<String, Value>) -> Result<Vec<String>, String> {
    let Some(value) = prop.get("x-service-env") else {
        return Ok(Vec::new());
    };
    let Value::Array(entries) = value else {
        return Err("`x-service-env` must be an array of environment variable names".into());
    };
    if entries.is_empty() || entries.len() > MAX_SERVICE_ENV_NAMES {
        return Err(format!(
            "`x-service-env` must list 1 to {MAX_SERVICE_ENV_NAMES} variable names (got {})",
            entries.len()
        ));
    }
    let mut names: Vec<String> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let Some(name) = entry.as_str().filter(|n| valid_service_env_var(n)) else {
            return Err(format!(
                "`x-service-env` entry {i} is not a variable name (letters, digits and '_', not starting with a digit, at most {MAX_ENV_VAR_LEN} characters)"
            ));
        };
        if names.iter().any(|n| n == name) {
            return Err(format!("`x-service-env` entry {i} repeats an earlier name"));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// Reads `x-group`: a section title of 1..=[`MAX_GROUP_CHARS`] characters
/// with no control characters and not only blanks.
fn group(prop: &Map<String, Value>) -> Result<Option<String>, String> {
    let Some(title) = opt_str(prop, "x-group")? else {
        return Ok(None);
    };
    if title.trim().is_empty()
        || title.chars().count() > MAX_GROUP_CHARS
        || title.chars().any(char::is_control)
    {
        return Err(format!(
            "`x-group` must be a section title of 1 to {MAX_GROUP_CHARS} characters without control characters"
        ));
    }
    Ok(Some(title.to_owned()))
}

/// Reads the form of `x-show-when`: `{"field": "<key>", "equals": <value or
/// array of 1..=MAX_SHOW_WHEN_VALUES values>}` and nothing else. That the
/// field exists (and its values fit it) is checked with the whole schema
/// in [`check_show_when`].
fn show_when(key: &str, prop: &Map<String, Value>) -> Result<Option<ShowWhen>, String> {
    const FORM: &str = "`x-show-when` must be an object {\"field\": \"<key>\", \"equals\": <value or array of values>}";
    let Some(value) = prop.get("x-show-when") else {
        return Ok(None);
    };
    let Value::Object(obj) = value else {
        return Err(FORM.into());
    };
    if obj.len() != 2 || !obj.contains_key("field") || !obj.contains_key("equals") {
        return Err(format!("{FORM}, with exactly those two members"));
    }
    let Some(field) = obj.get("field").and_then(Value::as_str) else {
        return Err("`x-show-when.field` must be the key of another field".into());
    };
    if validate_key(field).is_err() {
        return Err("`x-show-when.field` is not a valid key".into());
    }
    if field == key {
        return Err("`x-show-when.field` names the field itself".into());
    }
    let equals = match obj.get("equals") {
        Some(Value::Array(values)) => values.clone(),
        Some(single) => vec![single.clone()],
        None => Vec::new(),
    };
    if equals.is_empty() || equals.len() > MAX_SHOW_WHEN_VALUES {
        return Err(format!(
            "`x-show-when.equals` must give 1 to {MAX_SHOW_WHEN_VALUES} values (got {})",
            equals.len()
        ));
    }
    if equals.iter().any(|v| v.is_array() || v.is_object()) {
        return Err(
            "`x-show-when.equals` values must be strings, numbers, booleans or null".into(),
        );
    }
    Ok(Some(ShowWhen {
        field: field.to_owned(),
        equals,
    }))
}

/// The checks of `x-show-when` that need every field: the controlling field
/// exists, is not itself conditional (no chains or cycles to untangle), and
/// each value is one it can take (a member of its `enum`, of its type).
/// Returns the reason for the first broken rule, naming the dependent key.
pub(crate) fn check_show_when(fields: &[FieldMeta]) -> Result<(), String> {
    for f in fields {
        let Some(cond) = &f.show_when else { continue };
        let why =
            |reason: &str| format!("property {:?}: `x-show-when` {reason}", shown_key(&f.key));
        let Some(target) = fields.iter().find(|t| t.key == cond.field) else {
            return Err(why("names a field the schema does not have"));
        };
        if target.show_when.is_some() {
            return Err(why("names a field that has an `x-show-when` of its own"));
        }
        if target.is_secret {
            return Err(why("names a secret (its value is never shown to the form)"));
        }
        for v in &cond.equals {
            let fits = match &target.enum_values {
                Some(values) => values.contains(v),
                None => match v {
                    Value::Null => target.nullable,
                    Value::Bool(_) => target.r#type == "boolean",
                    Value::Number(n) => match target.r#type.as_str() {
                        "integer" => n.is_i64() || n.is_u64(),
                        "number" => true,
                        _ => false,
                    },
                    Value::String(_) => matches!(target.r#type.as_str(), "string" | "path"),
                    _ => false,
                },
            };
            if !fits {
                return Err(why("lists a value the controlling field cannot take"));
            }
        }
    }
    Ok(())
}

/// `^[A-Za-z_][A-Za-z0-9_]{0,127}$`: a name a service may read (services are
/// not bound to this project's upper-case convention for `x-env`).
pub fn valid_service_env_var(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_ENV_VAR_LEN
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The non-null JSON types of `type` and whether `null` is among them.
fn json_types(prop: &Map<String, Value>) -> Result<(Vec<String>, bool), String> {
    const KNOWN: [&str; 7] = [
        "null", "boolean", "integer", "number", "string", "array", "object",
    ];
    let names: Vec<&str> = match prop.get("type") {
        None => Vec::new(),
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .map(|t| {
                t.as_str()
                    .ok_or_else(|| "`type` entries must be strings".to_owned())
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`type` must be a string or an array of strings".into()),
    };
    let mut types = Vec::new();
    let mut nullable = false;
    for name in names {
        if !KNOWN.contains(&name) {
            return Err(format!(
                "`type` {:?} is not a JSON Schema type (use `x-type` for UI hints)",
                truncate_chars(name, 40)
            ));
        }
        if name == "null" {
            nullable = true;
        } else if !types.iter().any(|t| t == name) {
            types.push(name.to_owned());
        }
    }
    Ok((types, nullable))
}

fn opt_str<'a>(prop: &'a Map<String, Value>, keyword: &str) -> Result<Option<&'a str>, String> {
    match prop.get(keyword) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{keyword}` must be a string")),
    }
}

fn opt_bool(prop: &Map<String, Value>, keyword: &str) -> Result<Option<bool>, String> {
    match prop.get(keyword) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("`{keyword}` must be true or false")),
    }
}

/// `^[A-Z][A-Z0-9_]*$`, at most [`MAX_ENV_VAR_LEN`] bytes: portable across
/// shells, `.env` files and container runtimes.
fn valid_env_var(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_ENV_VAR_LEN
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}
