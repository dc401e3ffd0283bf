//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! Signatures and MACs must be computed over bytes that a verifier in any
//! language can rebuild from the parsed JSON alone. JCS defines them: object
//! members sorted by the UTF-16 code units of their names, no insignificant
//! whitespace, strings escaped the way ECMAScript's `JSON.stringify` does, and
//! numbers printed the way ECMAScript prints a double. Independent
//! implementations exist for Python (`rfc8785`), Go, Java, C# and JavaScript.
//!
//! Why not the `serde_json_canonicalizer` crate: it is a single-maintainer 0.x
//! crate that uses `unsafe` and silently converts integers beyond 2^53 to doubles
//! (changing their value). The scheme itself is small, so it is implemented here
//! over [`serde_json::Value`] with `ryu-js` (maintained by the Boa JavaScript
//! engine) for the one hard part, ECMAScript number formatting, and integers
//! that a double cannot hold exactly are refused (RFC 8785 requires I-JSON, and
//! Python's `rfc8785` refuses them too), so a value can never be signed in a form
//! another implementation would print differently. So are doubles whose
//! canonical text a 64-bit parser reads back as such an integer (2^53 up to
//! the i64/u64 range): the verifier would refuse what was signed.

use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use thiserror::Error;

/// Largest integer magnitude an IEEE 754 double holds exactly (2^53 - 1), the
/// I-JSON limit for integers.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CanonicalError {
    /// The integer does not survive conversion to a double, so JavaScript, Python's
    /// `rfc8785` and other verifiers would not agree on its bytes.
    #[error("integer {0} is outside ±(2^53-1); RFC 8785 (I-JSON) numbers must be exact doubles")]
    IntegerOutOfRange(String),
    /// NaN and infinities have no JSON form (only reachable through
    /// serde_json's `arbitrary_precision`; a plain `Value` cannot hold them).
    #[error("number {0} is not a finite double")]
    NotFinite(String),
}

/// The RFC 8785 canonical form of `value`, as UTF-8 bytes.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = String::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out.into_bytes())
}

/// The RFC 8785 canonical form of `value`, as a string.
pub fn to_canonical_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

/// Canonical form of a JSON object given as a map (saves a clone into a `Value`).
pub fn object_to_canonical_bytes(map: &Map<String, Value>) -> Result<Vec<u8>, CanonicalError> {
    let mut out = String::with_capacity(256);
    write_object(map, &mut out)?;
    Ok(out.into_bytes())
}

fn write_value(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map, out)?,
    }
    Ok(())
}

fn write_object(map: &Map<String, Value>, out: &mut String) -> Result<(), CanonicalError> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_by(|a, b| utf16_cmp(a.0, b.0));
    out.push('{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(name, out);
        out.push(':');
        write_value(value, out)?;
    }
    out.push('}');
    Ok(())
}

/// RFC 8785 §3.2.3: member names compare as arrays of UTF-16 code units, which
/// differs from byte (code point) order for characters above U+FFFF.
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// RFC 8785 §3.2.2.2 (ECMAScript `JSON.stringify`): only `"`, `\` and control
/// characters are escaped; the short forms are used where they exist, otherwise
/// `\u00xx` with lowercase hex. Everything else, including non-ASCII, is literal.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = c as u32 as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 8785 §3.2.2.3: numbers are printed as ECMAScript prints the double.
/// Integers within ±(2^53-1) print as plain digits, which is what ECMAScript
/// gives for them; larger integers are refused rather than rounded.
fn write_number(n: &Number, out: &mut String) -> Result<(), CanonicalError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(CanonicalError::IntegerOutOfRange(u.to_string()));
        }
        out.push_str(&u.to_string());
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(CanonicalError::IntegerOutOfRange(i.to_string()));
        }
        out.push_str(&i.to_string());
    } else {
        match n.as_f64() {
            Some(f) if f.is_finite() => {
                let mut buf = ryu_js::Buffer::new();
                let text = buf.format_finite(f);
                // ECMAScript prints a double below 1e21 without an exponent.
                // Where that text fits an i64/u64, verifiers read it back as
                // an integer (serde_json, and the Python client, which
                // mirrors it), and one beyond ±(2^53-1) is then refused
                // (above): signing such a double, e.g. 1.66e19, would
                // publish a message every client rejects (issue 23, found by
                // the property tests). Refused here like the integer it
                // reads back as; larger doubles read back as doubles.
                if f.abs() > MAX_SAFE_INTEGER as f64
                    && (text.parse::<u64>().is_ok() || text.parse::<i64>().is_ok())
                {
                    return Err(CanonicalError::IntegerOutOfRange(text.to_owned()));
                }
                out.push_str(text);
            }
            _ => return Err(CanonicalError::NotFinite(n.to_string())),
        }
    }
    Ok(())
}

/// Parses JSON like `serde_json::from_slice`, but refuses duplicate object member
/// names at any depth.
///
/// Parsers disagree on duplicates (most keep the last, some the first), so a
/// signed message with duplicates could mean one thing to the verifier and
/// another to the application. I-JSON forbids them; refusing them removes the
/// ambiguity.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let StrictValue(value) = StrictValue::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A `Value` whose deserializer errors on duplicate member names.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate object member name {key:?}"
                )));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(text: &str) -> String {
        to_canonical_string(&parse_strict(text.as_bytes()).unwrap()).unwrap()
    }

    fn canon_f64(bits: u64) -> String {
        let v = Value::Number(Number::from_f64(f64::from_bits(bits)).unwrap());
        to_canonical_string(&v).unwrap()
    }

    /// RFC 8785 §3.2.2 example, byte for byte.
    #[test]
    fn rfc8785_section_3_2_2_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// RFC 8785 §3.2.3: sorting by UTF-16 code units puts U+1F600 (a surrogate
    /// pair starting 0xD83D) before U+FB33, unlike code-point order.
    #[test]
    fn rfc8785_section_3_2_3_sorting() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let out = canon(input);
        let order: Vec<&str> = out
            .split('"')
            .filter(|s| s.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
            .collect();
        assert_eq!(
            order,
            [
                "Carriage Return",
                "One",
                "Control",
                "Latin Small Letter O With Diaeresis",
                "Euro Sign",
                "Emoji: Grinning Face",
                "Hebrew Letter Dalet With Dagesh"
            ]
        );
    }

    /// RFC 8785 Appendix B: IEEE 754 bit patterns and their expected text.
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, want) in cases {
            assert_eq!(canon_f64(*bits), *want, "bits {bits:016x}");
        }
        // The appendix's ±2^53 print as integers a verifier reads back as
        // integers beyond ±(2^53-1): refused like those integers.
        for bits in [0x4340000000000000u64, 0xc340000000000000] {
            let v = Value::Number(Number::from_f64(f64::from_bits(bits)).unwrap());
            assert!(matches!(
                to_canonical_bytes(&v),
                Err(CanonicalError::IntegerOutOfRange(_))
            ));
        }
    }

    #[test]
    fn number_text_forms() {
        assert_eq!(
            canon("[1e21, 1E-7, 0.000001, -0, -0.0, 1.0, 100, 9007199254740991.0]"),
            "[1e+21,1e-7,0.000001,0,0,1,100,9007199254740991]"
        );
        assert_eq!(
            canon("[-9007199254740991, 9007199254740991]"),
            "[-9007199254740991,9007199254740991]"
        );
    }

    #[test]
    fn integers_beyond_double_precision_are_refused() {
        for text in [
            "9007199254740992",
            "-9007199254740992",
            "18446744073709551615",
        ] {
            let v = parse_strict(text.as_bytes()).unwrap();
            assert!(
                matches!(
                    to_canonical_bytes(&v),
                    Err(CanonicalError::IntegerOutOfRange(_))
                ),
                "{text}"
            );
        }
    }

    /// Issue 23 (property test `canonical`): the double 1.660726391161053e19
    /// printed as `16607263911610530000`, which the verifier's own parse
    /// reads as a u64 beyond 2^53 and refuses, so a signed config holding
    /// it was rejected by every client. Refused when signing now, like the
    /// integer it reads back as; doubles whose text overflows i64/u64 read
    /// back as doubles and keep their RFC 8785 form.
    #[test]
    fn doubles_that_print_as_unsafe_integers_are_refused() {
        for f in [
            1.660726391161053e19,
            9007199254740992.0,
            -9007199254740992.0,
            18446744073709549568.0,
            -9.2e18,
        ] {
            let v = json!([f]);
            assert!(
                matches!(
                    to_canonical_bytes(&v),
                    Err(CanonicalError::IntegerOutOfRange(_))
                ),
                "{f}"
            );
        }
        for f in [
            1e20,
            -1e19,
            -9223372036854775808.0,
            18446744073709551616.0,
            1e21,
            1.5e300,
            9007199254740991.0,
            0.5,
        ] {
            let bytes = to_canonical_bytes(&json!([f])).unwrap();
            let back = parse_strict(&bytes).unwrap();
            assert_eq!(to_canonical_bytes(&back).unwrap(), bytes, "{f}");
        }
    }

    #[test]
    fn strings_escape_like_json_stringify() {
        let v = json!({"k": "\u{1}\u{1f}\u{7f}\u{2028}é\t/"});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            "{\"k\":\"\\u0001\\u001f\u{7f}\u{2028}é\\t/\"}"
        );
    }

    #[test]
    fn nested_structures_sort_at_every_level() {
        let v = json!({"b": [{"z": 1, "a": {"y": null, "x": true}}], "a": {}});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            r#"{"a":{},"b":[{"a":{"x":true,"y":null},"z":1}]}"#
        );
        assert_eq!(
            object_to_canonical_bytes(v.as_object().unwrap()).unwrap(),
            to_canonical_bytes(&v).unwrap()
        );
    }

    #[test]
    fn strict_parse_rejects_duplicates_and_trailing_garbage() {
        assert!(parse_strict(br#"{"a":1,"a":2}"#).is_err());
        assert!(parse_strict(br#"{"x":{"a":1,"a":1}}"#).is_err());
        assert!(parse_strict(br#"[{"a":1},{"a":1}]"#).is_ok());
        assert!(parse_strict(br#"{"a":1} x"#).is_err());
        assert!(parse_strict(b"\xff").is_err());
    }
}
