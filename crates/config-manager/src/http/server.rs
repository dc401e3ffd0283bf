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
//! - **Connection cap** (`CONFIG_HTTP_MAX_CONNECTIONS`): at the cap, the
//!   connection idle the longest (no request in flight; one still sending
//!   its request head counts as idle) is closed to make room for the new
//!   one. Only when every connection has a request in flight does the new
//!   one wait (further ones stay in the kernel's listen backlog).
//! - **Per-address cap** (`CONFIG_HTTP_MAX_CONNECTIONS_PER_ADDRESS`), keyed
//!   by [`AddressKey`] (all of loopback is one address, IPv6 counts by /64):
//!   without it one client could hold every slot. At its address's share a
//!   new connection closes that address's longest-idle one; when all of them
//!   are busy with requests, the new one is closed at once, unanswered.
//!   Either way a request always gets through while idle connections are
//!   what is shed (issue 23, finding 3).
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
use std::net::SocketAddr;
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

use crate::auth::AddressKey;
pub use crate::settings::ServerLimits;

/// Every open connection, for the caps: per address key, and which one to
/// close when a cap is reached.
///
/// At a cap the connection idle the longest (no request in flight; a
/// connection still sending its request head counts as idle) is closed to
/// make room, so a new request always gets through while idle or slow
/// connections are what is shed. Only when every connection of the address
/// (per-address cap) or of the server (global cap) is busy with a request
/// does the new one wait (global) or get closed (per-address).
#[derive(Clone, Default)]
struct Registry {
    max_per_address: usize,
    inner: Arc<Mutex<RegistryInner>>,
}

#[derive(Default)]
struct RegistryInner {
    next_id: u64,
    open: HashMap<u64, OpenConnection>,
    per_key: HashMap<AddressKey, usize>,
}

struct OpenConnection {
    key: AddressKey,
    activity: Arc<Activity>,
    evict: CancellationToken,
}

/// One registered connection; unregisters itself when dropped.
struct Registered {
    id: u64,
    registry: Registry,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryInner> {
        // Every change is a few map updates under the lock; a poisoned lock
        // (a panic elsewhere) leaves them consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection from `key`, closing that key's longest-idle
    /// connection first when it is at its share; `None` when it is at its
    /// share and every one of its connections is busy.
    fn admit(
        &self,
        key: AddressKey,
        activity: &Arc<Activity>,
        evict: &CancellationToken,
    ) -> Option<Registered> {
        let mut inner = self.lock();
        let at_share = self.max_per_address > 0
            && inner.per_key.get(&key).copied().unwrap_or(0) >= self.max_per_address;
        if at_share {
            let victim = inner.longest_idle(|_, c| c.key == key)?;
            inner.evict(victim);
        }
        let id = inner.next_id;
        inner.next_id = inner.next_id.wrapping_add(1);
        *inner.per_key.entry(key).or_insert(0) += 1;
        inner.open.insert(
            id,
            OpenConnection {
                key,
                activity: activity.clone(),
                evict: evict.clone(),
            },
        );
        Some(Registered {
            id,
            registry: self.clone(),
        })
    }

    /// Closes the server's longest-idle connection other than `newcomer`
    /// (global cap); `false` when every other one has a request in flight.
    fn evict_for(&self, newcomer: &Registered) -> bool {
        let mut inner = self.lock();
        let newcomer = newcomer.id;
        let victim = inner.longest_idle(|id, _| id != newcomer);
        victim.is_some_and(|id| inner.evict(id))
    }
}

impl RegistryInner {
    /// The eligible connection with no request in flight that has been
    /// idle the longest.
    fn longest_idle(&self, eligible: impl Fn(u64, &OpenConnection) -> bool) -> Option<u64> {
        self.open
            .iter()
            .filter(|(id, c)| eligible(**id, c))
            .filter_map(|(id, c)| c.activity.idle_for().map(|idle| (*id, idle)))
            .max_by_key(|(_, idle)| *idle)
            .map(|(id, _)| id)
    }

    /// Unregisters `id` and tells its task to close it.
    fn evict(&mut self, id: u64) -> bool {
        match self.remove(id) {
            Some(c) => {
                c.evict.cancel();
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, id: u64) -> Option<OpenConnection> {
        let c = self.open.remove(&id)?;
        if let Some(n) = self.per_key.get_mut(&c.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_key.remove(&c.key);
            }
        }
        Some(c)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Already gone when it was evicted.
        let _ = self.registry.lock().remove(self.id);
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
    let registry = Registry {
        max_per_address: limits.max_connections_per_address,
        inner: Arc::default(),
    };
    let stop = CancellationToken::new();
    let mut accept_errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                accept_errors.note(&e);
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let activity = Arc::new(Activity::new());
        let evict = CancellationToken::new();
        let Some(registered) = registry.admit(AddressKey::of(peer.ip()), &activity, &evict) else {
            // Its address's share is full of requests in flight: closed
            // at once, unanswered.
            tracing::debug!(%peer, "closing a connection over the per-address cap");
            drop(stream);
            continue;
        };
        // At the global cap, the longest-idle connection makes room; when
        // every connection is busy, wait here (new connections stay in the
        // kernel's backlog meanwhile).
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let _ = registry.evict_for(&registered);
                tokio::select! {
                    () = &mut shutdown => break,
                    p = wait_for_permit(&permits, &registry, &registered) => match p {
                        Some(p) => p,
                        None => break, // never closed
                    },
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, service, limits, activity, evict, stop).await;
            drop(registered);
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

/// How often a connection waiting at the global cap looks again for an
/// idle connection to close (one that finished its request meanwhile).
const EVICT_RETRY: Duration = Duration::from_millis(50);

/// A permit, closing an idle connection whenever one appears.
async fn wait_for_permit(
    permits: &Arc<Semaphore>,
    registry: &Registry,
    newcomer: &Registered,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    loop {
        tokio::select! {
            p = permits.clone().acquire_owned() => return p.ok(),
            () = tokio::time::sleep(EVICT_RETRY) => {
                let _ = registry.evict_for(newcomer);
            }
        }
    }
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
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

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
    activity: Arc<Activity>,
    evict: CancellationToken,
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
        () = evict.cancelled() => {
            tracing::debug!(%peer, "closing an idle connection to make room at a connection cap");
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
