//! The in-memory store of web UI sessions (see `http::session` for the
//! routes and cookies around it). It maps the SHA-256 of a random session id
//! to the token's [`Caller`]; it knows no HTTP, so the service state can hold
//! it without depending on the HTTP layer.
//!
//! Sessions live in memory only: a restart logs everyone out, which is the
//! safe direction, and no session id ever reaches the database or the LKG file.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use config_manager_core::domain::format_rfc3339;
use sha2::{Digest, Sha256};

use crate::auth::Caller;

/// A session unused for this long is gone (an unattended browser).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// A session ends this long after login however busy it is; also the cookie's
/// `Max-Age`.
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Most live sessions kept; the least recently used one is dropped beyond
/// this, so a login loop cannot grow memory without bound.
pub const MAX_SESSIONS: usize = 1024;
/// Most live sessions of one token (identity). A new login beyond it ends
/// that identity's least recently used session, never another identity's:
/// a reader logging in in a loop cannot sign a writer out (issue 14,
/// finding 5). With several identities the global cap is reached only
/// when more than `MAX_SESSIONS / MAX_SESSIONS_PER_IDENTITY` tokens are each
/// at their own cap.
pub const MAX_SESSIONS_PER_IDENTITY: usize = 32;

struct Session {
    caller: Caller,
    csrf: String,
    created: Instant,
    last_seen: Instant,
    /// Wall-clock end of the session, for the page ("expires at ...").
    expires_at: String,
}

/// What a valid session tells a request.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub caller: Caller,
    pub csrf: String,
    pub expires_at: String,
}

/// Live sessions, keyed by the SHA-256 of the session id, so the map itself
/// holds nothing a cookie could be rebuilt from.
#[derive(Default)]
pub struct SessionStore {
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore").finish_non_exhaustive()
    }
}

fn key_of(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn expired(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_seen) > IDLE_TIMEOUT || now.duration_since(s.created) > MAX_LIFETIME
}

impl SessionStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every change is one insert or remove), so a poisoned lock is usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session; returns its id (for the cookie) and what the page
    /// needs.
    pub fn create(&self, caller: Caller) -> (String, SessionInfo) {
        let id = crate::auth::random_token();
        let csrf = crate::auth::random_token();
        let now = Instant::now();
        let lifetime = time::Duration::try_from(MAX_LIFETIME).unwrap_or(time::Duration::HOUR);
        let expires_at = format_rfc3339(time::OffsetDateTime::now_utc() + lifetime);
        let mut map = self.lock();
        map.retain(|_, s| !expired(s, now));
        let least_recent = |map: &HashMap<[u8; 32], Session>, same_identity: bool| {
            map.iter()
                .filter(|(_, s)| !same_identity || s.caller.name == caller.name)
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k)
        };
        let own = map
            .values()
            .filter(|s| s.caller.name == caller.name)
            .count();
        if own >= MAX_SESSIONS_PER_IDENTITY {
            if let Some(oldest) = least_recent(&map, true) {
                map.remove(&oldest);
            }
        } else if map.len() >= MAX_SESSIONS {
            // Only reachable with many identities each below its own cap.
            if let Some(oldest) = least_recent(&map, false) {
                map.remove(&oldest);
            }
        }
        map.insert(
            key_of(&id),
            Session {
                caller: caller.clone(),
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
                expires_at: expires_at.clone(),
            },
        );
        (
            id,
            SessionInfo {
                caller,
                csrf,
                expires_at,
            },
        )
    }

    /// The live session with this id (refreshing its idle timer), or `None`
    /// when it is unknown or expired (an expired one is removed).
    pub fn lookup(&self, id: &str) -> Option<SessionInfo> {
        let key = key_of(id);
        let now = Instant::now();
        let mut map = self.lock();
        let live = map.get(&key).map(|s| !expired(s, now))?;
        if !live {
            map.remove(&key);
            return None;
        }
        let s = map.get_mut(&key)?;
        s.last_seen = now;
        Some(SessionInfo {
            caller: s.caller.clone(),
            csrf: s.csrf.clone(),
            expires_at: s.expires_at.clone(),
        })
    }

    /// Ends a session; returns whether it existed.
    pub fn remove(&self, id: &str) -> bool {
        self.lock().remove(&key_of(id)).is_some()
    }

    /// Number of live (not yet swept) sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn caller() -> Caller {
        Caller {
            name: "ops".into(),
            role: Role::Write,
            services: None,
        }
    }

    #[test]
    fn sessions_are_found_by_id_only_and_end_on_remove() {
        let store = SessionStore::default();
        let (id, info) = store.create(caller());
        assert_ne!(id, info.csrf);
        assert_eq!(store.lookup(&id).map(|s| s.caller), Some(caller()));
        assert!(store.lookup("not-a-session").is_none());
        assert!(store.remove(&id));
        assert!(store.lookup(&id).is_none());
    }

    #[test]
    fn idle_and_old_sessions_expire() {
        let now = Instant::now();
        let ago = |d: Duration| now.checked_sub(d).unwrap();
        let session = |created, last_seen| Session {
            caller: caller(),
            csrf: String::new(),
            created,
            last_seen,
            expires_at: String::new(),
        };
        let minute = Duration::from_secs(60);
        assert!(!expired(&session(ago(minute), now), now));
        assert!(expired(
            &session(ago(2 * IDLE_TIMEOUT), ago(IDLE_TIMEOUT + minute)),
            now
        ));
        assert!(expired(&session(ago(MAX_LIFETIME + minute), now), now));
    }

    #[test]
    fn store_is_bounded_per_identity_and_overall() {
        let store = SessionStore::default();
        let (writer_session, _) = store.create(caller());
        for _ in 0..MAX_SESSIONS + 10 {
            store.create(Caller {
                name: "reader".into(),
                role: Role::Read,
                services: None,
            });
        }
        assert_eq!(store.len(), MAX_SESSIONS_PER_IDENTITY + 1);
        assert!(
            store.lookup(&writer_session).is_some(),
            "another identity's logins evicted it"
        );
        for i in 0..MAX_SESSIONS + 10 {
            store.create(Caller {
                name: format!("t{i}"),
                role: Role::Read,
                services: None,
            });
        }
        assert_eq!(store.len(), MAX_SESSIONS);
    }
}
