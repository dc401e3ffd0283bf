//! Browser sessions for the web UI: `POST /ui/login`, `GET /ui/session`,
//! `POST /ui/logout`, and the in-memory session store behind them.
//!
//! Why sessions at all: the page must not keep the API token where scripts
//! can read it (an XSS bug would leak a long-lived credential). The token is
//! presented once, at login; the browser then holds only a random session id
//! in an `HttpOnly; SameSite=Strict` cookie, and the server maps that id to
//! the token's [`Caller`]. The cookie never contains the token.
//!
//! Why a CSRF token on top of `SameSite=Strict`: defence in depth for older
//! browsers and same-site attackers (another app on the same host name). Every
//! non-GET request authenticated by the cookie must carry `X-CSRF-Token` equal
//! to the session's token ([`super::auth`] checks it); requests with
//! `X-API-Token` are not cookie-based and need no CSRF token.
//!
//! Sessions live in memory only: a restart logs everyone out, which is the
//! safe direction, and no session id ever reaches the database or the LKG file.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use config_manager_core::audit::{AuditAction, AuditOutcome};
use config_manager_core::crypto::mac::tokens_equal;
use serde::Deserialize;
use serde_json::json;

use super::denials::DenialKey;
use super::error::{ApiError, ApiResult};
use super::json::ApiJson;
pub use config_manager_service::auth::sessions::{
    SessionInfo, SessionStore, IDLE_TIMEOUT, MAX_LIFETIME, MAX_SESSIONS, MAX_SESSIONS_PER_IDENTITY,
};
use config_manager_service::auth::Caller;
use config_manager_service::state::AppState;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "cm_session";
/// Header carrying the per-session CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Routes of the session API (outside `/api/config`: they exist for the
/// browser only and are documented in `docs/ui.md`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/session", get(current))
}

/// The session id in the request's `Cookie` header(s), if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE_NAME && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// Result of authenticating a request by its session cookie.
pub enum SessionCheck {
    /// No session cookie.
    Absent,
    /// A cookie whose session is unknown or expired.
    Unknown,
    /// A live session, but a state-changing request without the right
    /// `X-CSRF-Token`.
    BadCsrf(Caller),
    /// A live session and, where needed, the right CSRF token.
    Valid(Caller),
}

/// Whether a method can change state (and so needs the CSRF token).
fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Authenticates a request by its session cookie, checking the CSRF token on
/// state-changing methods. Called by the role extractors when the request has
/// no `X-API-Token`.
pub fn check(parts: &Parts, state: &AppState) -> SessionCheck {
    let Some(id) = cookie_value(&parts.headers) else {
        return SessionCheck::Absent;
    };
    let Some(session) = state.sessions().lookup(&id) else {
        return SessionCheck::Unknown;
    };
    if is_unsafe(&parts.method) && !csrf_matches(&parts.headers, &session.csrf) {
        return SessionCheck::BadCsrf(session.caller);
    }
    SessionCheck::Valid(session.caller)
}

fn csrf_matches(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|presented| tokens_equal(presented.trim(), expected))
}

/// Whether the request reached us over TLS (directly or through a proxy that
/// says so), so the cookie gets `Secure`. A client that lies here only makes
/// its own cookie stricter.
fn over_tls(headers: &HeaderMap) -> bool {
    let header_says = |name: &str, needle: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains(needle))
    };
    header_says("x-forwarded-proto", "https") || header_says("forwarded", "proto=https")
}

fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        MAX_LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// What the page learns about its session (never the session id, which
/// stays in the HttpOnly cookie).
fn session_json(info: &SessionInfo) -> serde_json::Value {
    json!({
        "authenticated": true,
        "name": info.caller.name,
        "role": info.caller.role.as_str(),
        "can_write": info.caller.role >= config_manager_service::auth::Role::Write,
        "csrf_token": info.csrf,
        "expires_at": info.expires_at,
        "idle_timeout_seconds": IDLE_TIMEOUT.as_secs(),
    })
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Audits a refused login, aggregated per (actor, address, reason) and
/// window like every denial (see `denials`), so a login flood cannot grow
/// the audit log.
async fn login_denied(state: &AppState, source: Option<IpAddr>, actor: &str, reason: &'static str) {
    let key = DenialKey {
        actor: actor.to_owned(),
        source,
        action: AuditAction::SessionLogin,
        reason,
        outcome: AuditOutcome::Denied,
    };
    config_manager_service::guard::record_denial(state, key, None).await;
}

/// Audits a successful login or logout, aggregated like denials (one row per
/// identity, address and window with a count): every read-role token can log
/// in, so a row per login let a reader grow the database without bound.
async fn session_event(
    state: &AppState,
    source: Option<IpAddr>,
    actor: &str,
    action: AuditAction,
    reason: &'static str,
) {
    let key = DenialKey {
        actor: actor.to_owned(),
        source,
        action,
        reason,
        outcome: AuditOutcome::Ok,
    };
    config_manager_service::guard::record_denial(state, key, None).await;
}

/// Body of `POST /ui/login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    token: String,
}

/// `POST /ui/login`: exchanges an API token for a session cookie.
///
/// The JSON content type is required (`ApiJson`), so a cross-site HTML form
/// cannot log a victim into the attacker's session; `Sec-Fetch-Site` is
/// checked as well where the browser sends it.
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Response> {
    let source = peer.map(|Extension(ConnectInfo(a))| a.ip());
    if let Some(addr) = source {
        if let Err(wait) = state.login_limit().check(addr) {
            login_denied(&state, source, "anonymous", "too many failed logins").await;
            return Err(ApiError::TooManyRequests {
                // Rounded up: retrying at the advertised time must work.
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            });
        }
    }
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site != "same-origin" && site != "none")
    {
        login_denied(&state, source, "anonymous", "cross-site login").await;
        return Err(ApiError::Forbidden("cross-site login refused".into()));
    }
    let Some(caller) = state.settings().tokens.authenticate(body.token.trim()) else {
        if let Some(addr) = source {
            state.login_limit().failed(addr);
        }
        login_denied(&state, source, "anonymous", "unknown token").await;
        return Err(ApiError::Unauthorized);
    };
    if caller.is_scoped() {
        // A scoped token reads its services' secrets in clear text; that is
        // for services fetching their own config, not for a page on a screen.
        login_denied(&state, source, &caller.name, "service-scoped token").await;
        return Err(ApiError::Forbidden(
            "service-scoped tokens are for services, not for the web UI".into(),
        ));
    }
    let name = caller.name.clone();
    let (id, info) = state.sessions().create(caller);
    session_event(
        &state,
        source,
        &name,
        AuditAction::SessionLogin,
        "session started",
    )
    .await;
    let mut resp = (StatusCode::OK, Json(session_json(&info))).into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&id, over_tls(&headers))) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(no_store(resp))
}

/// `GET /ui/session`: who the cookie belongs to, and its CSRF token (so a
/// reloaded page can carry on without keeping the token in storage).
///
/// No session (no cookie, or an expired or unknown one) is an ordinary
/// answer here, `200 {"authenticated": false}`, not a 401: the page asks on
/// every fresh load, and an error status put a red 401 in the browser's
/// console each time (issue 26). The answer reveals nothing a 401 did not.
pub async fn current(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let body = match cookie_value(&headers).and_then(|id| state.sessions().lookup(&id)) {
        Some(info) => session_json(&info),
        None => json!({ "authenticated": false }),
    };
    no_store(Json(body).into_response())
}

/// `POST /ui/logout`: ends the session (CSRF token required, like every
/// state-changing call) and clears the cookie. Without a live session it
/// only clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let source = peer.map(|Extension(ConnectInfo(a))| a.ip());
    if let Some(id) = cookie_value(&headers) {
        if let Some(info) = state.sessions().lookup(&id) {
            if !csrf_matches(&headers, &info.csrf) {
                super::auth::audit_denial(
                    &state,
                    &info.caller.name,
                    "POST /ui/logout",
                    "missing or invalid CSRF token",
                )
                .await;
                return Err(ApiError::Forbidden(
                    "missing or invalid X-CSRF-Token header".into(),
                ));
            }
            state.sessions().remove(&id);
            session_event(
                &state,
                source,
                &info.caller.name,
                AuditAction::SessionLogout,
                "session ended",
            )
            .await;
        }
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_cookie(over_tls(&headers))) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(no_store(resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing_and_flags() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; cm_session=xyz"),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("xyz"));
        h.insert(header::COOKIE, HeaderValue::from_static("cm_session="));
        assert_eq!(cookie_value(&h), None);
        let c = set_cookie("id", false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_tls(&h));
        assert!(set_cookie("id", true).ends_with("; Secure"));
    }
}
