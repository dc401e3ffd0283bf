//! The accept loop: HTTP/1.1 connections with a header-read timeout, an idle
//! watchdog and a cap on concurrent connections, and a graceful shutdown.
//!
//! Why not `axum::serve`: it sets none of these limits, so a client sending
//! its request head one byte a second was kept (and served) however long it
//! took, and any number of idle connections were held until the process ran
//! out of file descriptors (issue 14, finding 2).
//!
//! - **Header-read timeout** (`CONFIG_HTTP_HEADER_TIMEOUT_MS`): hyper's own
//!   timer; the request head must be complete this long after the connection
//!   starts waiting for it (after accept, or after the previous response on a
//!   keep-alive connection, so it also ends idle keep-alive connections).
//!   The connection is closed without an answer.
//! - **Idle timeout** (`CONFIG_HTTP_IDLE_TIMEOUT_MS`): a connection with no
//!   request in flight on which no byte moved either way for this long is
//!   closed (a stalled upload, a client that stops reading the response).
//! - **Connection cap** (`CONFIG_HTTP_MAX_CONNECTIONS`): a permit is taken
//!   *before* `accept`, so connections over the cap wait in the kernel's
//!   listen backlog (they are not refused) and are accepted as soon as
//!   another one ends.
//! - **Per-address cap** (`CONFIG_HTTP_MAX_CONNECTIONS_PER_ADDRESS`): without
//!   it one client could hold every slot of the cap (open connections, send
//!   nothing, reconnect when the header timeout closes them) and keep the
//!   backlog full, so nobody else is ever served. A connection over its
//!   address's share is accepted and closed at once, so it holds neither a
//!   slot nor a backlog entry.
//!
//! - **File limit**: the cap is lowered to fit the process's soft
//!   `RLIMIT_NOFILE` minus [`RESERVED_DESCRIPTORS`] (with a warning), because
//!   connections that use up the descriptors make the database unopenable and
//!   put the service in read-only fallback: a client must not reach that.
//!
//! An `accept` error (EMFILE when descriptors run out, a connection reset
//! before it was accepted) never ends the loop: it backs off briefly and logs
//! at most once every few seconds.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use crate::settings::ServerLimits;

/// Open connections per client address (only addresses with at least one,
/// so at most `max_connections` entries).
#[derive(Clone, Default)]
struct PerAddress {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open connection of an address; released when dropped.
struct AddressSlot {
    addr: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerAddress {
    fn lock(
        open: &Mutex<HashMap<IpAddr, usize>>,
    ) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Every change is one counter update: a poisoned lock is consistent.
        open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for `addr`, or `None` when it already has its share.
    fn take(&self, addr: IpAddr) -> Option<AddressSlot> {
        let mut open = Self::lock(&self.open);
        let n = open.entry(addr).or_insert(0);
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            addr,
            open: self.open.clone(),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = PerAddress::lock(&self.open);
        if let Some(n) = open.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

/// Descriptors kept free of client connections: the database connections
/// and their WAL/SHM, the monitor's fresh connection, MQTT, logs, LKG and
/// snapshot temporaries, child processes (about 20 in use when idle).
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// The connection cap that fits a soft file limit of `soft_limit`
/// descriptors (`None`: unlimited), and the warning to log when `configured`
/// had to be lowered.
pub fn fit_to_file_limit(configured: usize, soft_limit: Option<u64>) -> (usize, Option<String>) {
    let Some(soft) = soft_limit else {
        return (configured, None);
    };
    let room = usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS))
        .unwrap_or(usize::MAX)
        .max(1);
    if configured <= room {
        return (configured, None);
    }
    let warning = format!(
        "CONFIG_HTTP_MAX_CONNECTIONS={configured} does not fit the file limit of {soft} descriptors \
         ({RESERVED_DESCRIPTORS} are kept for the database and the rest); at most {room} connections \
         are served at once. Raise the limit (ulimit -n, systemd LimitNOFILE) or lower the setting."
    );
    (room, Some(warning))
}

/// The process's soft `RLIMIT_NOFILE` (`None`: unlimited or unknown).
fn soft_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Pause after a failed `accept` (EMFILE and the like) before trying again,
/// so the loop neither dies nor spins.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one log line per this interval about failing `accept` calls.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `service` on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish (idle connections close at
/// once) and returns when every connection is gone.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    let (fitted, warning) = fit_to_file_limit(limits.max_connections, soft_file_limit());
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    let max = fitted.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let per_address = PerAddress {
        max: limits.max_connections_per_address,
        open: Arc::default(),
    };
    let stop = CancellationToken::new();
    let mut accept_errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        // Over the cap, wait here: new connections stay in the backlog.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                accept_errors.note(&e);
                drop(permit);
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Some(slot) = per_address.take(peer.ip()) else {
            // Over its address's share: closed at once, unanswered.
            tracing::debug!(%peer, "closing a connection over the per-address cap");
            drop(stream);
            drop(permit);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, service, limits, stop).await;
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    stop.cancel();
    // Every connection holds a permit until it is gone.
    let _ = permits
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
}

/// Rate-limited logging of `accept` failures.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn note(&mut self, e: &std::io::Error) {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|t| now.duration_since(t) < ACCEPT_LOG_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, suppressed = self.suppressed, "accepting a connection failed; retrying");
        self.last_logged = Some(now);
        self.suppressed = 0;
    }
}

/// Activity of one connection, shared by its stream, its requests and its
/// watchdog.
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last byte read or written.
    last_io_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_io_ms.store(ms, Ordering::Relaxed);
    }

    /// How long no byte moved, or `None` while a request is being handled.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_io_ms.load(Ordering::Relaxed));
        Some(self.start.elapsed().saturating_sub(last))
    }
}

/// Counts a request as in flight until its response future ends.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(a: &Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

async fn serve_connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    limits: ServerLimits,
    stop: CancellationToken,
) where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + 'static,
{
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_io_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let per_request = activity.clone();
    let hyper_service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = InFlight::enter(&per_request);
        let mut req = req.map(Body::new);
        // The client's address, for the login rate limit and the audit.
        req.extensions_mut().insert(ConnectInfo(peer));
        let call = service.clone().oneshot(req);
        async move {
            let resp = call.await;
            drop(guard);
            resp
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(io, hyper_service);
    tokio::pin!(conn);
    let idle = idle_watchdog(&activity, limits.idle_timeout);
    tokio::pin!(idle);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        }
        () = &mut idle => {
            tracing::debug!(%peer, "closing an idle connection");
        }
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            // In-flight requests finish; the watchdog still ends a client
            // that stops reading.
            tokio::select! {
                _ = conn.as_mut() => {}
                () = idle => {}
            }
        }
    }
}

/// Resolves once the connection has been idle for `timeout`.
async fn idle_watchdog(activity: &Activity, timeout: Duration) {
    loop {
        let wait = match activity.idle_for() {
            Some(idle) if idle >= timeout => return,
            Some(idle) => timeout - idle,
            None => timeout,
        };
        tokio::time::sleep(wait).await;
    }
}

/// A stream that records when bytes last moved.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_file_limit() {
        assert_eq!(fit_to_file_limit(256, None), (256, None));
        assert_eq!(fit_to_file_limit(256, Some(1024)), (256, None));
        assert_eq!(fit_to_file_limit(256, Some(320)), (256, None));
        let (cap, warning) = fit_to_file_limit(256, Some(128));
        assert_eq!(cap, 64);
        assert!(warning.is_some_and(|w| w.contains("128")));
        assert_eq!(fit_to_file_limit(256, Some(10)).0, 1);
    }
}
