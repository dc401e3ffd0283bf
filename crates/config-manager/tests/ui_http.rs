//! The web UI over plain HTTP (no browser needed): session, cookie and CSRF
//! rules, and the page's security headers and caching. The browser tests are
//! in `ui.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/ui.rs"]
mod ui_support;

use common::{Server, READ_TOKEN, TTS_TOKEN, WRITE_TOKEN};
use serde_json::{json, Value};
use ui_support::{base, tts};

fn cookie_of(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Session, cookie and CSRF rules over plain HTTP (no browser needed).
#[tokio::test]
async fn session_cookie_and_csrf_rules() {
    let s = Server::start().await;
    let root = base(&s);
    let http = reqwest::Client::new();
    let post_login = |token: &str| {
        http.post(format!("{root}ui/login"))
            .json(&json!({ "token": token }))
    };

    // Unknown and service-scoped tokens get no session.
    assert_eq!(
        post_login("nope-nope-nope-nope")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(post_login(TTS_TOKEN).send().await.unwrap().status(), 403);
    // A cross-site login attempt is refused.
    let r = post_login(WRITE_TOKEN)
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The cookie: random id, never the token; HttpOnly, SameSite=Strict, Path=/, expiry.
    let r = post_login(WRITE_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let set = cookie_of(&r);
    assert!(set.starts_with("cm_session="), "{set}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert!(!set.contains(WRITE_TOKEN));
    let cookie = set.split(';').next().unwrap().to_owned();
    let session: Value = r.json().await.unwrap();
    let csrf = session["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(session["name"], "writer");
    assert_eq!(session["can_write"], true);
    assert!(!cookie.contains(&csrf));
    // Behind a TLS proxy the cookie is Secure.
    let r = post_login(WRITE_TOKEN)
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap();
    assert!(cookie_of(&r).ends_with("; Secure"), "{}", cookie_of(&r));

    // GET works with the cookie alone.
    let r = http
        .get(s.url("/services/tts-worker"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let version = r.json::<Value>().await.unwrap()["version"]
        .as_i64()
        .unwrap();
    let patch = |csrf: Option<&str>| {
        let mut req = http
            .patch(s.url("/services/tts-worker"))
            .header("Cookie", &cookie)
            .json(&json!({"config": {"volume_percent": 61}, "version": version}));
        if let Some(c) = csrf {
            req = req.header("X-CSRF-Token", c);
        }
        req
    };
    // A state-changing request with the cookie but without (or with a wrong)
    // CSRF token is refused, changes nothing, and is audited.
    for bad in [None, Some("wrong-token"), Some("")] {
        let r = patch(bad).send().await.unwrap();
        assert_eq!(r.status(), 403, "{bad:?}");
        let body: Value = r.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("CSRF"), "{body}");
    }
    let r = http
        .post(s.url("/search"))
        .header("Cookie", &cookie)
        .json(&json!({"query": "volume"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "every non-GET needs the CSRF token");
    assert_eq!(tts(&s).await["config"]["volume_percent"], 100);
    let (_, audit) = s
        .get("/audit?action=access.denied", Some(WRITE_TOKEN))
        .await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "writer"
                && e["detail"]["reason"] == "missing or invalid CSRF token"),
        "{audit}"
    );
    // With the token it goes through.
    let r = patch(Some(&csrf)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(tts(&s).await["config"]["volume_percent"], 61);
    // API-token requests need no CSRF token (scripts keep working).
    s.patch_latest("tts-worker", json!({"volume_percent": 62}))
        .await;

    // A read-role session cannot write even with its CSRF token.
    let (reader_cookie, reader_csrf) = s.ui_login(READ_TOKEN).await;
    let r = http
        .patch(s.url("/services/tts-worker"))
        .header("Cookie", &reader_cookie)
        .header("X-CSRF-Token", &reader_csrf)
        .json(&json!({"config": {"volume_percent": 1}, "version": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Logout needs the CSRF token, ends the session and clears the cookie.
    assert_eq!(s.ui_logout(&cookie, None).await.status(), 403);
    let r = s.ui_logout(&cookie, Some(&csrf)).await;
    assert_eq!(r.status(), 204);
    assert!(cookie_of(&r).contains("Max-Age=0"));
    let r = http
        .get(s.url("/services"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The ended session is simply not there: 200 {"authenticated": false},
    // no error status (the page asks on every load; issue 26).
    let r = http
        .get(format!("{root}ui/session"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"authenticated": false}));
    let r = http.get(format!("{root}ui/session")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"authenticated": false}));
    let (_, audit) = s.get("/audit?action=session.", Some(WRITE_TOKEN)).await;
    let actions: Vec<String> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {} {}", e["action"], e["actor"], e["outcome"]))
        .collect();
    assert!(
        actions.contains(&"\"session.logout\" \"writer\" \"ok\"".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"\"session.login\" \"anonymous\" \"denied\"".to_owned()),
        "{actions:?}"
    );
}

/// The page and its assets: security headers, caching, and nothing external.
#[tokio::test]
async fn page_security_headers_and_caching() {
    let s = Server::start().await;
    let root = base(&s);
    let http = reqwest::Client::new();
    let r = http.get(&root).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-frame-options"], "DENY");
    let html = r.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external resources"
    );

    let r = http
        .get(format!("{root}ui/assets/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let r = http
        .get(format!("{root}ui/assets/app.js"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // The API is unchanged by the UI routes: unknown paths still get problem JSON.
    let r = http.get(format!("{root}nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}
