//! Strings: arbitrary Unicode, the hostile classics (control characters,
//! path traversal, wildcards, huge lengths), RFC 3339-like timestamps, and
//! names close to the service / instance / key grammars.

use proptest::prelude::*;

/// Strings that have broken parsers before or sit on a grammar's edge.
pub const HOSTILE: &[&str] = &[
    "",
    " ",
    "\0",
    "\u{7f}",
    "\u{feff}",
    "\u{10ffff}",
    "é",
    "\u{1F600}",
    "../../etc/passwd",
    "a/b",
    "+",
    "#",
    "%00",
    "%2F",
    "$ref",
    "#/definitions/x",
    "null",
    "true",
    "NaN",
    "-0",
    "1e400",
    "-1e400",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "********",
    "tts-worker",
    "router",
    "volume_percent",
    "default",
    "9999-12-31T23:59:59-23:59",
    "0000-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59Z",
    "2026-01-15T09:30:00.000Z",
    "2026-02-30T00:00:00Z",
    "2026-01-15T24:00:00Z",
    "2026-01-15T23:59:60Z",
    "550e8400-e29b-41d4-a716-446655440000",
];

/// Any string: short arbitrary Unicode, a hostile classic, or a long run.
pub fn string() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "(?s).{0,24}",
        3 => prop::sample::select(HOSTILE).prop_map(str::to_owned),
        2 => rfc3339_like(),
        1 => ("[a-z]", 60usize..300).prop_map(|(c, n)| c.repeat(n)),
    ]
    .boxed()
}

/// An object member name: mostly identifier-like, sometimes anything.
pub fn key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z_][a-z0-9_]{0,12}",
        1 => string(),
    ]
    .boxed()
}

/// Names around the service-name grammar `^[a-z][a-z0-9-]{0,63}$`: valid
/// ones, ones just over the length, and near misses.
pub fn service_like() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z][a-z0-9-]{0,20}",
        1 => "[a-z][a-z0-9-]{62,66}",
        2 => "[A-Za-z0-9._+#/-]{0,12}",
        1 => string(),
    ]
    .boxed()
}

/// Names around the instance-id grammar `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
pub fn instance_like() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[A-Za-z0-9][A-Za-z0-9._-]{0,20}",
        1 => "[A-Za-z0-9][A-Za-z0-9._-]{62,66}",
        1 => "[A-Za-z0-9._+#/ -]{0,12}",
        1 => string(),
    ]
    .boxed()
}

/// Text shaped like an RFC 3339 timestamp with every part drawn over and a
/// little beyond its range: years 0000-9999 (the ends weighted), months
/// 0-13, days 0-32, hours 0-24, minutes and seconds 0-60, 0-12 fraction
/// digits, offsets `Z`/`z` or ±00:00 to ±24:60 (±23:59 weighted), and the
/// `T`/`t`/space separator. Half of them sit on the edges: the first and
/// last instants of years 0000 and 9999 with extreme offsets, where a UTC
/// conversion leaves the representable range
/// (`9999-12-31T23:59:59-23:59`, issue 23).
pub fn rfc3339_like() -> BoxedStrategy<String> {
    prop_oneof![1 => rfc3339_any(), 1 => rfc3339_edge()].boxed()
}

/// Edge instants: years 0000/9999, first/last day, first/last second,
/// offsets ±23:59 or any.
fn rfc3339_edge() -> BoxedStrategy<String> {
    (
        prop::sample::select(vec![0u32, 9999]),
        prop::sample::select(vec![(1u32, 1u32), (12, 31), (2, 29)]),
        prop::sample::select(vec!["00:00:00", "23:59:59", "23:59:60", "23:59:59.999999999"]),
        prop_oneof![
            2 => prop::sample::select(vec!["+23:59", "-23:59", "Z", "-00:01", "+00:01"]).prop_map(str::to_owned),
            1 => (prop::bool::ANY, 0u32..=23, 0u32..=59).prop_map(|(neg, h, m)| {
                format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })
            }),
        ],
    )
        .prop_map(|(y, (mo, d), time, off)| format!("{y:04}-{mo:02}-{d:02}T{time}{off}"))
        .boxed()
}

/// Every part drawn over (and a little beyond) its range.
fn rfc3339_any() -> BoxedStrategy<String> {
    let year = prop_oneof![
        2 => 0u32..=9999,
        1 => prop::sample::select(vec![0u32, 1, 1969, 1970, 2038, 9998, 9999]),
    ];
    let offset = prop_oneof![
        2 => prop::sample::select(vec!["Z".to_owned(), "z".to_owned()]),
        2 => (prop::bool::ANY, 0u32..=24, 0u32..=60).prop_map(|(neg, h, m)| {
            format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })
        }),
        2 => prop::sample::select(vec!["+23:59".to_owned(), "-23:59".to_owned(), "+00:00".to_owned(), "-00:00".to_owned()]),
        1 => "[+-]?[0-9:]{0,6}",
    ];
    (
        year,
        0u32..=13,
        0u32..=32,
        0u32..=24,
        0u32..=60,
        0u32..=60,
        "[0-9]{0,12}",
        prop::sample::select(vec!['T', 't', ' ']),
        offset,
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, sep, off)| {
            let frac = if frac.is_empty() {
                String::new()
            } else {
                format!(".{frac}")
            };
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}")
        })
        .boxed()
}

/// Seconds since the Unix epoch anywhere in the years -9999..=9999 (what
/// the `time` crate holds), the ends weighted: "now" for a clock check.
pub fn unix_seconds() -> BoxedStrategy<i64> {
    const FIRST: i64 = -377_705_116_800;
    const LAST: i64 = 253_402_300_799;
    prop_oneof![
        3 => FIRST..=LAST,
        1 => prop::sample::select(vec![FIRST, LAST, 0, 1_767_225_600]),
    ]
    .boxed()
}
