//! Environment overrides: turning the text of an `x-env` variable into a typed
//! JSON value for its field.
//!
//! Environment variables are untyped strings, while stored configuration is
//! typed JSON. The rules, in order:
//!
//! 1. A nullable field reads an empty value or `null` (any case) as JSON `null`,
//!    so `OPENAI_API_KEY=` in a compose file means "unset".
//! 2. Otherwise the text is tried against the field's JSON types in the order
//!    boolean, integer, number, array, object, string; the first that parses wins.
//!    - boolean: `1`/`true`/`yes` and `0`/`false`/`no`, any case, surrounding
//!      whitespace ignored;
//!    - integer: a decimal integer (`42`, `-7`), whitespace ignored;
//!    - number: a finite decimal number (`0.5`, `1e-3`, `8`), whitespace ignored;
//!    - array/object: JSON text;
//!    - string: the text exactly as given.
//! 3. A field with only an `enum` (no `type`) matches the text against its string
//!    options, then tries it as JSON.
//!
//! The parsed value is then validated against the schema by the caller
//! ([`super::ServiceSchema::resolve_env`]); a value that does not parse or does
//! not validate is skipped and reported, never a panic or a start-up failure.

use serde_json::{Number, Value};

use super::field::ParsedField;

/// Order in which a multi-typed field tries its types: the most specific first,
/// so `"8"` becomes the integer 8 for `["integer", "string"]`.
const TYPE_PRIORITY: [&str; 6] = ["boolean", "integer", "number", "array", "object", "string"];

/// Parses `raw` for `field`. The error text names the expected type but never
/// repeats `raw` (it may be a secret).
pub(crate) fn parse_env_value(field: &ParsedField, raw: &str) -> Result<Value, String> {
    let trimmed = raw.trim();
    if field.meta.nullable && (trimmed.is_empty() || trimmed.eq_ignore_ascii_case("null")) {
        return Ok(Value::Null);
    }
    if field.json_types.is_empty() {
        return parse_enum_only(field, raw);
    }
    for ty in TYPE_PRIORITY {
        if !field.json_types.iter().any(|t| t == ty) {
            continue;
        }
        if let Some(value) = parse_as(ty, raw) {
            return Ok(value);
        }
    }
    Err(format!(
        "cannot be read as {}",
        field.json_types.join(" or ")
    ))
}

fn parse_as(ty: &str, raw: &str) -> Option<Value> {
    let trimmed = raw.trim();
    match ty {
        "boolean" => parse_bool(trimmed).map(Value::Bool),
        "integer" => parse_integer(trimmed),
        "number" => parse_number(trimmed),
        "array" => serde_json::from_str::<Value>(trimmed)
            .ok()
            .filter(Value::is_array),
        "object" => serde_json::from_str::<Value>(trimmed)
            .ok()
            .filter(Value::is_object),
        "string" => Some(Value::String(raw.to_owned())),
        _ => None,
    }
}

/// The boolean spellings operators use in `.env` files.
/// A whole number of JSON's range (`i64`, else `u64`), as a variable's text.
pub(crate) fn parse_integer(trimmed: &str) -> Option<Value> {
    trimmed
        .parse::<i64>()
        .map(Value::from)
        .or_else(|_| trimmed.parse::<u64>().map(Value::from))
        .ok()
}

/// A finite number (JSON has no NaN or infinity), as a variable's text.
pub(crate) fn parse_number(trimmed: &str) -> Option<Value> {
    trimmed
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
}

pub(crate) fn parse_bool(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Some(true),
        "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

fn parse_enum_only(field: &ParsedField, raw: &str) -> Result<Value, String> {
    let options = field.meta.enum_values.as_deref().unwrap_or_default();
    if options.iter().any(|o| o.as_str() == Some(raw)) {
        return Ok(Value::String(raw.to_owned()));
    }
    match serde_json::from_str::<Value>(raw.trim()) {
        Ok(value) if options.contains(&value) => Ok(value),
        _ => Err("is not one of the allowed values".to_owned()),
    }
}
