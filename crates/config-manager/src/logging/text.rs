//! The plain-text log line, written without colour machinery.
//!
//! Same shape as tracing-subscriber's default ("full") format, so a line
//! reads the same on a terminal and in a file:
//!
//! ```text
//! 2026-12-01T08:12:41.423290Z  INFO request{method=GET path=/api/config/services/tts-worker request_id=…}: config_manager::access: finished processing request status=200 latency_us=41
//! ```
//!
//! Used when standard error is not a terminal (journald, files, pipes: every
//! deployment). The default formatter styles every part of the line even
//! with colours off and formats the timestamp field by field; for the access
//! line of a cached GET that was a tenth of the request's CPU
//! (docs/performance.md). Here the date and time down to the second are
//! formatted once per second per thread, and fields are written directly.

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The fmt layer writing text lines with this formatter to `writer`; the one
/// place that puts [`TextFormat`] and [`TextFields`] together.
pub fn layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .event_format(TextFormat)
        .fmt_fields(TextFields)
        .with_writer(writer)
}

/// Event formatter for text lines (see the module documentation).
#[derive(Clone, Copy, Default)]
pub struct TextFormat;

/// Field formatter: `message` as is, every other field as ` name=value`
/// (strings quoted and escaped, as the default formatter does).
#[derive(Clone, Copy, Default)]
pub struct TextFields;

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_timestamp(&mut writer, time::OffsetDateTime::now_utc())?;
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str(level_label(*meta.level()))?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, "{{{fields}}}")?;
                    }
                }
                writer.write_char(':')?;
            }
            writer.write_char(' ')?;
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = FieldWriter {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct FieldWriter<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl FieldWriter<'_> {
    /// Writes the separator and `name=` (nothing for `message`); false
    /// when the field is skipped or writing already failed.
    fn start(&mut self, field: &Field) -> bool {
        let name = field.name();
        // Fields `tracing-log` adds to events from the `log` crate are
        // metadata, already shown as the target.
        if self.result.is_err() || name.starts_with("log.") {
            return false;
        }
        let mut result = Ok(());
        if !self.first {
            result = self.writer.write_char(' ');
        }
        self.first = false;
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            result = result
                .and_then(|()| self.writer.write_str(name))
                .and_then(|()| self.writer.write_char('='));
        }
        self.result = result;
        self.result.is_ok()
    }

    fn finish(&mut self, result: fmt::Result) {
        self.result = result;
    }
}

impl Visit for FieldWriter<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field) {
            let result = write!(self.writer, "{value:?}");
            self.finish(result);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.start(field) {
            let result = if field.name() == "message" {
                self.writer.write_str(value)
            } else {
                write!(self.writer, "{value:?}")
            };
            self.finish(result);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            let result = self.writer.write_str(itoa::Buffer::new().format(value));
            self.finish(result);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field) {
            let result = self.writer.write_str(itoa::Buffer::new().format(value));
            self.finish(result);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field) {
            let result = self.writer.write_str(if value { "true" } else { "false" });
            self.finish(result);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.start(field) {
            let result = write!(self.writer, "{value}");
            self.finish(result);
        }
    }
}

/// The level as the default formatter pads it, with the separators.
fn level_label(level: Level) -> &'static str {
    match level {
        Level::ERROR => " ERROR ",
        Level::WARN => "  WARN ",
        Level::INFO => "  INFO ",
        Level::DEBUG => " DEBUG ",
        Level::TRACE => " TRACE ",
    }
}

thread_local! {
    /// `(unix second, "YYYY-MM-DDTHH:MM:SS")` of this thread's last line.
    static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-12-01T08:12:41.423290Z`.
fn write_timestamp(w: &mut impl fmt::Write, now: time::OffsetDateTime) -> fmt::Result {
    let second = now.unix_timestamp();
    let micros = now.microsecond();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            let (date, clock) = (now.date(), now.time());
            cached.1.clear();
            write!(
                cached.1,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                date.year(),
                u8::from(date.month()),
                date.day(),
                clock.hour(),
                clock.minute(),
                clock.second()
            )?;
            cached.0 = second;
        }
        w.write_str(&cached.1)
    })?;
    write!(w, ".{micros:06}Z")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::logging::capture::Capture;
    use tracing_subscriber::layer::SubscriberExt;

    /// Formats what `f` logs with this formatter and with the default one.
    fn both(f: impl Fn()) -> (String, String) {
        let lean = Capture::default();
        let default = Capture::default();
        let subscriber = tracing_subscriber::registry()
            .with(layer(lean.clone()))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(default.clone()),
            );
        tracing::subscriber::with_default(subscriber, f);
        (lean.text(), default.text())
    }

    /// The line without its timestamp (the two formatters read the clock
    /// separately).
    fn body(line: &str) -> &str {
        line.split_once(' ').map(|(_, rest)| rest).unwrap_or("")
    }

    #[test]
    fn lines_match_the_default_format() {
        let (lean, default) = both(|| {
            let span =
                tracing::info_span!("request", method = %"GET", path = %"/x", request_id = %"abc");
            let _entered = span.enter();
            tracing::info!(target: "config_manager::access", status = 200u64, latency_us = 41u64, "finished processing request");
            tracing::warn!(actor = "reader", count = -3i64, ok = true, "access denied");
            let inner = tracing::debug_span!("inner");
            let _inner = inner.enter();
            tracing::error!(error = %"disk full", "could not write");
        });
        let (lean, default): (Vec<&str>, Vec<&str>) =
            (lean.lines().collect(), default.lines().collect());
        assert_eq!(lean.len(), 3, "{lean:?}");
        for (l, d) in lean.iter().zip(&default) {
            assert_eq!(body(l), body(d));
        }
        assert_eq!(
            body(lean[0]),
            " INFO request{method=GET path=/x request_id=abc}: config_manager::access: finished processing request status=200 latency_us=41"
        );
    }

    #[test]
    fn strings_are_quoted_and_escaped() {
        let (lean, default) = both(|| {
            tracing::info!(value = "two\nlines \"quoted\"", "hostile");
        });
        assert_eq!(body(lean.trim_end()), body(default.trim_end()));
        assert_eq!(
            lean.lines().count(),
            1,
            "a newline in a value stays escaped: {lean}"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let t = time::macros::datetime!(2026-12-01 08:12:41.000042 UTC);
        let mut s = String::new();
        write_timestamp(&mut s, t).unwrap();
        assert_eq!(s, "2026-12-01T08:12:41.000042Z");
        // A later time in the same second reuses the cached part.
        let mut s = String::new();
        write_timestamp(&mut s, t + time::Duration::microseconds(999_000)).unwrap();
        assert_eq!(s, "2026-12-01T08:12:41.999042Z");
        let mut s = String::new();
        write_timestamp(&mut s, time::macros::datetime!(2027-01-02 03:04:05 UTC)).unwrap();
        assert_eq!(s, "2027-01-02T03:04:05.000000Z");
    }
}
