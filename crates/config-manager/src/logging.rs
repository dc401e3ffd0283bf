//! Log output: human-readable text by default, one JSON object per line with
//! `LOG_FORMAT=json` (for Loki, journald, Elastic, …). The level comes from
//! `RUST_LOG`.
//!
//! Every HTTP request runs in a `request` span carrying `method`, `path` and
//! `request_id` (the `X-Request-Id` the client sent, or a generated UUID that
//! is also returned in the response). JSON lines include the current span
//! (`"span": {"request_id": …}`) and the span list, so every line a request
//! causes can be found by its id. Each request ends with one
//! "finished processing request" line (`status`, `latency_us`) at `info`
//! (`error` for a 5xx) under the target `config_manager::access`
//! ([`crate::http::access_log`]).
//!
//! Lines are formatted on the thread that logs them — text lines by the lean
//! formatter in `text` unless stderr is a terminal — and written to stderr
//! in batches by one writer thread (`batch`).
//!
//! What never reaches a log line: tokens (only the token's *name* is logged),
//! secret values, keys, request bodies and query strings. Spans record
//! `uri().path()` only. Handlers log through `#[instrument(skip_all)]` or
//! explicit fields; the tests in `tests/ops.rs` exercise every endpoint with
//! real tokens and a secret and search the captured log for them.

mod batch;
mod text;

use std::io::IsTerminal;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use config_manager_service::settings::table::RUST_LOG;
use config_manager_service::settings::LogFormat;

/// The filter used when `RUST_LOG` is unset or invalid (the table's default).
pub const DEFAULT_FILTER: &str = "info";

/// Keeps the log writer thread alive; dropping it flushes what is pending.
#[must_use = "logs are flushed when the guard drops: keep it for the process's life"]
pub struct LogGuard {
    _writer: Option<batch::BatchGuard>,
}

/// Installs the global subscriber (stderr, through the writer thread).
/// Calling it twice is harmless: the second call keeps the first subscriber.
pub fn init_logging(format: LogFormat) -> LogGuard {
    // RUST_LOG comes from the process environment only (the settings table
    // says so), read by tracing under the table's name.
    let filter =
        EnvFilter::try_from_env(RUST_LOG.name).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Without a writer thread (the system refused one) lines go straight
    // to stderr.
    let (writer, guard) = match batch::batched(std::io::stderr()) {
        Ok((writer, guard)) => (BoxMakeWriter::new(writer), Some(guard)),
        Err(_) => (BoxMakeWriter::new(std::io::stderr), None),
    };
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
        // Colours for a terminal; journald, files and pipes get the same
        // line from the lean formatter.
        LogFormat::Text if std::io::stderr().is_terminal() => {
            tracing_subscriber::fmt::layer().with_writer(writer).boxed()
        }
        LogFormat::Text => text::layer(writer).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
    LogGuard { _writer: guard }
}

/// A log writer whose bytes a test can read.
#[cfg(test)]
pub(crate) mod capture {
    use std::io;
    use std::sync::{Arc, Mutex, PoisonError};

    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Capture {
        /// Everything written so far.
        pub(crate) fn text(&self) -> String {
            let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            String::from_utf8_lossy(&bytes).into_owned()
        }

        /// A text-format subscriber (the shipped formatter) writing here.
        pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
            use tracing_subscriber::layer::SubscriberExt;
            tracing_subscriber::registry().with(super::text::layer(self.clone()))
        }
    }

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }
}
