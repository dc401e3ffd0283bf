//! Tests of the keyword search: ranking against a reference scorer, hits as stored, and the index following writes.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::domain::{ServiceName, Version};
use crate::manager::test_support::{open_manager, test_options};
use crate::manager::{ManagerOptions, PutRequest};

fn manager() -> (tempfile::TempDir, Manager) {
    open_manager(ManagerOptions {
        secrets: None,
        ..test_options()
    })
}

fn name(s: &str) -> ServiceName {
    ServiceName::parse(s).unwrap()
}

/// PATCHes tts-worker's `volume_percent`; returns the new version.
fn set_volume(m: &Manager, volume: i64, version: i64) -> i64 {
    let tts = ServiceName::parse("tts-worker").unwrap();
    m.put(
        &tts,
        PutRequest {
            config: json!({ "volume_percent": volume })
                .as_object()
                .cloned()
                .unwrap(),
            expected_version: Some(Version::new(version).unwrap()),
            merge: true,
            actor: "test".into(),
            reason: None,
            change_type: crate::change_type::ChangeType::Update,
        },
    )
    .unwrap()
    .stored
    .version
    .get()
}

fn query(text: &str, max_results: usize) -> SearchQuery {
    SearchQuery {
        query: text.into(),
        max_results,
        ..Default::default()
    }
}

/// The scoring as first written: lower-cases every field per item.
fn reference_score(item: &ConfigItem, terms: &[String]) -> Option<f64> {
    if terms.is_empty() {
        return Some(1.0);
    }
    let key = item.key.to_lowercase();
    let key_words = key.replace('_', " ");
    let description = item.description.to_lowercase();
    let service = item.service.to_lowercase();
    let value = match (&item.value, item.is_secret) {
        (Some(Value::String(s)), false) => s.to_lowercase(),
        (Some(v), false) => v.to_string().to_lowercase(),
        _ => String::new(),
    };
    let mut total = 0.0;
    for t in terms {
        let s = if key == *t {
            1.0
        } else if key.starts_with(t.as_str()) || key_words.split(' ').any(|w| w == t) {
            0.9
        } else if key.contains(t.as_str()) {
            0.75
        } else if description
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| w == t)
        {
            0.6
        } else if description.contains(t.as_str()) {
            0.5
        } else if service.contains(t.as_str()) {
            0.4
        } else if value.contains(t.as_str()) {
            0.3
        } else {
            return None;
        };
        total += s;
    }
    Some(total / terms.len() as f64)
}

/// Full sort, then truncate: what `rank` must return.
fn reference(items: &[ConfigItem], q: &SearchQuery) -> (Vec<(ServiceName, String, f64)>, usize) {
    let terms: Vec<String> = q.query.split_whitespace().map(str::to_lowercase).collect();
    let mut hits: Vec<(ServiceName, String, f64)> = items
        .iter()
        .filter(|i| q.service.as_ref().is_none_or(|s| &i.service == s))
        .filter(|i| q.complexity.as_deref() != Some("simple") || i.complexity == "simple")
        .filter(|i| q.r#type.as_ref().is_none_or(|t| &i.r#type == t))
        .filter(|i| q.services.as_ref().is_none_or(|s| s.contains(&i.service)))
        .filter_map(|i| {
            reference_score(i, &terms).map(|s| (i.service.clone(), i.key.clone(), rounded(s)))
        })
        .collect();
    let total = hits.len();
    hits.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then_with(|| a.0.cmp(&b.0))
            .then_with(|| a.1.cmp(&b.1))
    });
    hits.truncate(q.max_results);
    (hits, total)
}

#[test]
fn ranking_matches_the_reference_scoring() {
    let (_d, m) = manager();
    let items = m.store().list_items(None).unwrap();
    for text in [
        "",
        "volume",
        "provider",
        "key",
        "url",
        "piper",
        "cache dir",
        "TTS model",
        "worker",
        "0",
        "true",
        "e",
        "no-such-term",
        "wake_cache",
    ] {
        let filtered = [
            SearchQuery::default(),
            SearchQuery {
                service: Some(name("tts-worker")),
                ..Default::default()
            },
            SearchQuery {
                complexity: Some("simple".into()),
                r#type: Some("string".into()),
                ..Default::default()
            },
            SearchQuery {
                services: Some(vec![name("router"), name("llm-worker")]),
                ..Default::default()
            },
        ];
        for (max, filters) in [1, 3, 50, 200].into_iter().zip(filtered.iter().cycle()) {
            let q = SearchQuery {
                query: text.into(),
                max_results: max,
                ..filters.clone()
            };
            let (hits, total) = m.search(&q).unwrap();
            let got: Vec<(ServiceName, String, f64)> = hits
                .into_iter()
                .map(|h| (h.service, h.key, h.match_score))
                .collect();
            assert_eq!(
                (got, total),
                reference(&items, &q),
                "query {text:?}, max {max}"
            );
        }
    }
}

/// What a hit showed when the index kept a whole `ConfigItem` per row.
fn reference_hit(i: &ConfigItem, score: f64) -> SearchHit {
    SearchHit {
        value: if i.is_secret { None } else { i.value.clone() },
        service: i.service.clone(),
        key: i.key.clone(),
        r#type: i.r#type.clone(),
        complexity: i.complexity.clone(),
        description: i.description.clone(),
        is_secret: i.is_secret,
        match_score: score,
    }
}

#[test]
fn hits_show_the_rows_as_stored() {
    let (_d, m) = manager();
    let mut items = m.store().list_items(None).unwrap();
    let item = |key: &str, value: Option<Value>, r#type: &str, is_secret: bool| ConfigItem {
        service: name("odd-service"),
        key: key.into(),
        value,
        r#type: r#type.into(),
        complexity: "Unusual".into(),
        description: "Ünïcode Description\nover two lines".into(),
        is_secret,
    };
    items.extend([
        item(
            "Upper_Key",
            Some(json!("MiXeD-Zqv \"quoted\" ✓")),
            "string",
            false,
        ),
        item("float", Some(json!(0.1)), "number", false),
        item("big", Some(json!(1e300)), "number", false),
        item("negative", Some(json!(-7)), "integer", false),
        item(
            "nested",
            Some(json!({"b": [1, null, "X"], "a": 2.5})),
            "object",
            false,
        ),
        item("nothing", Some(Value::Null), "null", false),
        item("absent", None, "weird type", false),
        item("secret", Some(json!("zqw hidden")), "secret", true),
    ]);
    let q = query("", MAX_RESULTS);
    let (hits, total) = search_items(items.clone(), &q);
    assert_eq!(total, items.len());
    assert_eq!(hits.len(), items.len());
    for hit in &hits {
        let item = items
            .iter()
            .find(|i| i.service == hit.service && i.key == hit.key)
            .unwrap();
        assert_eq!(
            serde_json::to_string(hit).unwrap(),
            serde_json::to_string(&reference_hit(item, 1.0)).unwrap()
        );
    }
    // Matching is on the lower-cased text, the hit shows the value as stored.
    let (hits, _) = search_items(items.clone(), &query("zqv", 10));
    assert_eq!(hits[0].key, "Upper_Key");
    assert_eq!(hits[0].value, Some(json!("MiXeD-Zqv \"quoted\" ✓")));
    let (hits, _) = search_items(items, &query("zqw", 10));
    assert!(hits.is_empty(), "secret values are not searched");
}

#[test]
fn the_index_follows_writes() {
    let (_d, m) = manager();
    let found = |m: &Manager, text: &str| {
        m.search(&query(text, 200))
            .unwrap()
            .0
            .iter()
            .any(|h| h.service == "tts-worker" && h.key == "volume_percent")
    };
    assert!(!found(&m, "173"));
    let write = set_volume;
    let version = write(&m, 173, 1);
    assert!(
        found(&m, "173"),
        "a search after a write sees the new value"
    );
    write(&m, 42, version);
    assert!(!found(&m, "173"), "and no longer the old one");
    assert!(found(&m, "42"));
}

#[test]
fn a_write_reloads_only_the_changed_services_segment() {
    let (_d, m) = manager();
    let tts = ServiceName::parse("tts-worker").unwrap();
    let before = m.search_index.current(m.store()).unwrap();
    m.put(
        &tts,
        PutRequest {
            config: json!({ "volume_percent": 12 })
                .as_object()
                .cloned()
                .unwrap(),
            expected_version: Some(Version::FIRST),
            merge: true,
            actor: "test".into(),
            reason: None,
            change_type: crate::change_type::ChangeType::Update,
        },
    )
    .unwrap();
    let after = m.search_index.current(m.store()).unwrap();
    assert!(after.generation > before.generation);
    assert!(
        Arc::ptr_eq(&before.services["router"], &after.services["router"]),
        "an unchanged service keeps its segment"
    );
    assert!(!Arc::ptr_eq(
        &before.services["tts-worker"],
        &after.services["tts-worker"]
    ));
    // And the result is what a full reload gives.
    let full = IndexSnapshot::new(0, m.store().list_items(None).unwrap());
    for text in ["12", "volume", ""] {
        let q = query(text, 200);
        let got: Vec<(ServiceName, String, f64)> = after
            .rank(&q)
            .0
            .into_iter()
            .map(|h| (h.service, h.key, h.match_score))
            .collect();
        let want: Vec<(ServiceName, String, f64)> = full
            .rank(&q)
            .0
            .into_iter()
            .map(|h| (h.service, h.key, h.match_score))
            .collect();
        assert_eq!(got, want, "{text:?}");
    }
}

#[test]
fn an_index_older_than_the_change_log_reloads_everything() {
    let (_d, m) = manager();
    let before = m.search_index.current(m.store()).unwrap();
    let mut version = 1;
    for i in 0..=crate::store::ITEMS_CHANGE_LOG as i64 {
        version = set_volume(&m, i % 100, version);
    }
    assert!(m.store().items_changed_since(before.generation).is_none());
    let after = m.search_index.current(m.store()).unwrap();
    assert!(
        !Arc::ptr_eq(&before.services["router"], &after.services["router"]),
        "reloaded from the table"
    );
    let hits = m.search(&query("volume_percent", 200)).unwrap().0;
    let tts_hit = hits
        .iter()
        .find(|h| h.service == "tts-worker" && h.key == "volume_percent")
        .unwrap();
    assert_eq!(
        tts_hit.value,
        Some(json!(crate::store::ITEMS_CHANGE_LOG as i64 % 100))
    );
}
