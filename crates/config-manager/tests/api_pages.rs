//! List pages are cut by size as well as by count (issue 23, finding 2):
//! with several large values stored, a history, versions or audit page stays
//! inside the page budget in bytes, and following the cursor returns every
//! row exactly once. Real binary, real SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{Server, READ_TOKEN, WRITE_TOKEN};
use serde_json::{json, Value};

/// The page budget the service documents (docs/api.md, "Paging").
const PAGE_BUDGET: usize = 1024 * 1024;
/// Stored values of this size make a history row (old + new value) about
/// 400 KB and a version about 200 KB: a few rows fill a page.
const VALUE_LEN: usize = 200_000;
const WRITES: usize = 8;

/// A service with one free-text field, and `WRITES` large values written to
/// it; returns the values in write order.
async fn service_with_large_values(s: &Server) -> Vec<String> {
    let (status, body) = s
        .put_schema(
            "blob-store",
            r#"{"type":"object","properties":{"data":{"type":"string","default":""}}}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut values = Vec::new();
    for i in 0..WRITES {
        let value = format!("{i:02}{}", "v".repeat(VALUE_LEN));
        s.patch_latest("blob-store", json!({"data": value})).await;
        values.push(value);
    }
    values
}

/// GETs `path` and returns the body's size and JSON.
async fn page(s: &Server, path: &str, token: &str) -> (usize, Value) {
    let resp = s
        .http
        .get(s.url(path))
        .header("X-API-Token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let bytes = resp.bytes().await.unwrap();
    (bytes.len(), serde_json::from_slice(&bytes).unwrap())
}

/// Follows `cursor` from `first` (a path that ends in a query) until it is
/// null; checks every page's size; returns the rows in order and how many
/// pages said they were cut by the budget.
async fn walk(
    s: &Server,
    first: &str,
    rows: &str,
    cursor: &str,
    param: &str,
) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut truncated = 0;
    let mut path = first.to_owned();
    for _ in 0..100 {
        let (size, body) = page(s, &path, WRITE_TOKEN).await;
        let got = body[rows].as_array().unwrap();
        assert!(
            !got.is_empty() || out.is_empty(),
            "an empty page after a cursor: {path}"
        );
        assert!(
            size <= PAGE_BUDGET || got.len() == 1,
            "a page of {} rows is {size} bytes, over the budget",
            got.len()
        );
        assert_eq!(body["total_returned"], got.len());
        if body["truncated"] == true {
            truncated += 1;
        }
        out.extend(got.iter().cloned());
        match body[cursor].as_i64() {
            Some(next) => path = format!("{first}&{param}={next}"),
            None => return (out, truncated),
        }
    }
    panic!("paging never ended");
}

#[tokio::test]
async fn history_pages_stay_inside_the_budget_and_the_cursor_returns_every_entry_once() {
    let s = Server::start().await;
    let values = service_with_large_values(&s).await;
    let (entries, truncated) = walk(
        &s,
        "/history?service=blob-store&key=data&limit=1000",
        "entries",
        "next_before_id",
        "before_id",
    )
    .await;
    assert!(truncated > 0, "the budget never cut a page");
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "not newest first, or repeated: {ids:?}"
    );
    let written: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["new_value"].as_str())
        .filter(|v| v.len() > VALUE_LEN)
        .collect();
    let expected: Vec<&str> = values.iter().rev().map(String::as_str).collect();
    assert_eq!(written, expected, "every write exactly once, newest first");

    // A read-role token gets the same bounded pages.
    let (_, body) = page(&s, "/history?service=blob-store&limit=1000", READ_TOKEN).await;
    assert_eq!(body["truncated"], true);
    assert!(body["next_before_id"].is_i64());
}

#[tokio::test]
async fn version_pages_stay_inside_the_budget_and_the_cursor_returns_every_version_once() {
    let s = Server::start().await;
    let values = service_with_large_values(&s).await;
    let current = s.version("blob-store").await;
    let (versions, truncated) = walk(
        &s,
        "/services/blob-store/versions?limit=1000",
        "versions",
        "next_before_version",
        "before_version",
    )
    .await;
    assert!(truncated > 0, "the budget never cut a page");
    let numbers: Vec<i64> = versions
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (1..=current).rev().collect();
    assert_eq!(
        numbers, expected,
        "every version exactly once, newest first"
    );
    assert_eq!(versions[0]["config"]["data"], json!(values[WRITES - 1]));

    // The count limit still applies, and its cursor is exact: a page of
    // every remaining version has none.
    let (_, body) = page(&s, "/services/blob-store/versions?limit=1", READ_TOKEN).await;
    assert_eq!(body["versions"].as_array().unwrap().len(), 1);
    assert_eq!(body["next_before_version"], current);
    assert_eq!(body["truncated"], false);
    let (_, body) = page(
        &s,
        "/services/blob-store/versions?limit=1&before_version=2",
        READ_TOKEN,
    )
    .await;
    assert_eq!(body["versions"][0]["version"], 1);
    assert_eq!(body["next_before_version"], Value::Null);
    // Bad forms of the cursor are refused.
    for bad in [
        "before_version=x",
        "before_version=1.5",
        "before_version=-1",
        "limit=-1",
    ] {
        let (status, _) = s
            .get(
                &format!("/services/blob-store/versions?{bad}"),
                Some(READ_TOKEN),
            )
            .await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn audit_pages_follow_the_cursor_to_every_entry_once() {
    let s = Server::start().await;
    service_with_large_values(&s).await;
    let (all, _) = walk(
        &s,
        "/audit?limit=1000",
        "entries",
        "next_before_id",
        "before_id",
    )
    .await;
    let (paged, _) = walk(
        &s,
        "/audit?limit=3",
        "entries",
        "next_before_id",
        "before_id",
    )
    .await;
    let ids =
        |rows: &[Value]| -> Vec<i64> { rows.iter().map(|e| e["id"].as_i64().unwrap()).collect() };
    assert!(all.len() > WRITES, "{} audit entries", all.len());
    assert_eq!(ids(&paged), ids(&all));
    assert_eq!(
        ids(&all).into_iter().collect::<BTreeSet<_>>().len(),
        all.len(),
        "an entry twice"
    );
}
