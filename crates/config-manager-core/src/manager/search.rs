//! Keyword search over every field of every service: key, description,
//! service name and (non-secret) value, with a relevance score in 0..=1.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde_json::Value;

use super::{Manager, ManagerError, Result};
use crate::store::ConfigItem;

/// Most results one search may return.
pub const MAX_RESULTS: usize = 200;
/// Longest accepted query.
pub const MAX_QUERY_LEN: usize = 200;

/// A search request.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub query: String,
    pub service: Option<String>,
    /// Only these services (service-scoped tokens).
    pub services: Option<Vec<String>>,
    /// `simple` or `advanced`. `simple` finds only simple fields; `advanced`
    /// (the advanced view) finds every field.
    pub complexity: Option<String>,
    /// Field type (`string`, `integer`, `number`, `boolean`, `enum`, `path`, `secret`).
    pub r#type: Option<String>,
    pub max_results: usize,
}

/// One search result.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub service: String,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    pub r#type: String,
    pub complexity: String,
    pub description: String,
    pub is_secret: bool,
    pub match_score: f64,
}

impl Manager {
    /// Runs a search over the database's index; results are ordered by score,
    /// then service and key. Returns the hits (at most `max_results`) and the
    /// total number of matches.
    ///
    /// Scores an in-memory copy of the store's search table (lower-cased
    /// once), one segment per service: after a write only the changed
    /// services' segments are reloaded (reading, parsing and lower-casing
    /// every row per request, and later reloading every row after each
    /// write, made a query's or a write's cost grow with the number of
    /// services; the figures are in docs/performance.md).
    pub fn search(&self, q: &SearchQuery) -> Result<(Vec<SearchHit>, usize)> {
        check(q)?;
        let index = self.search_index.current(&self.store)?;
        Ok(index.rank(q))
    }
}

/// The store's search table in memory. Tied to one store: it follows
/// [`Store::items_generation`](crate::store::Store::items_generation),
/// reloading the services
/// [`Store::items_changed_since`](crate::store::Store::items_changed_since)
/// names (everything when the change log does not reach back far enough).
#[derive(Debug, Default)]
pub(super) struct SearchIndex {
    current: RwLock<Option<Arc<IndexSnapshot>>>,
    /// One reload at a time: concurrent searches after a write wait for it
    /// instead of each reading the changed rows.
    rebuild: Mutex<()>,
}

impl SearchIndex {
    fn current(&self, store: &crate::store::Store) -> Result<Arc<IndexSnapshot>> {
        let latest = || {
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        let fresh = |generation: u64| latest().filter(|s| s.generation == generation);
        if let Some(snapshot) = fresh(store.items_generation()) {
            return Ok(snapshot);
        }
        let _one = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(snapshot) = fresh(store.items_generation()) {
            return Ok(snapshot);
        }
        // The generation and the changed services are read before the rows:
        // a write committed in between leaves the snapshot labelled older
        // than its rows, which only costs one more reload, never a stale
        // answer.
        let update = latest().and_then(|base| {
            store
                .items_changed_since(base.generation)
                .map(|changed| (base, changed))
        });
        let snapshot = match update {
            Some((base, (generation, changed))) => {
                let mut services = base.services.clone();
                for service in changed {
                    // Only valid names are ever stored; anything else has no rows.
                    let items = match crate::domain::ServiceName::parse(&service) {
                        Ok(name) => store.list_items(Some(&name))?,
                        Err(_) => Vec::new(),
                    };
                    if items.is_empty() {
                        services.remove(&service);
                    } else {
                        let segment = Segment::new(&service, items);
                        services.insert(service, Arc::new(segment));
                    }
                }
                IndexSnapshot {
                    generation,
                    services,
                }
            }
            None => {
                let generation = store.items_generation();
                IndexSnapshot::new(generation, store.list_items(None)?)
            }
        };
        let snapshot = Arc::new(snapshot);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        Ok(snapshot)
    }
}

/// The index: one [`Segment`] per service, in service order.
#[derive(Debug)]
pub(super) struct IndexSnapshot {
    generation: u64,
    services: BTreeMap<String, Arc<Segment>>,
}

/// One service's rows ordered by key, kept in two buffers instead of one
/// [`ConfigItem`] per row (seven allocations each; at a thousand services
/// the rows were a large part of the index's memory, docs/performance.md):
///
/// - `text`, what matching looks at: per row its key, description, service
///   and (non-secret) value, lower-cased and joined by newlines, all rows'
///   texts joined by newlines. Query terms never contain whitespace, so a
///   term found in the buffer lies inside one field of one row, and one SIMD
///   scan of the buffer finds the candidates of a query.
/// - `shown`, what a hit shows: per row its key, description, type,
///   complexity and value (as JSON text) as stored, back to back.
#[derive(Debug)]
struct Segment {
    service: Box<str>,
    rows: Vec<Row>,
    text: String,
    shown: String,
}

/// Where one row's fields are in its segment's buffers: each position is
/// where the row starts, each `*_ends` where its fields end, relative to
/// that start (a row is far smaller than 4 GiB).
#[derive(Debug)]
struct Row {
    /// `[key, description, service, value]` in `text`, each field starting
    /// one byte (the newline) after the previous one ends.
    text_start: usize,
    text_ends: [u32; 4],
    /// `[key, description, type, complexity, value]` in `shown`, back to
    /// back; the value is JSON text, empty when the row has none.
    shown_start: usize,
    shown_ends: [u32; 5],
    is_secret: bool,
    /// A hit shows a value (secrets never have one).
    has_value: bool,
}

/// One row's fields as matching sees them.
struct Fields<'a> {
    all: &'a str,
    key: &'a str,
    description: &'a str,
    service: &'a str,
    value: &'a str,
}

/// One row's fields as a hit shows them.
struct Shown<'a> {
    key: &'a str,
    description: &'a str,
    r#type: &'a str,
    complexity: &'a str,
    value: &'a str,
}

impl IndexSnapshot {
    fn new(generation: u64, items: Vec<ConfigItem>) -> Self {
        let mut grouped: BTreeMap<String, Vec<ConfigItem>> = BTreeMap::new();
        for item in items {
            grouped.entry(item.service.clone()).or_default().push(item);
        }
        Self {
            generation,
            services: grouped
                .into_iter()
                .map(|(service, items)| {
                    let segment = Segment::new(&service, items);
                    (service, Arc::new(segment))
                })
                .collect(),
        }
    }

    /// Filters and scores the rows; returns the best `max_results` hits,
    /// ordered by score, then service and key, and the number of matches.
    fn rank(&self, q: &SearchQuery) -> (Vec<SearchHit>, usize) {
        let terms: Vec<String> = q.query.split_whitespace().map(str::to_lowercase).collect();
        let longest = terms.iter().map(String::as_str).max_by_key(|t| t.len());
        let finder = longest.map(|t| memchr::memmem::Finder::new(t.as_bytes()));
        // (score, segment number, row): segments are in service order and
        // rows in key order, so the pair breaks ties by (service, key).
        let mut matches: Vec<(f64, usize, usize)> = Vec::new();
        let segments: Vec<&Segment> = self
            .services
            .iter()
            .filter(|(service, _)| {
                q.service.as_deref().is_none_or(|s| s == service.as_str())
                    && q.services.as_ref().is_none_or(|s| s.contains(service))
            })
            .map(|(_, segment)| segment.as_ref())
            .collect();
        for (n, segment) in segments.iter().enumerate() {
            segment.candidates(finder.as_ref(), |i| {
                let row = &segment.rows[i];
                if selected(&segment.shown(row), q) {
                    if let Some(s) = score(&segment.fields(row), &terms, longest) {
                        matches.push((rounded(s), n, i));
                    }
                }
            });
        }
        let total = matches.len();
        let order = |a: &(f64, usize, usize), b: &(f64, usize, usize)| -> Ordering {
            b.0.total_cmp(&a.0)
                .then_with(|| a.1.cmp(&b.1))
                .then_with(|| a.2.cmp(&b.2))
        };
        if matches.len() > q.max_results {
            if q.max_results > 0 {
                matches.select_nth_unstable_by(q.max_results - 1, order);
            }
            matches.truncate(q.max_results);
        }
        matches.sort_by(order);
        let hits = matches
            .into_iter()
            .map(|(score, n, i)| segments[n].hit(&segments[n].rows[i], score))
            .collect();
        (hits, total)
    }
}

/// `ends` (absolute positions in a buffer) relative to `start`, or `None`
/// when a row does not fit the `u32` offsets.
fn relative<const N: usize>(start: usize, ends: [usize; N]) -> Option<[u32; N]> {
    let mut out = [0; N];
    for (o, end) in out.iter_mut().zip(ends) {
        *o = u32::try_from(end - start).ok()?;
    }
    Some(out)
}

impl Segment {
    /// The segment of `service` from its items (all of that service).
    fn new(service: &str, mut items: Vec<ConfigItem>) -> Self {
        items.sort_by(|a, b| a.key.cmp(&b.key));
        let mut segment = Self {
            service: service.into(),
            rows: Vec::with_capacity(items.len()),
            text: String::new(),
            shown: String::new(),
        };
        for item in items {
            segment.push(item);
        }
        segment.text.shrink_to_fit();
        segment.shown.shrink_to_fit();
        segment
    }

    fn push(&mut self, item: ConfigItem) {
        let (text_len, shown_len) = (self.text.len(), self.shown.len());
        let text = &mut self.text;
        if !text.is_empty() {
            text.push('\n');
        }
        let text_start = text.len();
        let mut ends = [0; 4];
        text.push_str(&item.key.to_lowercase());
        ends[0] = text.len();
        text.push('\n');
        text.push_str(&item.description.to_lowercase());
        ends[1] = text.len();
        text.push('\n');
        text.push_str(&item.service.to_lowercase());
        ends[2] = text.len();
        text.push('\n');
        match (&item.value, item.is_secret) {
            (Some(Value::String(s)), false) => text.push_str(&s.to_lowercase()),
            (Some(v), false) => text.push_str(&v.to_string().to_lowercase()),
            _ => {}
        }
        ends[3] = text.len();
        let text_ends = relative(text_start, ends);

        let shown = &mut self.shown;
        let shown_start = shown.len();
        let mut ends = [0; 5];
        for (end, field) in
            ends.iter_mut()
                .zip([&item.key, &item.description, &item.r#type, &item.complexity])
        {
            shown.push_str(field);
            *end = shown.len();
        }
        let has_value = match (&item.value, item.is_secret) {
            (Some(value), false) => {
                shown.push_str(&value.to_string());
                true
            }
            _ => false,
        };
        ends[4] = shown.len();
        let shown_ends = relative(shown_start, ends);

        let (Some(text_ends), Some(shown_ends)) = (text_ends, shown_ends) else {
            // Not indexed: a row of gigabytes (no write could store one).
            self.text.truncate(text_len);
            self.shown.truncate(shown_len);
            return;
        };
        self.rows.push(Row {
            text_start,
            text_ends,
            shown_start,
            shown_ends,
            is_secret: item.is_secret,
            has_value,
        });
    }

    fn fields(&self, row: &Row) -> Fields<'_> {
        let at = |i: usize| row.text_start + row.text_ends[i] as usize;
        let (key, description, service, value) = (at(0), at(1), at(2), at(3));
        Fields {
            all: &self.text[row.text_start..value],
            key: &self.text[row.text_start..key],
            description: &self.text[key + 1..description],
            service: &self.text[description + 1..service],
            value: &self.text[service + 1..value],
        }
    }

    fn shown(&self, row: &Row) -> Shown<'_> {
        let at = |i: usize| row.shown_start + row.shown_ends[i] as usize;
        Shown {
            key: &self.shown[row.shown_start..at(0)],
            description: &self.shown[at(0)..at(1)],
            r#type: &self.shown[at(1)..at(2)],
            complexity: &self.shown[at(2)..at(3)],
            value: &self.shown[at(3)..at(4)],
        }
    }

    /// The hit of `row`: its fields as stored (the value parsed back from
    /// the JSON text it was written as, which gives the same value).
    fn hit(&self, row: &Row, score: f64) -> SearchHit {
        let shown = self.shown(row);
        let value = row
            .has_value
            .then(|| serde_json::from_str(shown.value).ok())
            .flatten();
        SearchHit {
            service: self.service.to_string(),
            key: shown.key.to_owned(),
            value,
            r#type: shown.r#type.to_owned(),
            complexity: shown.complexity.to_owned(),
            description: shown.description.to_owned(),
            is_secret: row.is_secret,
            match_score: score,
        }
    }

    /// Calls `consider` with every row that may match: all rows without a
    /// term, else the rows whose text contains the longest term (one scan).
    fn candidates(
        &self,
        finder: Option<&memchr::memmem::Finder<'_>>,
        mut consider: impl FnMut(usize),
    ) {
        let Some(finder) = finder else {
            (0..self.rows.len()).for_each(consider);
            return;
        };
        // Matches come in text order, so the row is found by walking forward.
        let haystack = self.text.as_bytes();
        let mut row = 0;
        let mut at = 0;
        while let Some(found) = haystack.get(at..).and_then(|h| finder.find(h)) {
            let pos = at + found;
            while self
                .rows
                .get(row + 1)
                .is_some_and(|next| next.text_start <= pos)
            {
                row += 1;
            }
            consider(row);
            // Skip the rest of this row's text.
            let this = &self.rows[row];
            at = this.text_start + this.text_ends[3] as usize + 1;
            row += 1;
        }
    }
}

/// Whether the query's filters keep a row (the service filters choose the
/// segments).
fn selected(row: &Shown<'_>, q: &SearchQuery) -> bool {
    (match q.complexity.as_deref() {
        Some("simple") => row.complexity == "simple",
        _ => true,
    }) && q.r#type.as_deref().is_none_or(|t| row.r#type == t)
}

fn check(q: &SearchQuery) -> Result<()> {
    if q.query.chars().count() > MAX_QUERY_LEN {
        return Err(ManagerError::BadRequest(format!(
            "query must be at most {MAX_QUERY_LEN} characters"
        )));
    }
    if !(1..=MAX_RESULTS).contains(&q.max_results) {
        return Err(ManagerError::BadRequest(format!(
            "max_results must be between 1 and {MAX_RESULTS}"
        )));
    }
    Ok(())
}

/// Scores and filters index rows (from the database or built from the
/// last-known-good cache).
pub fn search_items(items: Vec<ConfigItem>, q: &SearchQuery) -> (Vec<SearchHit>, usize) {
    IndexSnapshot::new(0, items).rank(q)
}

/// Validates a query, then searches `items`.
pub fn search_checked(items: Vec<ConfigItem>, q: &SearchQuery) -> Result<(Vec<SearchHit>, usize)> {
    check(q)?;
    Ok(search_items(items, q))
}

/// Scores are reported (and ordered) to three decimals.
fn rounded(score: f64) -> f64 {
    (score * 1000.0).round() / 1000.0
}

/// Scores one item: each term must match somewhere (AND); a term scores by the
/// best place it matches. An empty query matches everything with score 1.
/// `known` is a term the caller already found in this row.
fn score(f: &Fields<'_>, terms: &[String], known: Option<&str>) -> Option<f64> {
    if terms.is_empty() {
        return Some(1.0);
    }
    let mut total = 0.0;
    for t in terms {
        let t = t.as_str();
        // One scan of the whole row settles a term that matches nowhere.
        if known != Some(t) && !f.all.contains(t) {
            return None;
        }
        let s = if f.key == t {
            1.0
        } else if f.key.starts_with(t) || f.key.split(['_', ' ']).any(|w| w == t) {
            0.9
        } else if f.key.contains(t) {
            0.75
        } else if f
            .description
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| w == t)
        {
            0.6
        } else if f.description.contains(t) {
            0.5
        } else if f.service.contains(t) {
            0.4
        } else if f.value.contains(t) {
            0.3
        } else {
            return None;
        };
        total += s;
    }
    Some(total / terms.len() as f64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::domain::ServiceName;
    use crate::manager::{ManagerOptions, PutRequest};
    use crate::schema::SchemaRegistry;
    use crate::store::Store;

    fn manager() -> (tempfile::TempDir, Manager) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        let options = ManagerOptions {
            allow_unknown_services: false,
            env_policy: Arc::default(),
            env: Arc::new(|_| None),
            secrets: None,
            auto_fix_schema: false,
        };
        let m = Manager::open(store, SchemaRegistry::builtin().unwrap(), options).unwrap();
        (dir, m)
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
                expected_version: Some(version),
                merge: true,
                actor: "test".into(),
                reason: None,
                change_type: crate::change_type::ChangeType::Update,
            },
        )
        .unwrap()
        .stored
        .version
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
    fn reference(items: &[ConfigItem], q: &SearchQuery) -> (Vec<(String, String, f64)>, usize) {
        let terms: Vec<String> = q.query.split_whitespace().map(str::to_lowercase).collect();
        let mut hits: Vec<(String, String, f64)> = items
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
                    service: Some("tts-worker".into()),
                    ..Default::default()
                },
                SearchQuery {
                    complexity: Some("simple".into()),
                    r#type: Some("string".into()),
                    ..Default::default()
                },
                SearchQuery {
                    services: Some(vec!["router".into(), "llm-worker".into()]),
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
                let got: Vec<(String, String, f64)> = hits
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
            service: "Odd-Service".into(),
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
                expected_version: Some(1),
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
            let got: Vec<(String, String, f64)> = after
                .rank(&q)
                .0
                .into_iter()
                .map(|h| (h.service, h.key, h.match_score))
                .collect();
            let want: Vec<(String, String, f64)> = full
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
}
