//! Log lines batched into few `write(2)` calls by one writer thread.
//!
//! The access log writes a line per request; written one system call each,
//! the lines are a sizeable share of the CPU of a cached GET (figures in
//! docs/performance.md). Here a logging thread only appends its line to a
//! shared buffer. The writer thread sleeps until the buffer stops being
//! empty, lets lines gather for [`GATHER`], and writes them all at once: a
//! busy second costs a few hundred writes instead of tens of thousands, an
//! idle one none (no timer ticks).
//!
//! Lines are never dropped: past [`MAX_PENDING`] bytes a logging thread waits
//! for the writer, the same back-pressure as writing directly. The last
//! [`GATHER`] of lines can be lost to a `kill -9`; a normal exit flushes them
//! when the [`BatchGuard`] drops.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer lets lines gather after the first one arrives.
pub const GATHER: Duration = Duration::from_millis(2);

/// Pending bytes past which logging threads wait for the writer.
pub const MAX_PENDING: usize = 1 << 20;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when the buffer stops being empty, and on close.
    filled: Condvar,
    /// Signalled after the writer took the buffer.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The [`MakeWriter`] handed to the fmt layer: cheap to clone, each line is
/// appended to the shared buffer.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread and writes what is pending when dropped.
pub struct BatchGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread over `out`.
pub fn batched<W: Write + Send + 'static>(out: W) -> io::Result<(BatchWriter, BatchGuard)> {
    let shared = Arc::new(Shared::default());
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_batches(&shared, out))?
    };
    Ok((
        BatchWriter {
            shared: shared.clone(),
        },
        BatchGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.bytes.is_empty() && !pending.closed {
            pending = shared
                .filled
                .wait(pending)
                .unwrap_or_else(|p| p.into_inner());
        }
        if pending.bytes.is_empty() {
            return; // closed and nothing left
        }
        if !pending.closed {
            drop(pending);
            std::thread::sleep(GATHER);
            pending = shared.lock();
        }
        std::mem::swap(&mut pending.bytes, &mut batch);
        drop(pending);
        shared.drained.notify_all();
        // Nowhere to report a failed log write; the next batch tries again.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
    }
}

/// One event's writer; the fmt layer writes a whole formatted line at once.
pub struct LineWriter<'a>(&'a Shared);

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let shared = self.0;
        let mut pending = shared.lock();
        while pending.bytes.len() >= MAX_PENDING && !pending.closed {
            pending = shared
                .drained
                .wait(pending)
                .unwrap_or_else(|p| p.into_inner());
        }
        let was_empty = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(line);
        drop(pending);
        if was_empty {
            shared.filled.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(&self.shared)
    }
}

impl Drop for BatchGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.filled.notify_one();
        self.shared.drained.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A `Write` whose bytes and number of writes the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_whole_in_fewer_writes() {
        let sink = Sink::default();
        let (writer, guard) = batched(sink.clone()).unwrap();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let writer = &writer;
                scope.spawn(move || {
                    for i in 0..2_000 {
                        let line = format!("thread {t} line {i}\n");
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8_000, "no line lost at shutdown");
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> =
                (0..2_000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected, "one thread's lines stay whole and in order");
        }
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), 8_000);
        assert!(writes < 8_000, "lines were batched ({writes} writes)");
    }

    #[test]
    fn a_line_reaches_the_output_without_shutdown() {
        let sink = Sink::default();
        let (writer, _guard) = batched(sink.clone()).unwrap();
        writer.make_writer().write_all(b"hello\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.0.lock().unwrap().0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.0.lock().unwrap().0, b"hello\n");
    }
}
