//! The web UI: a static page and a few framework-free ES modules, compiled
//! into the binary with `include_str!`, talking to the REST API.
//!
//! Why static assets rather than server-rendered templates: every screen is
//! already a REST call (forms come from `?include_fields=true`), so the page
//! needs no server code of its own, the API stays the only contract, and the
//! binary needs no template engine. Why no framework or bundler: the whole UI
//! is a few hundred lines of plain JavaScript, so nobody needs Node.js to
//! build or change it, and nothing is fetched from the internet at run time.
//! See `docs/ui.md`.
//!
//! Every UI response carries a strict Content-Security-Policy (no inline
//! script or style, nothing from other origins, no framing). The page itself
//! is `no-store` because it runs with a session that can reveal secrets; the
//! assets are `no-cache` with an `ETag`, so a reload costs a 304, and an
//! upgraded binary is never served stale JavaScript.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use config_manager_service::state::AppState;

/// The Content-Security-Policy of every UI response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'self'; object-src 'none'";

/// One embedded file.
struct Asset {
    /// URL path under which it is served.
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page and its assets. Module files import each other by these paths.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/ui/assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/app.css"),
    },
    Asset {
        path: "/ui/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
    Asset {
        path: "/ui/assets/api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/api.js"),
    },
    Asset {
        path: "/ui/assets/dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/dom.js"),
    },
    Asset {
        path: "/ui/assets/diff.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/diff.js"),
    },
    Asset {
        path: "/ui/assets/form.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/form.js"),
    },
    Asset {
        path: "/ui/assets/instances.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/instances.js"),
    },
    Asset {
        path: "/ui/assets/views.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/views.js"),
    },
    Asset {
        path: "/ui/assets/favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("assets/favicon.svg"),
    },
];

/// The HTML shell (served at `/`).
const INDEX_HTML: &str = include_str!("assets/index.html");

/// Total bytes of the embedded page and assets (uncompressed), for docs and
/// the benchmark's sanity check.
pub fn total_bytes() -> usize {
    INDEX_HTML.len() + ASSETS.iter().map(|a| a.body.len()).sum::<usize>()
}

/// Routes of the UI: `/` and `/ui/assets/*`, with the security headers.
pub fn router() -> Router<AppState> {
    let mut router = Router::new().route("/", get(index));
    for asset in ASSETS {
        // Weak: the same asset is sent gzip-compressed or not, byte-different
        // representations of one content (RFC 9110 8.8.1).
        let etag = format!("W/\"{}\"", &hex::encode(Sha256::digest(asset.body))[..16]);
        router = router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve_asset(asset, &etag, &headers) }),
        );
    }
    router
        // tower-http's gzip for clients that accept it (the page and its
        // assets shrink to about a quarter).
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
}

/// `GET /`: the page shell. Never stored: it is the entry to a session that
/// can show secrets, and a stale shell could pair with newer assets.
async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// An asset with its ETag; answers `If-None-Match` with 304.
fn serve_asset(asset: &Asset, etag: &str, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let etag_value = HeaderValue::from_str(etag).ok();
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(v) = etag_value {
        h.insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_loads_only_embedded_assets() {
        // Every script and stylesheet the page names is one we serve, and the
        // page has no inline script or style (the CSP would block it).
        for (i, _) in INDEX_HTML.match_indices("src=\"") {
            let rest = &INDEX_HTML[i + 5..];
            let url = &rest[..rest.find('"').unwrap_or(0)];
            assert!(ASSETS.iter().any(|a| a.path == url), "unknown asset {url}");
        }
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains("style="));
        assert!(!INDEX_HTML.contains("<style"));
        for a in ASSETS {
            for (i, _) in a.body.match_indices("from './") {
                let rest = &a.body[i + 8..];
                let file = &rest[..rest.find('\'').unwrap_or(0)];
                let url = format!("/ui/assets/{file}");
                assert!(
                    ASSETS.iter().any(|x| x.path == url),
                    "{} imports unknown {url}",
                    a.path
                );
            }
        }
    }
}
