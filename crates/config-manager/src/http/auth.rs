//! Role extractors: a handler that takes `RequireWrite` cannot run without a
//! write token, and the signature shows it. Every denial is audited with the
//! token's name (or `anonymous`), never the token.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use super::denials::DenialKey;
use super::error::ApiError;
use super::session::{self, SessionCheck};
use config_manager_core::audit::{AuditAction, AuditOutcome};
use config_manager_core::domain::ServiceName;
use config_manager_service::auth::{Caller, Role};
use config_manager_service::state::AppState;

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
    // Only a denial needs them.
    let action = || format!("{} {}", parts.method, parts.uri.path());
    let source = client_addr(parts);
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
                audit_denial_from(
                    state,
                    source,
                    &c.name,
                    &action(),
                    "missing or invalid CSRF token",
                )
                .await;
                return Err(ApiError::Forbidden(
                    "missing or invalid X-CSRF-Token header".into(),
                ));
            }
            SessionCheck::Valid(c) => (Some(c), ""),
        },
    };
    match caller {
        None => {
            audit_denial_from(state, source, "anonymous", &action(), why).await;
            Err(ApiError::Unauthorized)
        }
        Some(c) if c.role < needed => {
            audit_denial_from(state, source, &c.name, &action(), "role too low").await;
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

/// Records a denial without a known client address (see
/// [`audit_denial_from`]).
pub async fn audit_denial(state: &AppState, actor: &str, action: &str, reason: &'static str) {
    audit_denial_from(state, None, actor, action, reason).await;
}

/// The client address of a request (set by the accept loop).
pub fn client_addr(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Records a denial, aggregated per (actor, address, reason) and window
/// (see `denials`), so refused requests cannot grow the audit log without
/// bound. A failing audit write is logged, not fatal: the request is refused
/// either way.
pub async fn audit_denial_from(
    state: &AppState,
    source: Option<IpAddr>,
    actor: &str,
    action: &str,
    reason: &'static str,
) {
    tracing::info!(actor, reason, "access denied");
    // Paths can be hostile (10 kB, control characters): keep a short,
    // printable prefix.
    let target = action
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let key = DenialKey {
        actor: actor.to_owned(),
        source,
        action: AuditAction::AccessDenied,
        reason,
        outcome: AuditOutcome::Denied,
    };
    config_manager_service::guard::record_denial(state, key, Some(target)).await;
}

/// The role an authorization extractor demands, at the type level.
pub trait NeededRole: Send + Sync + 'static {
    const ROLE: Role;
}

/// [`NeededRole`]: the read role.
pub enum ReadRole {}
/// [`NeededRole`]: the write role.
pub enum WriteRole {}

impl NeededRole for ReadRole {
    const ROLE: Role = Role::Read;
}

impl NeededRole for WriteRole {
    const ROLE: Role = Role::Write;
}

/// A caller allowed to use the `{service}` of the request path: the role
/// `R` and, for a service-scoped token, that service in its scope (else 403,
/// audited). A handler taking it cannot forget the scope check.
pub struct ScopedService<R: NeededRole> {
    pub caller: Caller,
    /// The `{service}` path parameter, checked against the service-name
    /// grammar (whether the service is known is the manager's to say).
    pub service: ServiceName,
    _role: PhantomData<R>,
}

/// A reader of the path's service.
pub type ScopedRead = ScopedService<ReadRole>;
/// A writer of the path's service.
pub type ScopedWrite = ScopedService<WriteRole>;

impl<R: NeededRole> FromRequestParts<AppState> for ScopedService<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authorize(parts, state, R::ROLE).await?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadRequest("malformed path parameter".into()))?;
        let service = params
            .iter()
            .find(|(name, _)| *name == "service")
            .map(|(_, value)| value.to_owned())
            .ok_or_else(|| ApiError::Internal("route has no {service} parameter".into()))?;
        // The scope first, as before the name was typed: a scoped token
        // asking for another (even malformed) name is a 403, audited.
        check_scope(state, &caller, &service).await?;
        let service = ServiceName::parse(&service).map_err(|e| {
            ApiError::from(config_manager_core::manager::ManagerError::InvalidName {
                what: "service name",
                reason: e.to_string(),
            })
        })?;
        Ok(Self {
            caller,
            service,
            _role: PhantomData,
        })
    }
}

/// Why an endpoint needs a token that is not scoped to services (it spans
/// every service): the role it needs and what a scoped token is told.
pub trait UnscopedUse: Send + Sync + 'static {
    const ROLE: Role;
    /// The 403 detail for a service-scoped token.
    const REFUSAL: &'static str;
    /// `Some(target)`: the refusal is also audited as a denial of `target`.
    const AUDIT_TARGET: Option<&'static str> = None;
}

/// A caller with `U::ROLE` whose token is not service-scoped (403 with
/// `U::REFUSAL` otherwise). The handler's signature shows the rule.
pub struct Unscoped<U: UnscopedUse>(pub Caller, pub PhantomData<U>);

impl<U: UnscopedUse> FromRequestParts<AppState> for Unscoped<U> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authorize(parts, state, U::ROLE).await?;
        if caller.is_scoped() {
            if let Some(target) = U::AUDIT_TARGET {
                audit_denial(state, &caller.name, target, "service-scoped token").await;
            }
            return Err(ApiError::Forbidden(U::REFUSAL.into()));
        }
        Ok(Unscoped(caller, PhantomData))
    }
}

/// For queries with an optional service filter: a named service must be in
/// the caller's scope, and a service-scoped token must name one.
pub async fn check_scope_filter(
    state: &AppState,
    caller: &Caller,
    service: Option<&str>,
) -> Result<(), ApiError> {
    match service {
        Some(s) => check_scope(state, caller, s).await,
        None if caller.is_scoped() => Err(ApiError::Forbidden(
            "a service-scoped token must name its service".into(),
        )),
        None => Ok(()),
    }
}
