//! Keyword search over every field of every service: key, description,
//! service name and (non-secret) value, with a relevance score in 0..=1.

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
    pub fn search(&self, q: &SearchQuery) -> Result<(Vec<SearchHit>, usize)> {
        check(q)?;
        let items = self.store.list_items(q.service.as_deref())?;
        Ok(search_items(items, q))
    }
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
    let terms: Vec<String> = q.query.split_whitespace().map(str::to_lowercase).collect();
    let mut hits: Vec<SearchHit> = items
        .into_iter()
        .filter(|i| q.service.as_deref().is_none_or(|s| i.service == s))
        .filter(|i| match q.complexity.as_deref() {
            Some("simple") => i.complexity == "simple",
            _ => true,
        })
        .filter(|i| q.r#type.as_deref().is_none_or(|t| i.r#type == t))
        .filter(|i| q.services.as_ref().is_none_or(|s| s.contains(&i.service)))
        .filter_map(|i| score(&i, &terms).map(|s| hit(i, s)))
        .collect();
    let total = hits.len();
    hits.sort_by(|a, b| {
        b.match_score
            .total_cmp(&a.match_score)
            .then_with(|| a.service.cmp(&b.service))
            .then_with(|| a.key.cmp(&b.key))
    });
    hits.truncate(q.max_results);
    (hits, total)
}

/// Validates a query, then searches `items`.
pub fn search_checked(items: Vec<ConfigItem>, q: &SearchQuery) -> Result<(Vec<SearchHit>, usize)> {
    check(q)?;
    Ok(search_items(items, q))
}

fn hit(i: ConfigItem, score: f64) -> SearchHit {
    SearchHit {
        value: if i.is_secret { None } else { i.value },
        service: i.service,
        key: i.key,
        r#type: i.r#type,
        complexity: i.complexity,
        description: i.description,
        is_secret: i.is_secret,
        match_score: (score * 1000.0).round() / 1000.0,
    }
}

/// Scores one item: each term must match somewhere (AND); a term scores by the
/// best place it matches. An empty query matches everything with score 1.
fn score(item: &ConfigItem, terms: &[String]) -> Option<f64> {
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
