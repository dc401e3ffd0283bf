//! Environment overrides: parsing per type and skipping bad values.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;

fn env_schema() -> ServiceSchema {
    ServiceSchema::compile(
        svc("env-test"),
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "count": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1, "x-env": "T_COUNT"},
                "ratio": {"type": "number", "default": 0.5, "x-env": "T_RATIO"},
                "flag": {"type": "boolean", "default": false, "x-env": "T_FLAG"},
                "name": {"type": "string", "default": "a", "x-env": "T_NAME"},
                "maybe": {"type": ["integer", "null"], "default": null, "x-env": "T_MAYBE"},
                "token": {"type": ["string", "null"], "minLength": 10, "default": null, "writeOnly": true,
                          "x-secret": true, "x-env": "T_TOKEN"},
                "mode": {"enum": ["fast", "slow"], "default": "fast", "x-env": "T_MODE"},
                "list": {"type": "array", "items": {"type": "string"}, "default": [], "x-env": "T_LIST"},
                "plain": {"type": "integer", "default": 3}
            }
        }),
    )
    .unwrap()
}

fn resolve(schema: &ServiceSchema, vars: &[(&str, &str)]) -> EnvOverrides {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    schema.resolve_env(&|name: &str| vars.get(name).cloned())
}

#[test]
fn env_overrides_parse_each_type() {
    let schema = env_schema();
    let got = resolve(
        &schema,
        &[
            ("T_COUNT", " 7 "),
            ("T_RATIO", "0.25"),
            ("T_FLAG", "YES"),
            ("T_NAME", " spaced "),
            ("T_MAYBE", ""),
            ("T_TOKEN", "0123456789abc"),
            ("T_MODE", "slow"),
            ("T_LIST", r#"["a","b"]"#),
        ],
    );
    assert_eq!(got.errors, []);
    assert_eq!(
        Value::Object(got.values),
        json!({
            "count": 7, "ratio": 0.25, "flag": true, "name": " spaced ", "maybe": null,
            "token": "0123456789abc", "mode": "slow", "list": ["a", "b"]
        })
    );
    for (raw, want) in [
        ("1", true),
        ("0", false),
        ("true", true),
        ("False", false),
        ("yes", true),
        ("no", false),
    ] {
        assert_eq!(
            resolve(&schema, &[("T_FLAG", raw)]).values["flag"],
            json!(want),
            "{raw}"
        );
    }
    assert_eq!(
        resolve(&schema, &[("T_MAYBE", "null")]).values["maybe"],
        Value::Null
    );
    assert_eq!(
        resolve(&schema, &[("T_MAYBE", "12")]).values["maybe"],
        json!(12)
    );
    assert_eq!(
        resolve(&schema, &[("T_RATIO", "2")]).values["ratio"],
        json!(2.0)
    );
    assert!(resolve(&schema, &[]).values.is_empty());
}

#[test]
fn bad_env_values_are_skipped_and_reported() {
    let schema = env_schema();
    let vars = [
        ("T_COUNT", "eleven"),
        ("T_RATIO", "NaN"),
        ("T_FLAG", "maybe"),
        ("T_MAYBE", "1.5"),
        ("T_MODE", "medium"),
        ("T_LIST", "{not json"),
    ];
    let got = resolve(&schema, &vars);
    assert!(got.values.is_empty(), "{:?}", got.values);
    let mut got_pointers = pointers(&got.errors);
    got_pointers.sort_unstable();
    assert_eq!(
        got_pointers,
        ["/count", "/flag", "/list", "/maybe", "/mode", "/ratio"]
    );
    assert!(got
        .errors
        .iter()
        .all(|e| e.message.contains("environment variable T_")));
    // A value that parses but breaks the rules is refused too, without echoing it.
    let got = resolve(&schema, &[("T_COUNT", "99"), ("T_TOKEN", "short")]);
    assert!(got.values.is_empty());
    assert_eq!(pointers(&got.errors), ["/count", "/token"]);
    assert!(got.errors[0].message.contains("at most 10"));
    assert!(!got.errors[1].message.contains("short"));
    // The convenience methods agree with resolve_env.
    let lookup = |name: &str| (name == "T_COUNT").then(|| "x".to_owned());
    assert!(schema.env_overrides(&lookup).is_empty());
    assert_eq!(pointers(&schema.env_override_errors(&lookup)), ["/count"]);
}

#[test]
fn builtin_secret_env_override() {
    let llm = builtin("llm-worker");
    let lookup = |name: &str| (name == "TARS_OPENAI_API_KEY").then(|| "sk-0123456789".to_owned());
    assert_eq!(
        llm.env_overrides(&lookup)["openai_api_key"],
        json!("sk-0123456789")
    );
    let unset = |name: &str| (name == "TARS_OPENAI_API_KEY").then(String::new);
    assert_eq!(llm.env_overrides(&unset)["openai_api_key"], Value::Null);
}
