//! Log output: human-readable text by default, one JSON object per line with
//! `LOG_FORMAT=json` (for Loki, journald, Elastic, …). The level comes from
//! `RUST_LOG`.
//!
//! Every HTTP request runs in a `request` span carrying `method`, `path` and
//! `request_id` (the `X-Request-Id` the client sent, or a generated UUID that
//! is also returned in the response). JSON lines include the current span
//! (`"span": {"request_id": …}`) and the span list, so every line a request
//! causes can be found by its id. Each request ends with one
//! "finished processing request" line (status and latency) at `info`.
//!
//! Lines are formatted on the thread that logs them and written to stderr in
//! batches by one writer thread ([`batch`]).
//!
//! What never reaches a log line: tokens (only the token's *name* is logged),
//! secret values, keys, request bodies and query strings. Spans record
//! `uri().path()` only. Handlers log through `#[instrument(skip_all)]` or
//! explicit fields; the tests in `tests/ops.rs` exercise every endpoint with
//! real tokens and a secret and search the captured log for them.

mod batch;

use std::io::IsTerminal;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// The filter used when `RUST_LOG` is unset or invalid.
pub const DEFAULT_FILTER: &str = "info,tower_http=info";

/// Keeps the log writer thread alive; dropping it flushes what is pending.
#[must_use = "logs are flushed when the guard drops: keep it for the process's life"]
pub struct LogGuard {
    _writer: Option<batch::BatchGuard>,
}

/// Installs the global subscriber (stderr, through the writer thread).
/// Calling it twice is harmless: the second call keeps the first subscriber.
pub fn init_logging(format: LogFormat) -> LogGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Without a writer thread (the system refused one) lines go straight
    // to stderr.
    let (writer, guard) = match batch::batched(std::io::stderr()) {
        Ok((writer, guard)) => (BoxMakeWriter::new(writer), Some(guard)),
        Err(_) => (BoxMakeWriter::new(std::io::stderr), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        // Colours only for a terminal: journald and log files get plain text.
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    LogGuard { _writer: guard }
}
