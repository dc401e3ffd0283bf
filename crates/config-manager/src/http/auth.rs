//! Role extractors: a handler that takes `RequireWrite` cannot run without a
//! write token, and the signature shows it. Every denial is audited with the
//! token's name (or `anonymous`), never the token.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use config_manager_core::store::NewAudit;

use super::error::ApiError;
use super::session::{self, SessionCheck};
use crate::auth::{Caller, Role};
use crate::state::AppState;

/// Header carrying the API token.
pub const TOKEN_HEADER: &str = "x-api-token";

/// A caller with at least the read role.
pub struct RequireRead(pub Caller);

/// A caller with the write role.
pub struct RequireWrite(pub Caller);

impl FromRequestParts<AppState> for RequireRead {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(parts, state, Role::Read).await.map(RequireRead)
    }
}

impl FromRequestParts<AppState> for RequireWrite {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(parts, state, Role::Write).await.map(RequireWrite)
    }
}

async fn authorize(parts: &Parts, state: &AppState, needed: Role) -> Result<Caller, ApiError> {
    let presented = parts
        .headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    // Only a denial needs it.
    let action = || format!("{} {}", parts.method, parts.uri.path());
    // A request with `X-API-Token` is authenticated by it alone. Without one,
    // a web UI session cookie counts, and a state-changing request must also
    // carry the session's CSRF token (see `session`).
    let (caller, why) = match presented {
        Some(t) => (
            state.settings().tokens.authenticate(t),
            "missing or unknown token",
        ),
        None => match session::check(parts, state) {
            SessionCheck::Absent => (None, "missing or unknown token"),
            SessionCheck::Unknown => (None, "unknown or expired session"),
            SessionCheck::BadCsrf(c) => {
                audit_denial(state, &c.name, &action(), "missing or invalid CSRF token").await;
                return Err(ApiError::Forbidden(
                    "missing or invalid X-CSRF-Token header".into(),
                ));
            }
            SessionCheck::Valid(c) => (Some(c), ""),
        },
    };
    match caller {
        None => {
            audit_denial(state, "anonymous", &action(), why).await;
            Err(ApiError::Unauthorized)
        }
        Some(c) if c.role < needed => {
            audit_denial(state, &c.name, &action(), "role too low").await;
            Err(ApiError::Forbidden(format!(
                "this call needs the {} role",
                needed.as_str()
            )))
        }
        Some(c) => Ok(c),
    }
}

/// Checks a scoped caller against the service in the path; audits a denial.
pub async fn check_scope(state: &AppState, caller: &Caller, service: &str) -> Result<(), ApiError> {
    if caller.may_access(service) {
        return Ok(());
    }
    audit_denial(
        state,
        &caller.name,
        "scope",
        "token is not scoped to this service",
    )
    .await;
    Err(ApiError::Forbidden(
        "this token is not allowed to access this service".into(),
    ))
}

/// Records a denial. A failing audit write is logged, not fatal: the request
/// is refused either way.
pub async fn audit_denial(state: &AppState, actor: &str, action: &str, reason: &str) {
    let entry = NewAudit {
        actor: actor.to_owned(),
        action: "access.denied".into(),
        // Paths can be hostile (10 kB, control characters): keep a short,
        // printable prefix.
        target: Some(
            action
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect(),
        ),
        outcome: "denied".into(),
        detail: Some(serde_json::json!({ "reason": reason })),
    };
    tracing::info!(actor, reason, "access denied");
    let result = state
        .run(move |m| m.store().record_audit(&entry).map_err(Into::into))
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not record an access denial in the audit log");
    }
}
