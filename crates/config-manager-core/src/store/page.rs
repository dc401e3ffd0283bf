//! Pages of the list endpoints, cut by size as well as by count.
//!
//! One row can be large (a 240 KB value, in `old_value` and `new_value` of a
//! history row, or in every version snapshot), so a count limit alone lets one
//! request hold hundreds of megabytes. A [`JsonPage`] is the response body
//! itself: rows are serialized into it one at a time as they are read from
//! SQLite, and the page stops before the row that would take it past its byte
//! budget. The first row always goes in, so a row larger than the budget comes
//! back alone and paging always makes progress. A request therefore holds one
//! page and one row, whatever the rows' sizes and the `limit`.
//!
//! The store reads one row more than the limit (see [`JsonPage::fetch_limit`]),
//! so a page knows exactly whether another one follows: the cursor of the
//! next page is `Some` only then.

use serde::Serialize;
use serde_json::Value;

/// The byte budget of one list page (1 MiB). Sized so that 64 concurrent
/// requests of maximal pages, each held until it is sent, stay well inside
/// the memory of a small robot computer (docs/performance.md, "Memory per
/// request"); one page still carries hundreds of ordinary history rows.
pub const PAGE_BYTE_BUDGET: usize = 1024 * 1024;

/// Room kept for the fields written after the rows (counts, cursor, flags).
const TRAILER_ROOM: usize = 256;

/// A JSON object `{"<field>": [rows...], <trailer>}` built under a byte budget.
#[derive(Debug)]
pub struct JsonPage {
    buf: Vec<u8>,
    /// The row being considered, serialized (reused between rows).
    row: Vec<u8>,
    budget: usize,
    limit: usize,
    rows: usize,
    last_key: Option<i64>,
    more: bool,
    truncated: bool,
}

impl JsonPage {
    /// A page whose rows go into the array `field`, at most `limit` rows and
    /// `budget` bytes (one larger row alone excepted).
    pub fn new(field: &str, limit: u32, budget: usize) -> Self {
        let mut buf = Vec::new();
        buf.push(b'{');
        // A field name is one of ours; serializing it keeps it valid JSON anyway.
        let _ = serde_json::to_writer(&mut buf, field);
        buf.extend_from_slice(b":[");
        Self {
            buf,
            row: Vec::new(),
            budget,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            rows: 0,
            last_key: None,
            more: false,
            truncated: false,
        }
    }

    /// How many rows the query should read: one past the limit, so the page
    /// knows whether a next page exists.
    pub fn fetch_limit(&self) -> u32 {
        u32::try_from(self.limit.saturating_add(1)).unwrap_or(u32::MAX)
    }

    /// Adds `row` (whose keyset key is `key`) unless the page is full.
    /// Returns `false` once the page is complete: the caller stops reading.
    pub fn push<T: Serialize>(&mut self, key: i64, row: &T) -> Result<bool, serde_json::Error> {
        if self.rows >= self.limit {
            self.more = true;
            return Ok(false);
        }
        self.row.clear();
        serde_json::to_writer(&mut self.row, row)?;
        let after = self
            .buf
            .len()
            .saturating_add(self.row.len())
            .saturating_add(1 + TRAILER_ROOM);
        if self.rows > 0 && after > self.budget {
            self.more = true;
            self.truncated = true;
            return Ok(false);
        }
        if self.rows > 0 {
            self.buf.push(b',');
        }
        self.buf.extend_from_slice(&self.row);
        self.rows += 1;
        self.last_key = Some(key);
        Ok(true)
    }

    /// Rows in the page.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The key to pass for the next (older) page: the last row's key when
    /// more rows follow, `None` at the end.
    pub fn next_key(&self) -> Option<i64> {
        self.last_key.filter(|_| self.more)
    }

    /// Whether the page stopped at its byte budget before `limit` rows.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Closes the array, writes `trailer` (small scalar fields) and returns
    /// the body.
    pub fn finish(mut self, trailer: &[(&str, Value)]) -> Vec<u8> {
        self.buf.push(b']');
        for (name, value) in trailer {
            self.buf.push(b',');
            let _ = serde_json::to_writer(&mut self.buf, name);
            self.buf.push(b':');
            let _ = serde_json::to_writer(&mut self.buf, value);
        }
        self.buf.push(b'}');
        self.buf
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn body(page: JsonPage) -> Value {
        let next = page.next_key();
        let truncated = page.truncated();
        let bytes = page.finish(&[("next", json!(next)), ("truncated", json!(truncated))]);
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn an_empty_page_is_valid_json_without_a_cursor() {
        let page = JsonPage::new("entries", 10, 1000);
        assert_eq!(
            body(page),
            json!({"entries": [], "next": null, "truncated": false})
        );
    }

    #[test]
    fn the_limit_ends_a_page_and_the_extra_row_sets_the_cursor() {
        let mut page = JsonPage::new("entries", 2, 1 << 20);
        assert_eq!(page.fetch_limit(), 3);
        assert!(page.push(9, &json!({"id": 9})).unwrap());
        assert!(page.push(8, &json!({"id": 8})).unwrap());
        assert!(!page.push(7, &json!({"id": 7})).unwrap());
        let v = body(page);
        assert_eq!(v["entries"].as_array().unwrap().len(), 2);
        assert_eq!(v["next"], 8);
        assert_eq!(v["truncated"], false);
    }

    #[test]
    fn exactly_limit_rows_and_no_more_has_no_cursor() {
        let mut page = JsonPage::new("entries", 2, 1 << 20);
        assert!(page.push(2, &json!(2)).unwrap());
        assert!(page.push(1, &json!(1)).unwrap());
        assert_eq!(body(page)["next"], Value::Null);
    }

    #[test]
    fn the_budget_cuts_a_page_and_every_page_stays_inside_it() {
        let big = "x".repeat(300);
        let budget = 1000;
        let mut page = JsonPage::new("entries", 100, budget);
        let mut keys = Vec::new();
        for key in (1..=10).rev() {
            if !page.push(key, &json!({"id": key, "v": big})).unwrap() {
                break;
            }
            keys.push(key);
        }
        assert!(page.truncated());
        assert_eq!(page.next_key(), keys.last().copied());
        let bytes = page.finish(&[("next", json!(8))]);
        assert!(bytes.len() <= budget, "{} bytes", bytes.len());
        assert!(keys.len() >= 2);
    }

    #[test]
    fn a_row_larger_than_the_budget_comes_back_alone() {
        let huge = "y".repeat(5000);
        let mut page = JsonPage::new("entries", 100, 1000);
        assert!(page.push(5, &json!(huge)).unwrap());
        assert!(!page.push(4, &json!("small")).unwrap());
        let v = body(page);
        assert_eq!(v["entries"].as_array().unwrap().len(), 1);
        assert_eq!(v["next"], 5);
        assert_eq!(v["truncated"], true);
    }
}
