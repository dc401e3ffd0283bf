//! Rate limit of `POST /ui/login` per client address (issue 14, finding 6).
//!
//! A fixed window per address: failed logins are counted; once an address
//! has `CONFIG_LOGIN_MAX_FAILURES` failures within `CONFIG_LOGIN_WINDOW_SECS`,
//! *every* login from it — a correct one too — gets 429 with `Retry-After`
//! until the window ends. Refusing correct tokens as well is deliberate: a
//! guesser must not learn from the answer whether its guess was right.
//! Successful logins do not count, so a busy operator is never limited.
//!
//! The address is the TCP peer, keyed by [`AddressKey`]: every loopback
//! address is one budget and IPv6 counts by /64, so a local process cannot
//! guess from thousands of 127.x addresses. Behind a reverse proxy every client shares
//! the proxy's address (forwarding headers are not trusted, as anyone can
//! set them); rate-limit at the proxy then.

use std::collections::HashMap;
use std::net::IpAddr;

use super::AddressKey;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses tracked; beyond it the expired ones are dropped, then the
/// one whose window is oldest.
pub const MAX_TRACKED: usize = 10_000;

struct Entry {
    started: Instant,
    failures: u32,
}

/// Failed-login counters per address.
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<AddressKey, Entry>>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimiter").finish_non_exhaustive()
    }
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AddressKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(retry_after)` when `addr` is limited right now.
    pub fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        let map = self.lock();
        match map.get(&AddressKey::of(addr)) {
            Some(e) if e.failures >= self.max_failures => {
                let elapsed = e.started.elapsed();
                if elapsed < self.window {
                    Err(self.window - elapsed)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login from `addr`.
    pub fn failed(&self, addr: IpAddr) {
        let addr = AddressKey::of(addr);
        let now = Instant::now();
        let window = self.window;
        let mut map = self.lock();
        if !map.contains_key(&addr) && map.len() >= MAX_TRACKED {
            map.retain(|_, e| now.duration_since(e.started) < window);
            if map.len() >= MAX_TRACKED {
                if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.started).map(|(a, _)| *a) {
                    map.remove(&oldest);
                }
            }
        }
        let e = map.entry(addr).or_insert(Entry {
            started: now,
            failures: 0,
        });
        if now.duration_since(e.started) >= window {
            *e = Entry {
                started: now,
                failures: 0,
            };
        }
        e.failures = e.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_after_max_failures_and_only_that_address() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..3 {
            assert!(l.check(a).is_ok());
            l.failed(a);
        }
        let retry = l.check(a).unwrap_err();
        assert!(retry <= Duration::from_secs(60) && retry > Duration::ZERO);
        assert!(l.check(b).is_ok());
    }

    #[test]
    fn window_ends() {
        let l = LoginLimiter::new(1, Duration::ZERO);
        let a: IpAddr = [10, 0, 0, 1].into();
        l.failed(a);
        assert!(l.check(a).is_ok());
    }
}
