//! Keyword search over every field of every service: key, description,
//! service name and (non-secret) value, with a relevance score in 0..=1.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde_json::Value;

use super::{Manager, ManagerError, Result};
use crate::domain::ServiceName;
use crate::store::ConfigItem;

/// Most results one search may return.
pub const MAX_RESULTS: usize = 200;
/// Longest accepted query.
pub const MAX_QUERY_LEN: usize = 200;

/// A search request.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub query: String,
    pub service: Option<ServiceName>,
    /// Only these services (service-scoped tokens).
    pub services: Option<Vec<ServiceName>>,
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
    pub service: ServiceName,
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
                    let items = store.list_items(Some(&service))?;
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
    services: BTreeMap<ServiceName, Arc<Segment>>,
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
    service: ServiceName,
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
        let mut grouped: BTreeMap<ServiceName, Vec<ConfigItem>> = BTreeMap::new();
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
                q.service.as_ref().is_none_or(|s| s == *service)
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
    fn new(service: &ServiceName, mut items: Vec<ConfigItem>) -> Self {
        items.sort_by(|a, b| a.key.cmp(&b.key));
        let mut segment = Self {
            service: service.clone(),
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
            service: self.service.clone(),
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
mod tests;
