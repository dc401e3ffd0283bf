//! The normalizing baseline of `scripts/bench.sh` (issue 9): the smallest
//! axum service — one route answering a fixed JSON body — on the same
//! runtime, axum and tokio versions as config-manager. Its throughput under
//! the same wrk run says what this machine can do at all, so the service's
//! GET figure can be read as a fraction of it.
//!
//! ```sh
//! baseline 127.0.0.1:9000   # then: wrk -t2 -c16 -d5s http://127.0.0.1:9000/
//! ```

use axum::http::header;
use axum::routing::get;
use axum::Router;

/// Tiny on purpose: the baseline is the framework's floor (routing, HTTP/1.1,
/// the runtime), not a copy of the service's payload.
const BODY: &str = r#"{"ok":true}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let app = Router::new().route(
        "/",
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], BODY) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("baseline listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
