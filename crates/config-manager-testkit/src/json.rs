//! JSON values: arbitrary ones (every type, edge numbers, hostile strings),
//! objects over a given set of member names (so generated documents reach
//! past "unknown member" checks), deep nesting, and near-valid variants of a
//! known-good object.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

use crate::text;

/// Numbers at the edges: integer limits, 2^53 ± 1, the largest and
/// smallest doubles, negative zero, and plain random ones.
pub fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        2 => (-1000i64..1000).prop_map(Value::from),
        2 => any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        2 => prop::sample::select(vec![
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::from(i64::MAX),
            Value::from((1u64 << 53) - 1),
            Value::from(1u64 << 53),
            Value::from(-(1i64 << 53)),
            Value::from(0),
            Value::from(-1),
            Value::from(f64::MAX),
            Value::from(f64::MIN),
            Value::from(f64::MIN_POSITIVE),
            Value::from(5e-324),
            Value::from(-0.0),
            Value::from(0.5),
            Value::from(1e21),
        ]),
    ]
}

/// A leaf: null, a boolean, a number or a string.
pub fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => number(),
        4 => text::string().prop_map(Value::String),
    ]
}

/// Any JSON value, nested a few levels (arrays and objects of up to 6).
pub fn value() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                btree_map(text::key(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}

/// An object whose member names are mostly taken from `names` (and
/// sometimes arbitrary), with arbitrary values.
pub fn object_over(names: &[&str]) -> BoxedStrategy<Map<String, Value>> {
    btree_map(name_from(names), value(), 0..names.len().clamp(1, 10) + 2)
        .prop_map(|m| m.into_iter().collect())
        .boxed()
}

/// A member name from `names`, or now and then any key.
pub fn name_from(names: &[&str]) -> BoxedStrategy<String> {
    let known: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    if known.is_empty() {
        return text::key().boxed();
    }
    prop_oneof![
        4 => prop::sample::select(known),
        1 => text::key(),
    ]
    .boxed()
}

/// A value nested `1..=max_depth` levels deep (arrays and objects mixed),
/// around a leaf: what recursion limits and recursive walkers must survive.
pub fn deep(max_depth: usize) -> impl Strategy<Value = Value> {
    (1..=max_depth, vec(any::<bool>(), max_depth), leaf()).prop_map(|(depth, kinds, leaf)| {
        let mut v = leaf;
        for object in kinds.into_iter().take(depth) {
            v = if object {
                let mut m = Map::new();
                m.insert("a".into(), v);
                Value::Object(m)
            } else {
                Value::Array(vec![v])
            };
        }
        v
    })
}

/// What a near-valid document gets: one member changed to `value`, one
/// removed, or one added.
#[derive(Debug, Clone)]
pub enum Edit {
    Set(String, Value),
    Remove(String),
}

/// Up to `max` edits of members named from `names` (plus arbitrary names).
pub fn edits(names: &[&str], max: usize) -> impl Strategy<Value = Vec<Edit>> {
    let name = name_from(names);
    vec(
        prop_oneof![
            4 => (name.clone(), value()).prop_map(|(n, v)| Edit::Set(n, v)),
            1 => name.prop_map(Edit::Remove),
        ],
        0..=max,
    )
}

/// Applies `edits` to a copy of `base`.
pub fn apply(base: &Map<String, Value>, edits: Vec<Edit>) -> Map<String, Value> {
    let mut out = base.clone();
    for edit in edits {
        match edit {
            Edit::Set(n, v) => {
                out.insert(n, v);
            }
            Edit::Remove(n) => {
                out.remove(&n);
            }
        }
    }
    out
}

/// `base` with up to `max` of its members (or arbitrary ones) replaced,
/// removed or added.
pub fn near(base: Map<String, Value>, max: usize) -> BoxedStrategy<Map<String, Value>> {
    let names: Vec<&str> = base.keys().map(String::as_str).collect();
    edits(&names, max)
        .prop_map(move |e| apply(&base, e))
        .boxed()
}
