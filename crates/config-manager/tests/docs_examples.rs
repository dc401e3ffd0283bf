//! Every `curl` example in `docs/*.md`, run against the real binary, so the
//! guides cannot drift from the API (the reveal example once named a key the
//! schema does not have).
//!
//! A fenced `sh`/`bash`/`shell` block that contains `curl` is run with `bash`
//! with `CM` (the API base URL) and `TOKEN` (a write token) set, and with
//! `curl` wrapped to fail on any 4xx/5xx (`--fail-with-body`). Blocks run in
//! document order against one server, so later examples see what earlier ones
//! wrote. Markers on the line just before the opening fence:
//!
//! - `<!-- doc-test: expect-error -->`: an example of an error; it must fail
//!   with an HTTP error (curl exit code 22).
//! - `<!-- doc-test: skip <reason> -->`: not run (needs something the test
//!   cannot provide); the reason is required.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, WRITE_TOKEN};
use serde_json::json;

/// One runnable example.
struct Example {
    file: String,
    line: usize,
    marker: Marker,
    body: String,
}

#[derive(Debug, PartialEq)]
enum Marker {
    Run,
    ExpectError,
    Skip,
}

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// The curl blocks of one Markdown text, with their markers.
fn examples(file: &str, text: &str) -> Vec<Example> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        let lang = line.strip_prefix("```").map(str::trim);
        if let Some(lang) = lang.filter(|l| !l.is_empty()) {
            let start = i;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                body.push_str(lines[i]);
                body.push('\n');
                i += 1;
            }
            let shell = matches!(lang, "sh" | "bash" | "shell" | "console");
            if shell && body.contains("curl ") {
                let before = if start > 0 {
                    lines[start - 1].trim()
                } else {
                    ""
                };
                let marker = if before.starts_with("<!-- doc-test: expect-error") {
                    Marker::ExpectError
                } else if let Some(rest) = before.strip_prefix("<!-- doc-test: skip") {
                    assert!(
                        rest.trim_end_matches("-->").trim().len() > 3,
                        "{file}:{}: a skip marker needs a reason",
                        start + 1
                    );
                    Marker::Skip
                } else {
                    Marker::Run
                };
                out.push(Example {
                    file: file.to_owned(),
                    line: start + 1,
                    marker,
                    body,
                });
            }
        }
        i += 1;
    }
    out
}

fn all_examples() -> Vec<Example> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(docs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| {
            let name = format!("docs/{}", p.file_name().unwrap().to_string_lossy());
            examples(&name, &std::fs::read_to_string(p).unwrap())
        })
        .collect()
}

#[test]
fn markers_and_extraction() {
    let text = "intro\n```sh\ncurl -s \"$CM/health\"\n```\n<!-- doc-test: expect-error -->\n```bash\ncurl -s \"$CM/nope\"\n```\n```json\n{\"curl \": 1}\n```\n<!-- doc-test: skip needs a broker -->\n```sh\ncurl x\n```\n";
    let found = examples("t.md", text);
    let markers: Vec<_> = found.iter().map(|e| (e.line, &e.marker)).collect();
    assert_eq!(
        markers,
        vec![
            (2, &Marker::Run),
            (6, &Marker::ExpectError),
            (13, &Marker::Skip)
        ]
    );
}

#[tokio::test]
async fn every_curl_example_in_docs_works_against_the_binary() {
    let server = Server::start().await;
    // State the examples assume: a secret to reveal.
    server
        .patch_latest(
            "tts-worker",
            json!({"eleven_api_key": "el-doc-example-key"}),
        )
        .await;

    let examples = all_examples();
    assert!(
        examples.len() >= 9,
        "found only {} curl examples in docs/: is the extraction broken?",
        examples.len()
    );
    let base = format!("http://127.0.0.1:{}/api/config", server.port);
    let mut failures = Vec::new();
    let mut ran = 0;
    for ex in &examples {
        if ex.marker == Marker::Skip {
            continue;
        }
        ran += 1;
        let script = format!(
            "set -euo pipefail\ncurl() {{ command curl --fail-with-body --show-error \"$@\"; }}\n{}",
            ex.body
        );
        let output = tokio::task::spawn_blocking({
            let base = base.clone();
            move || {
                Command::new("bash")
                    .arg("-c")
                    .arg(script)
                    .env("CM", base)
                    .env("TOKEN", WRITE_TOKEN)
                    .output()
                    .expect("run bash")
            }
        })
        .await
        .unwrap();
        let code = output.status.code();
        let shown = format!(
            "{}:{} exit {:?}\nstdout: {}\nstderr: {}",
            ex.file,
            ex.line,
            code,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        match ex.marker {
            Marker::Run if code != Some(0) => failures.push(shown),
            Marker::ExpectError if code != Some(22) => {
                failures.push(format!("expected an HTTP error: {shown}"));
            }
            _ => {}
        }
    }
    assert!(ran > 0);
    assert!(
        failures.is_empty(),
        "doc examples failed:\n{}",
        failures.join("\n---\n")
    );
}
