//! JSON Schema-shaped documents: the keywords the service schemas use
//! (types, bounds, lengths, enums, patterns, defaults, the `x-` extensions)
//! with arbitrary, edge and ill-typed values, so generated documents get past
//! "not a schema" and into compilation, default checks and validation.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use crate::{json, text};

/// Keywords a property schema is built from.
pub const PROPERTY_KEYWORDS: &[&str] = &[
    "type",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "enum",
    "const",
    "default",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "properties",
    "required",
    "additionalProperties",
    "$ref",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "title",
    "description",
    "examples",
    "writeOnly",
    "x-secret",
    "x-env",
    "x-type",
    "x-complexity",
    "x-help",
];

/// A keyword's value: usually of the type the keyword expects (with edge
/// values), sometimes any JSON at all.
fn keyword_value(keyword: &str) -> BoxedStrategy<Value> {
    let typed: BoxedStrategy<Value> = match keyword {
        "type" => prop_oneof![
            prop::sample::select(vec![
                "string", "integer", "number", "boolean", "array", "object", "null", "strin",
            ])
            .prop_map(Value::from),
            vec(
                prop::sample::select(vec!["string", "integer", "null"]).prop_map(Value::from),
                0..3
            )
            .prop_map(Value::Array),
        ]
        .boxed(),
        "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf" => {
            json::number().boxed()
        }
        "minLength" | "maxLength" | "minItems" | "maxItems" => {
            prop_oneof![(0u64..300).prop_map(Value::from), json::number(),].boxed()
        }
        "pattern" => prop_oneof![
            prop::sample::select(vec![
                "^[a-z]+$",
                "^(a+)+$",
                "(",
                "[",
                "\\",
                "^\\p{L}*$",
                "(?<x>a)\\k<x>",
                "a{99999}",
                "",
                "^(?!x).*$",
                "\\d{2,1}",
            ])
            .prop_map(Value::from),
            text::string().prop_map(Value::from),
        ]
        .boxed(),
        "format" => prop::sample::select(vec![
            "date-time",
            "email",
            "uri",
            "ipv4",
            "regex",
            "duration",
            "uuid",
            "nonsense",
        ])
        .prop_map(Value::from)
        .boxed(),
        "enum" | "examples" | "allOf" | "anyOf" | "oneOf" | "required" => {
            vec(json::leaf(), 0..4).prop_map(Value::Array).boxed()
        }
        "items" | "not" | "if" | "then" | "additionalProperties" => prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            Just(json!({"type": "string"})),
            Just(json!({"type": "integer", "minimum": 0})),
        ]
        .boxed(),
        "properties" => btree_map(text::key(), Just(json!({"type": "string"})), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
            .boxed(),
        "$ref" => prop::sample::select(vec![
            "#",
            "#/properties/a",
            "#/$defs/missing",
            "http://127.0.0.1:9/x.json",
            "other.json",
            "urn:x",
        ])
        .prop_map(Value::from)
        .boxed(),
        "x-secret" | "writeOnly" | "uniqueItems" => any::<bool>().prop_map(Value::Bool).boxed(),
        "x-env" => prop_oneof![
            "[A-Z][A-Z0-9_]{0,20}".prop_map(Value::from),
            prop::sample::select(vec!["CONFIG_MASTER_KEY", "PATH", "HOME", "", "A=B"])
                .prop_map(Value::from),
        ]
        .boxed(),
        "x-type" => prop::sample::select(vec!["enum", "secret", "text", "bogus"])
            .prop_map(Value::from)
            .boxed(),
        "x-complexity" => prop::sample::select(vec!["simple", "advanced", "expert"])
            .prop_map(Value::from)
            .boxed(),
        _ => json::leaf().boxed(),
    };
    prop_oneof![5 => typed, 1 => json::value()].boxed()
}

/// One property schema: a handful of keywords with values.
pub fn property() -> BoxedStrategy<Value> {
    vec(prop::sample::select(PROPERTY_KEYWORDS), 0..7)
        .prop_flat_map(|keywords| {
            let pairs: Vec<_> = keywords
                .into_iter()
                .map(|k| keyword_value(k).prop_map(move |v| (k.to_owned(), v)))
                .collect();
            pairs
        })
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
        .boxed()
}

/// A service schema document: usually `{"type": "object", "properties":
/// {...}}` with generated properties and top-level keywords, sometimes any
/// JSON value or a deeply nested one.
pub fn document() -> BoxedStrategy<Value> {
    let object = (
        btree_map(text::key(), property(), 0..5),
        vec(
            (
                prop::sample::select(vec![
                    "$schema",
                    "additionalProperties",
                    "required",
                    "title",
                    "$defs",
                    "type",
                ]),
                json::value(),
            ),
            0..2,
        ),
        any::<bool>(),
    )
        .prop_map(|(props, extra, closed)| {
            let mut doc = Map::new();
            doc.insert("type".into(), Value::from("object"));
            doc.insert("additionalProperties".into(), Value::Bool(!closed));
            doc.insert(
                "properties".into(),
                Value::Object(props.into_iter().collect()),
            );
            for (k, v) in extra {
                doc.insert(k.to_owned(), v);
            }
            Value::Object(doc)
        });
    prop_oneof![
        6 => object,
        1 => json::value(),
        1 => json::deep(120).prop_map(|inner| json!({"type": "object", "properties": {"a": inner}})),
    ]
    .boxed()
}
