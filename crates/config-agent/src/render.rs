//! From a service's configuration to the environment variables it reads.
//!
//! Each schema property names the variable(s) the service reads in its
//! `x-service-env` annotation (an array of names; the agent sets all of them);
//! without it the variable is the field key upper-cased. Values are rendered
//! so that every parser in the TARS services accepts them
//! (`docs/agent.md`, "Rendering"): booleans as `1`/`0` (some services parse
//! with `int()`, some accept only `1`, the others `1/true/yes`), integers as
//! plain digits, numbers in plain decimal without an exponent, lists
//! comma-separated, objects as compact JSON; `null` or an absent value leaves
//! the variable alone (the inherited value passes through).

use std::collections::{BTreeMap, BTreeSet};

use config_manager_core::applied::{is_env_name, MAX_REPORT_FIELDS};
use serde_json::{Map, Value};

/// Variables the agent never sets from configuration whatever a schema says:
/// they change how the program itself is loaded or run, not its settings.
const NEVER_SET: &[&str] = &[
    "PATH",
    "HOME",
    "SHELL",
    "IFS",
    "ENV",
    "BASH_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONINSPECT",
];

/// Prefixes of variables the agent never sets (dynamic loader).
const NEVER_SET_PREFIXES: &[&str] = &["LD_", "DYLD_"];

/// Whether the agent may set `name` for a field.
pub fn settable(name: &str) -> bool {
    is_env_name(name)
        && !NEVER_SET.contains(&name)
        && !NEVER_SET_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// One field of the schema as the agent uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub key: String,
    /// The variables the service reads for it (all are set).
    pub vars: Vec<String>,
    /// The JSON Schema type (the non-null one of a type list).
    pub ty: Option<String>,
    /// `x-secret` or `writeOnly`: never set from schema defaults.
    pub secret: bool,
    pub default: Option<Value>,
}

/// The fields of a schema, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMap {
    fields: BTreeMap<String, Field>,
    /// Field keys whose annotation named a variable the agent does not set
    /// (bad grammar or a loader variable), for one warning at start.
    pub refused: Vec<String>,
}

impl FieldMap {
    /// Reads `properties` of a JSON Schema document; anything missing or
    /// malformed there leaves the field with the upper-cased key.
    pub fn from_schema(doc: &Value) -> Self {
        let mut map = Self::default();
        let Some(props) = doc.get("properties").and_then(Value::as_object) else {
            return map;
        };
        for (key, prop) in props {
            let ty = match prop.get("type") {
                Some(Value::String(t)) => Some(t.clone()),
                Some(Value::Array(ts)) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|t| *t != "null")
                    .map(str::to_owned),
                _ => None,
            };
            let secret = prop.get("x-secret").and_then(Value::as_bool) == Some(true)
                || prop.get("writeOnly").and_then(Value::as_bool) == Some(true);
            let named: Option<Vec<String>> = prop
                .get("x-service-env")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                });
            let mut vars = named.unwrap_or_else(|| vec![key.to_ascii_uppercase()]);
            let before = vars.len();
            vars.retain(|v| settable(v));
            vars.dedup();
            if vars.len() != before || vars.is_empty() {
                map.refused.push(key.clone());
            }
            map.fields.insert(
                key.clone(),
                Field {
                    key: key.clone(),
                    vars,
                    ty,
                    secret,
                    default: prop.get("default").cloned(),
                },
            );
        }
        map
    }

    pub fn get(&self, key: &str) -> Option<&Field> {
        self.fields.get(key)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Keys of the secret fields (`x-secret` or `writeOnly`).
    pub fn secret_keys(&self) -> impl Iterator<Item = &str> {
        self.fields
            .values()
            .filter(|f| f.secret)
            .map(|f| f.key.as_str())
    }

    /// The schema's defaults, secrets left out (a default secret is empty:
    /// setting it would hide the inherited one).
    pub fn defaults(&self) -> Map<String, Value> {
        self.fields
            .values()
            .filter(|f| !f.secret)
            .filter_map(|f| Some((f.key.clone(), f.default.clone()?)))
            .collect()
    }

    /// The variables of `key` (the upper-cased key for a field the schema
    /// does not know, if the agent may set it).
    fn vars_of(&self, key: &str) -> Vec<String> {
        match self.fields.get(key) {
            Some(f) => f.vars.clone(),
            None => {
                let var = key.to_ascii_uppercase();
                if settable(&var) {
                    vec![var]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Fields pinned by `pinned_vars` (the operator's `CONFIG_PINNED_ENV`)
    /// whose variable the inherited environment has: field key → variable,
    /// at most the contract's 64.
    pub fn pinned(
        &self,
        pinned_vars: &BTreeSet<String>,
        inherited: &dyn Fn(&str) -> bool,
    ) -> BTreeMap<String, String> {
        self.fields
            .values()
            .filter_map(|f| {
                let var = f
                    .vars
                    .iter()
                    .find(|v| pinned_vars.contains(*v) && inherited(v))?;
                Some((f.key.clone(), var.clone()))
            })
            .take(MAX_REPORT_FIELDS)
            .collect()
    }
}

/// The variables the agent sets for one configuration (name → value), and
/// the fields it could not render (names only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub env: BTreeMap<String, String>,
    pub unrenderable: Vec<String>,
}

/// Renders `config` with decision 1's precedence: every variable of every
/// field gets the manager's value, except a variable in `pinned_vars` that
/// the inherited environment has, and except when `only_missing` (running
/// on schema defaults) and the inherited environment has the variable.
pub fn render(
    config: &Map<String, Value>,
    fields: &FieldMap,
    pinned_vars: &BTreeSet<String>,
    inherited: &dyn Fn(&str) -> bool,
    only_missing: bool,
) -> Rendered {
    let mut out = Rendered::default();
    for (key, value) in config {
        let ty = fields.get(key).and_then(|f| f.ty.as_deref());
        let Some(text) = render_value(value, ty) else {
            if !value.is_null() {
                out.unrenderable.push(key.clone());
            }
            continue;
        };
        for var in fields.vars_of(key) {
            let held = inherited(&var);
            if held && (only_missing || pinned_vars.contains(&var)) {
                continue;
            }
            out.env.insert(var, text.clone());
        }
    }
    out
}

/// One value as the services parse it; `None` for `null` and for text an
/// environment cannot hold (a NUL byte).
pub fn render_value(value: &Value, ty: Option<&str>) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Number(n) => render_number(n, ty),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(_) | Value::Object(_) => Some(item.to_string()),
                other => render_value(other, None),
            })
            .collect::<Option<Vec<_>>>()?
            .join(","),
        Value::Object(_) => value.to_string(),
    };
    (!text.contains('\0')).then_some(text)
}

/// Integers as digits (also a whole float of an `integer` field); other
/// numbers in Rust's shortest round-trip decimal form, which never uses an
/// exponent (`float()` and `int()` of Python both read it).
fn render_number(n: &serde_json::Number, ty: Option<&str>) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if ty == Some("integer") && f.fract() == 0.0 && f.abs() < 9.0e15 {
        // Exact: |f| < 2^53.
        return format!("{f:.0}");
    }
    format!("{f}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"properties": {
            "llm_model": {"type": "string", "default": "gpt-4o-mini", "x-service-env": ["LLM_MODEL", "OPENAI_MODEL"]},
            "rag_enabled": {"type": "boolean", "default": false},
            "streaming_partials": {"type": "integer", "default": 1},
            "temperature": {"type": ["number", "null"], "default": 0.7},
            "phrases": {"type": "array", "default": ["thank you", "hello"]},
            "api_key": {"type": "string", "default": "", "x-secret": true},
            "evil": {"type": "string", "x-service-env": ["LD_PRELOAD", "bad-name"]},
        }})
    }

    #[test]
    fn values_render_as_every_tars_parser_reads_them() {
        assert_eq!(render_value(&json!(true), Some("boolean")).unwrap(), "1");
        assert_eq!(render_value(&json!(false), None).unwrap(), "0");
        assert_eq!(
            render_value(&json!(16000), Some("integer")).unwrap(),
            "16000"
        );
        assert_eq!(render_value(&json!(3.0), Some("integer")).unwrap(), "3");
        assert_eq!(render_value(&json!(-2), None).unwrap(), "-2");
        assert_eq!(render_value(&json!(0.02), Some("number")).unwrap(), "0.02");
        assert_eq!(
            render_value(&json!(1e-7), Some("number")).unwrap(),
            "0.0000001"
        );
        assert_eq!(
            render_value(&json!(2.5e10), Some("number")).unwrap(),
            "25000000000"
        );
        assert_eq!(render_value(&json!("a b"), None).unwrap(), "a b");
        assert_eq!(
            render_value(&json!(["thank you", "hi", 3, true]), Some("array")).unwrap(),
            "thank you,hi,3,1"
        );
        assert_eq!(render_value(&json!([]), None).unwrap(), "");
        assert_eq!(
            render_value(&json!({"a": [1]}), None).unwrap(),
            "{\"a\":[1]}"
        );
        assert_eq!(render_value(&json!(null), None), None);
        assert_eq!(render_value(&json!("a\u{0}b"), None), None);
    }

    #[test]
    fn annotation_upper_case_and_refused_names() {
        let map = FieldMap::from_schema(&schema());
        assert_eq!(
            map.get("llm_model").unwrap().vars,
            ["LLM_MODEL", "OPENAI_MODEL"]
        );
        assert_eq!(map.get("rag_enabled").unwrap().vars, ["RAG_ENABLED"]);
        assert_eq!(
            map.get("temperature").unwrap().ty.as_deref(),
            Some("number")
        );
        assert!(map.get("evil").unwrap().vars.is_empty());
        assert_eq!(map.refused, ["evil"]);
        let defaults = map.defaults();
        assert!(!defaults.contains_key("api_key"), "secrets have no default");
        assert_eq!(defaults["streaming_partials"], 1);
        assert!(!settable("LD_LIBRARY_PATH") && !settable("PATH") && !settable("1A"));
        assert!(FieldMap::from_schema(&json!({"properties": 3})).is_empty());
    }

    #[test]
    fn precedence_pinning_and_defaults() {
        let map = FieldMap::from_schema(&schema());
        let config = json!({
            "llm_model": "gpt-5", "rag_enabled": true, "temperature": null,
            "streaming_partials": 0, "unknown_field": 5, "evil": "/tmp/x.so",
            "api_key": "s3cret"
        });
        let config = config.as_object().unwrap();
        let inherited = |v: &str| matches!(v, "LLM_MODEL" | "RAG_ENABLED" | "TEMPERATURE");
        let pinned: BTreeSet<String> = ["RAG_ENABLED".to_owned(), "STREAMING_PARTIALS".to_owned()]
            .into_iter()
            .collect();
        let r = render(config, &map, &pinned, &inherited, false);
        // The manager wins over an inherited variable ...
        assert_eq!(r.env["LLM_MODEL"], "gpt-5");
        assert_eq!(r.env["OPENAI_MODEL"], "gpt-5");
        // ... except a pinned one the environment has.
        assert!(!r.env.contains_key("RAG_ENABLED"));
        // Pinned but not inherited: the manager's value.
        assert_eq!(r.env["STREAMING_PARTIALS"], "0");
        // null: not set.
        assert!(!r.env.contains_key("TEMPERATURE"));
        assert_eq!(r.env["UNKNOWN_FIELD"], "5");
        assert_eq!(r.env["API_KEY"], "s3cret");
        assert!(!r.env.contains_key("LD_PRELOAD"));
        let reported = map.pinned(&pinned, &inherited);
        assert_eq!(
            reported,
            BTreeMap::from([("rag_enabled".into(), "RAG_ENABLED".into())])
        );
        // On defaults, an inherited variable is left alone.
        let d = render(&map.defaults(), &map, &BTreeSet::new(), &inherited, true);
        assert!(!d.env.contains_key("LLM_MODEL"));
        assert_eq!(d.env["STREAMING_PARTIALS"], "1");
        assert_eq!(d.env["PHRASES"], "thank you,hello");
    }
}
