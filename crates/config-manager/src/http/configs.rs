//! `/services`: list, read and write service configurations.

use crate::http::ApiState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use config_manager_core::change_type::ChangeType;
use config_manager_core::domain::Version;
use config_manager_core::manager::{PutRequest, SecretView};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::{RequireRead, ScopedRead, ScopedWrite, Unscoped, UnscopedUse};
use super::error::{ApiError, ApiResult};
use super::json::{ApiJson, ApiPath, ApiQuery};
use super::paging::{new_page, page_response, MAX_PAGE_LIMIT};
use config_manager_service::applied::{desired_from_fallback, desired_from_manager};
use config_manager_service::auth::Role;
use config_manager_service::read_cache::Cached;
use config_manager_service::runner::Served;
use config_manager_service::state::AppState;

/// Longest accepted change reason.
pub const MAX_REASON_LEN: usize = 500;

/// `GET /services`: the names, and per service the summary of what its
/// instances applied (`applied`, keyed by service; desired vs applied).
pub async fn list(
    State(state): State<AppState>,
    RequireRead(caller): RequireRead,
) -> ApiResult<Response> {
    let ((mut services, desired), served) = state
        .read(
            |m| Ok((m.list_services()?, desired_from_manager(m)?)),
            |f| Ok((f.list_services(), desired_from_fallback(f))),
        )
        .await?;
    services.retain(|s| caller.may_access(s));
    let board = state.applied();
    let applied: Map<String, Value> = services
        .iter()
        .filter_map(|s| {
            let summary = board.summary(s, desired.get(s));
            Some((s.to_string(), serde_json::to_value(summary).ok()?))
        })
        .collect();
    Ok(with_source(
        Json(json!({ "services": services, "applied": applied })).into_response(),
        served,
    ))
}

#[derive(Deserialize)]
pub struct GetQuery {
    #[serde(default)]
    include_fields: bool,
}

/// `GET /services/{service}`
pub async fn get(
    State(state): State<AppState>,
    ScopedRead {
        caller, service, ..
    }: ScopedRead,
    ApiQuery(q): ApiQuery<GetQuery>,
) -> ApiResult<Response> {
    let view = if caller.may_read_secrets_of(&service) {
        SecretView::Revealed
    } else {
        SecretView::Masked
    };
    let fields = q.include_fields;
    let cacheable = view == SecretView::Masked && state.is_normal();
    if cacheable {
        if let Some(hit) = state.read_cache().get(&service, fields) {
            return Ok(cached_response(hit));
        }
    }
    let generation = state.read_cache().generation();
    let cache_key = service.clone();
    let service2 = service.clone();
    let (config, served) = state
        .read(
            move |m| {
                let name = m.resolve_service(&service)?;
                Ok(m.get_effective(&name, view, fields)?)
            },
            move |f| {
                let name = f.resolve_service(&service2)?;
                Ok(f.get_effective(&name, view, fields)?)
            },
        )
        .await?;
    let etag = etag(&config.config_epoch, config.version);
    if cacheable && served == Served::Database {
        let body = serde_json::to_vec(&config)
            .map_err(|e| ApiError::Internal(format!("cannot serialize a config: {e}")))?;
        let hit = Cached {
            body: body.into(),
            etag: etag.into(),
        };
        state
            .read_cache()
            .insert(generation, &cache_key, fields, hit.clone());
        return Ok(cached_response(hit));
    }
    let mut resp = Json(config).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if view == SecretView::Revealed {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(with_source(resp, served))
}

/// Body of `PUT`/`PATCH /services/{service}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    #[serde(default)]
    service: Option<String>,
    config: Map<String, Value>,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
}

/// `PUT /services/{service}`: replace the values (missing keys go back to
/// their defaults).
pub async fn put(
    state: State<AppState>,
    scoped: ScopedWrite,
    headers: HeaderMap,
    body: ApiJson<PutBody>,
) -> ApiResult<Response> {
    write(state, scoped, headers, body, false).await
}

/// `PATCH /services/{service}`: change only the given keys.
pub async fn patch(
    state: State<AppState>,
    scoped: ScopedWrite,
    headers: HeaderMap,
    body: ApiJson<PutBody>,
) -> ApiResult<Response> {
    write(state, scoped, headers, body, true).await
}

async fn write(
    State(state): State<AppState>,
    ScopedWrite {
        caller, service, ..
    }: ScopedWrite,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PutBody>,
    merge: bool,
) -> ApiResult<Response> {
    if body
        .service
        .as_deref()
        .is_some_and(|s| s != service.as_str())
    {
        return Err(ApiError::BadRequest(
            "the body's service does not match the URL".into(),
        ));
    }
    let (expected, etag_epoch) = expected_version(&headers, body.version)?;
    let reason = check_reason(body.reason)?;
    let actor = caller.name.clone();
    let (outcome, epoch) = state
        .write(move |m| {
            let name = m.resolve_service(&service)?;
            if etag_epoch
                .as_deref()
                .is_some_and(|e| e != m.epoch().as_str())
            {
                // An ETag from before a rebuild: its version number means nothing now.
                let current = m.get_effective(&name, SecretView::Omitted, false)?.version;
                return Err(ApiError::Conflict { current });
            }
            let outcome = m.put(
                &name,
                PutRequest {
                    config: body.config,
                    expected_version: Some(expected),
                    merge,
                    actor,
                    reason,
                    change_type: ChangeType::Update,
                },
            )?;
            Ok((outcome, m.epoch().to_string()))
        })
        .await?;
    let etag = etag(&epoch, outcome.stored.version);
    let mut resp = Json(json!({
        "success": true,
        "service": outcome.stored.service,
        "version": outcome.stored.version,
        "config_epoch": epoch,
        "message": if outcome.changed { "saved" } else { "no changes" },
    }))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// The optimistic-locking version: from the body and/or `If-Match`; when both
/// are given they must agree. A write without either is refused (428), so no
/// client overwrites a change it never saw.
/// Returns the version and, when the ETag carries one, its epoch. The body's
/// number becomes a [`Version`] here, so a negative one gets this endpoint's
/// own message.
fn expected_version(
    headers: &HeaderMap,
    body: Option<i64>,
) -> ApiResult<(Version, Option<String>)> {
    let (header, epoch) = match headers.get(header::IF_MATCH) {
        None => (None, None),
        Some(v) => {
            let (version, epoch) = parse_etag(v.to_str().unwrap_or("")).ok_or_else(|| {
                ApiError::BadRequest("If-Match must be an ETag from a previous GET".into())
            })?;
            (Some(version), epoch)
        }
    };
    let version = match (body, header) {
        (Some(b), Some(h)) if b != h.get() => Err(ApiError::BadRequest(
            "version in the body and If-Match disagree".into(),
        )),
        (Some(v), _) => {
            Version::new(v).map_err(|_| ApiError::BadRequest("version must be >= 0".into()))
        }
        (None, Some(v)) => Ok(v),
        (None, None) => Err(ApiError::PreconditionRequired(
            "send the version you are changing, as \"version\" in the body or an If-Match header"
                .into(),
        )),
    }?;
    Ok((version, epoch))
}

/// A response from a cached (database-served) body.
fn cached_response(hit: Cached) -> Response {
    let mut resp = Response::new(axum::body::Body::from(hit.body));
    // Room for these three and the three the middleware adds, so the map
    // is allocated once instead of growing.
    let headers = resp.headers_mut();
    headers.reserve(6);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // The tag is checked once more as a header value (a few dozen bytes);
    // one that is not is left out rather than failing the read.
    if let Ok(etag) = HeaderValue::from_maybe_shared(hit.etag) {
        headers.insert(header::ETAG, etag);
    }
    with_source(resp, Served::Database)
}

/// Where a read was served from (see [`with_source`]).
pub const CONFIG_SOURCE: HeaderName = HeaderName::from_static("x-config-source");

/// Marks where a read came from: `X-Config-Source: database` or `lkg-cache`
/// (read-only fallback).
pub fn with_source(mut resp: Response, served: Served) -> Response {
    resp.headers_mut()
        .insert(CONFIG_SOURCE, HeaderValue::from_static(served.as_str()));
    resp
}

/// Strong ETag of a configuration version: `"<version>-<epoch>"`.
pub fn etag(epoch: &str, version: Version) -> String {
    format!("\"{version}-{epoch}\"")
}

/// Reads the version (and epoch, if present) out of an ETag
/// (`"7-<epoch>"`, `W/"7-<epoch>"`, `"7"` or `7`).
fn parse_etag(raw: &str) -> Option<(Version, Option<String>)> {
    let raw = raw.trim().trim_start_matches("W/").trim_matches('"');
    match raw.split_once('-') {
        Some((v, epoch)) => Some((v.parse().ok()?, Some(epoch.to_owned()))),
        None => Some((raw.parse().ok()?, None)),
    }
}

/// Validates a free-text change reason.
pub fn check_reason(reason: Option<String>) -> ApiResult<Option<String>> {
    match reason {
        Some(r) if r.chars().count() > MAX_REASON_LEN => Err(ApiError::BadRequest(format!(
            "reason must be at most {MAX_REASON_LEN} characters"
        ))),
        Some(r) if r.chars().any(|c| c.is_control() && c != '\n') => Err(ApiError::BadRequest(
            "reason must not contain control characters".into(),
        )),
        Some(r) if r.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

#[derive(Deserialize)]
pub struct VersionsQuery {
    #[serde(default)]
    limit: Option<u32>,
    /// Keyset paging: pass the `next_before_version` of the previous page
    /// (a version: an integer >= 0, else 400).
    #[serde(default)]
    before_version: Option<Version>,
}

/// `GET /services/{service}/versions`: the stored versions, newest first,
/// one page cut by `limit` (clamped to 1..=1000) and by the page's byte
/// budget (`next_before_version` continues it).
pub async fn versions(
    State(state): State<AppState>,
    ScopedRead { service, .. }: ScopedRead,
    ApiQuery(q): ApiQuery<VersionsQuery>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE_LIMIT);
    let before = q.before_version;
    let page = state
        .run(move |m| {
            let name = m.resolve_service(&service)?;
            let mut page = new_page("versions", limit);
            m.store().config_versions_page(&name, before, &mut page)?;
            Ok(page)
        })
        .await?;
    Ok(page_response(page, "next_before_version"))
}

/// `GET /services/{service}/schema`: the service's JSON Schema.
pub async fn schema(
    State(state): State<AppState>,
    ScopedRead { service, .. }: ScopedRead,
) -> ApiResult<Json<Value>> {
    state
        .run(move |m| {
            let name = m.resolve_service(&service)?;
            m.schemas()
                .get(name.as_str())
                .map(|s| Json(s.document().clone()))
                .ok_or_else(|| ApiError::NotFound(format!("{name} has no schema")))
        })
        .await
}

/// Registering a schema: write role, unscoped tokens only.
pub enum RegisterSchema {}

impl UnscopedUse for RegisterSchema {
    const ROLE: Role = Role::Write;
    const REFUSAL: &'static str = "service-scoped tokens cannot register schemas";
}

/// `PUT /services/{service}/schema`: registers (or replaces) a service's JSON
/// Schema at run time. The body is the schema document. Stored values must
/// satisfy it (422 names the failing fields otherwise). Persisted in the
/// database; the service's defaults are stored as version 1 when it is new.
pub async fn put_schema(
    State(state): State<AppState>,
    Unscoped(caller, _): Unscoped<RegisterSchema>,
    ApiPath(service): ApiPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/json") || v.starts_with("application/schema+json")
        });
    if !json_type {
        return Err(ApiError::UnsupportedMediaType);
    }
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("schema must be UTF-8 JSON".into()))?;
    let name = config_manager_core::domain::ServiceName::parse(&service)
        .map_err(|e| ApiError::BadRequest(format!("invalid service name: {e}")))?;
    let registered = name.clone();
    let actor = caller.name.clone();
    let (manager, version) = state
        .run(move |m| {
            let next = m.register_schema(&name, &text, &actor)?;
            let version = next.schema_version();
            Ok((next, version))
        })
        .await?;
    state.install_manager(manager, &registered).await;
    Ok(Json(json!({
        "success": true,
        "service": service,
        "schema_version": version,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_roundtrip() {
        let v = |n| Version::new(n).unwrap();
        assert_eq!(
            parse_etag(&etag("550e8400-e29b", v(7))),
            Some((v(7), Some("550e8400-e29b".into())))
        );
        assert_eq!(parse_etag("W/\"3-x\""), Some((v(3), Some("x".into()))));
        assert_eq!(parse_etag("12"), Some((v(12), None)));
        assert_eq!(parse_etag("\"abc\""), None);
        assert_eq!(parse_etag("\"-1\""), None);
        assert_eq!(parse_etag("\"99999999999999999999-x\""), None);
    }

    #[test]
    fn bad_versions_in_the_body_or_if_match_are_400s_naming_the_rule() {
        let if_match = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_MATCH, HeaderValue::from_str(v).unwrap());
            h
        };
        let detail = |r: ApiResult<(Version, Option<String>)>| match r {
            Err(ApiError::BadRequest(d)) => d,
            other => panic!("expected a 400, got {other:?}"),
        };
        assert_eq!(
            detail(expected_version(&HeaderMap::new(), Some(-1))),
            "version must be >= 0"
        );
        for bad in ["\"-1-e\"", "\"1.5\"", "\"99999999999999999999\"", "x"] {
            assert_eq!(
                detail(expected_version(&if_match(bad), None)),
                "If-Match must be an ETag from a previous GET",
                "{bad}"
            );
        }
        assert_eq!(
            detail(expected_version(&if_match("\"3-e\""), Some(2))),
            "version in the body and If-Match disagree"
        );
        assert!(matches!(
            expected_version(&HeaderMap::new(), None),
            Err(ApiError::PreconditionRequired(_))
        ));
        let (v, epoch) = expected_version(&if_match("\"2-e\""), Some(2)).unwrap();
        assert_eq!((v.get(), epoch.as_deref()), (2, Some("e")));
    }
}
