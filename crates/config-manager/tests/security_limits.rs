//! Issue 14, the HTTP/session/resource findings: each test reproduces an
//! attack against the real binary and checks what the service does now.
//! Slow clients, idle connections and the connection cap (finding 2), audit
//! growth by refused requests (4), session eviction by another identity (5),
//! login guessing (6), rebuild with a scoped token (8), file modes (10).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, READ_TOKEN, REBUILD_TOKEN, WRITE_TOKEN};
use serde_json::{json, Value};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A client without idle pooled connections, for servers that close idle
/// connections quickly.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    c
}

/// What a read tells about the connection.
enum Read1 {
    Data(Vec<u8>),
    Nothing,
    Closed,
}

fn read_once(c: &mut TcpStream) -> Read1 {
    let mut buf = [0u8; 4096];
    match c.read(&mut buf) {
        Ok(0) => Read1::Closed,
        Ok(n) => Read1::Data(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Read1::Nothing,
        Err(_) => Read1::Closed,
    }
}

/// Reads until the server closes the connection; returns what it sent.
/// Panics when it is still open after `within` (generous, not a measurement).
fn wait_closed(c: &mut TcpStream, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    loop {
        match read_once(c) {
            Read1::Closed => return got,
            Read1::Data(d) => got.extend(d),
            Read1::Nothing => {}
        }
        assert!(
            Instant::now() < deadline,
            "the server kept the connection open; it sent {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

/// Sends a complete health request and reads until the status line arrived.
fn request_health(c: &mut TcpStream, within: Duration) -> String {
    c.write_all(b"GET /api/config/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    loop {
        match read_once(c) {
            Read1::Data(d) => got.extend(d),
            Read1::Closed => panic!("closed before answering"),
            Read1::Nothing => {}
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.contains("\r\n\r\n") {
            return text;
        }
        assert!(Instant::now() < deadline, "no answer: {text:?}");
    }
}

#[tokio::test]
async fn slow_header_client_is_disconnected_and_not_served() {
    let mut s = Server::start_with(env(&[("CONFIG_HTTP_HEADER_TIMEOUT_MS", "1000")])).await;
    s.http = unpooled();
    let mut c = connect(&s);
    c.write_all(
        b"GET /api/config/services/slowloris-probe HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    )
    .unwrap();
    // One byte at a time, as a slowloris client does, until the server hangs
    // up (each read waits up to 200 ms between bytes).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    let closed = loop {
        if c.write_all(b"a").is_err() {
            break true;
        }
        match read_once(&mut c) {
            Read1::Closed => break true,
            Read1::Data(d) => got.extend(d),
            Read1::Nothing => {}
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    assert!(closed, "a slow client was kept open for a minute");
    // The rest of the request is too late: nothing is served.
    let _ = c.write_all(b"\r\nX-API-Token: reader-token-0123456789\r\n\r\n");
    got.extend(wait_closed(&mut c, Duration::from_secs(10)));
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains(" 200 "), "served: {text}");
    assert!(!text.contains(" 404 "), "served: {text}");
    // Nor did the request reach the router (the access log names every path).
    assert!(!s.log().contains("slowloris-probe"), "{}", s.log());
    // The server is fine.
    let (status, _) = s.get("/services", Some(READ_TOKEN)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn idle_connections_are_closed_by_the_idle_timeout() {
    // A long header timeout, so only the idle watchdog can close it.
    let s = Server::start_with(env(&[
        ("CONFIG_HTTP_HEADER_TIMEOUT_MS", "600000"),
        ("CONFIG_HTTP_IDLE_TIMEOUT_MS", "1000"),
    ]))
    .await;
    let mut c = connect(&s);
    let answer = request_health(&mut c, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    // Kept alive after the response, then closed for idleness.
    wait_closed(&mut c, Duration::from_secs(30));
}

// Multi-threaded: the blocking socket reads below must not stop the
// runtime that closes the dropped client's pooled connection.
//
// Issue 23 (finding 3): at the cap, a new connection used to wait in the
// backlog until an idle one timed out. Now the longest-idle connection is
// closed to make room, so the new request is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_longest_idle_connection_makes_room() {
    let mut s = Server::start_with(env(&[
        ("CONFIG_HTTP_MAX_CONNECTIONS", "4"),
        ("CONFIG_HTTP_HEADER_TIMEOUT_MS", "600000"),
        ("CONFIG_HTTP_IDLE_TIMEOUT_MS", "600000"),
    ]))
    .await;
    // The harness's client keeps its start-up connection in its pool:
    // dropping the client closes it and frees its slot.
    s.http = unpooled();
    // Four accepted, idle keep-alive connections fill the cap (each answered
    // once, so the server has accepted them), oldest first.
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..4 {
        let mut c = connect(&s);
        let answer = request_health(&mut c, Duration::from_secs(120));
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
        held.push(c);
        std::thread::sleep(Duration::from_millis(20));
    }
    // A fifth connection is served while the four are still open.
    let mut fifth = connect(&s);
    let answer = request_health(&mut fifth, Duration::from_secs(120));
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    // The oldest idle connection was closed to make room; the newest kept.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match read_once(&mut held[0]) {
            Read1::Closed => break,
            Read1::Data(d) => panic!("answered: {}", String::from_utf8_lossy(&d)),
            Read1::Nothing => assert!(Instant::now() < deadline, "the oldest is never closed"),
        }
    }
    assert!(
        matches!(read_once(&mut held[3]), Read1::Nothing),
        "the newest is kept"
    );
}

#[tokio::test]
async fn idle_connections_at_the_cap_time_out_and_a_new_request_is_served() {
    let mut s = Server::start_with(env(&[
        ("CONFIG_HTTP_MAX_CONNECTIONS", "2"),
        ("CONFIG_HTTP_HEADER_TIMEOUT_MS", "1000"),
    ]))
    .await;
    s.http = unpooled();
    // Two connections that never send anything, never closed by the client.
    let mut idle = vec![connect(&s), connect(&s)];
    let (status, _) = s.get("/services", Some(READ_TOKEN)).await;
    assert_eq!(status, 200);
    for c in &mut idle {
        let sent = wait_closed(c, Duration::from_secs(30));
        assert!(
            !String::from_utf8_lossy(&sent).contains(" 200 "),
            "{sent:?}"
        );
    }
}

fn audit_rows(db: &Path) -> i64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn tokenless_requests_add_one_aggregated_audit_row() {
    // A window longer than the test: its count is written at shutdown.
    let mut s = Server::start_with(env(&[("CONFIG_AUDIT_DENIAL_WINDOW_SECS", "3600")])).await;
    let before = audit_rows(&s.db_path());
    let url = s.url("/services");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let http = s.http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                let r = http.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 401);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let added = audit_rows(&s.db_path()) - before;
    assert_eq!(added, 1, "2000 refused requests added {added} audit rows");
    // The row is visible at once, and carries the total after the window.
    let (_, body) = s
        .get("/audit?outcome=denied&actor=anonymous", Some(WRITE_TOKEN))
        .await;
    assert_eq!(body["entries"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(s.terminate(), Some(0));
    let c = rusqlite::Connection::open(s.db_path()).unwrap();
    let detail: String = c
        .query_row(
            "SELECT detail FROM audit_log WHERE actor = 'anonymous' AND action = 'access.denied'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let detail: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["count"], 2000, "{detail}");
    assert_eq!(detail["source"], "127.0.0.1");
    assert_eq!(detail["reason"], "missing or unknown token");
}

#[tokio::test]
async fn audit_retention_prunes_old_and_excess_rows() {
    let mut s = Server::start().await;
    assert_eq!(s.terminate(), Some(0));
    {
        let c = rusqlite::Connection::open(s.db_path()).unwrap();
        for i in 0..30 {
            c.execute(
                "INSERT INTO audit_log (at, actor, action, target, outcome, detail) \
                 VALUES ('2001-01-01T00:00:00.000Z', 'old', 'test.old', ?1, 'ok', NULL)",
                [i.to_string()],
            )
            .unwrap();
        }
        for i in 0..80 {
            c.execute(
                "INSERT INTO audit_log (at, actor, action, target, outcome, detail) \
                 VALUES (strftime('%Y-%m-%dT%H:%M:%fZ','now'), 'new', 'test.new', ?1, 'ok', NULL)",
                [i.to_string()],
            )
            .unwrap();
        }
    }
    s.extra_env = env(&[
        ("CONFIG_AUDIT_RETENTION_DAYS", "30"),
        ("CONFIG_AUDIT_MAX_ROWS", "50"),
    ]);
    s.spawn().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = rusqlite::Connection::open_with_flags(
            s.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let old: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM audit_log WHERE actor = 'old'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let total: i64 = c
            .query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))
            .unwrap();
        if old == 0 && total <= 50 {
            // The newest rows are the ones kept.
            let newest: String = c
                .query_row(
                    "SELECT target FROM audit_log WHERE actor = 'new' ORDER BY id DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(newest, "79");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not pruned: {old} old rows, {total} in all"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn login(s: &Server, token: &str) -> reqwest::Response {
    s.http
        .post(format!("http://127.0.0.1:{}/ui/login", s.port))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap()
}

fn session_cookie(resp: &reqwest::Response) -> String {
    let set = resp.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// 200 while the cookie names a live session, 401 when not (the endpoint
/// answers 200 `{"authenticated": false}` then; mapped back for these asserts).
async fn session_status(s: &Server, cookie: &str) -> u16 {
    let resp = s
        .http
        .get(format!("http://127.0.0.1:{}/ui/session", s.port))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    if body["authenticated"] == true {
        200
    } else {
        401
    }
}

#[tokio::test]
async fn a_reader_logging_in_in_a_loop_does_not_sign_a_writer_out() {
    let s = Server::start().await;
    let resp = login(&s, WRITE_TOKEN).await;
    assert_eq!(resp.status(), 200);
    let writer = session_cookie(&resp);
    let mut first_reader = None;
    for _ in 0..1100 {
        let resp = login(&s, READ_TOKEN).await;
        assert_eq!(resp.status(), 200);
        first_reader.get_or_insert_with(|| session_cookie(&resp));
    }
    assert_eq!(
        session_status(&s, &writer).await,
        200,
        "the writer was signed out"
    );
    // The reader's own oldest session made room for its new ones.
    assert_eq!(session_status(&s, &first_reader.unwrap()).await, 401);
}

#[tokio::test]
async fn bad_logins_are_rate_limited_per_address_and_audited_aggregated() {
    let s = Server::start_with(env(&[
        ("CONFIG_LOGIN_MAX_FAILURES", "5"),
        ("CONFIG_LOGIN_WINDOW_SECS", "3600"),
        ("CONFIG_AUDIT_DENIAL_WINDOW_SECS", "1"),
    ]))
    .await;
    // A normal login works.
    assert_eq!(login(&s, WRITE_TOKEN).await.status(), 200);
    for i in 0..5 {
        let r = login(&s, &format!("guess-{i}-0123456789")).await;
        assert_eq!(r.status(), 401);
    }
    for token in ["guess-5-0123456789", WRITE_TOKEN] {
        let r = login(&s, token).await;
        assert_eq!(r.status(), 429, "{token}");
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&retry), "{retry}");
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], 429);
        assert_eq!(body["type"], "urn:config-manager:problem:too-many-requests");
    }
    // The API with a token is not affected.
    let (status, _) = s.get("/services", Some(WRITE_TOKEN)).await;
    assert_eq!(status, 200);
    // Audited as one row per reason with the count, once the window closed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = s
            .get(
                "/audit?action=session.login&outcome=denied",
                Some(WRITE_TOKEN),
            )
            .await;
        let entries = body["entries"].as_array().unwrap().clone();
        // A window may end in the middle of the burst: then the counts are
        // split over two rows.
        let count_of = |reason: &str| {
            entries
                .iter()
                .filter(|e| e["detail"]["reason"] == reason)
                .map(|e| e["detail"]["count"].as_u64().unwrap())
                .sum::<u64>()
        };
        if count_of("unknown token") == 5 && count_of("too many failed logins") == 2 {
            assert!(entries.len() <= 4, "{body}");
            assert!(entries.iter().all(|e| e["detail"]["source"] == "127.0.0.1"));
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const TTS_WRITE_TOKEN: &str = "tts-write-scoped-token-0123456789";

#[tokio::test]
async fn a_scoped_write_token_cannot_rebuild_the_database() {
    let s = Server::start_with(env(&[
        ("REBUILD_TOKEN", REBUILD_TOKEN),
        (
            "CONFIG_API_TOKENS",
            &format!(
                "writer={WRITE_TOKEN}:config.write,ttsw={TTS_WRITE_TOKEN}:config.write:tts-worker"
            ),
        ),
    ]))
    .await;
    // The scoped token writes its own service...
    let (status, _) = s
        .send(
            "PATCH",
            "/services/tts-worker",
            Some(TTS_WRITE_TOKEN),
            &json!({"config": {"volume_percent": 9}, "version": 1}),
        )
        .await;
    assert_eq!(status, 200);
    // ...but may not rebuild everything, even with the rebuild token.
    let (status, body) = s.rebuild(TTS_WRITE_TOKEN, REBUILD_TOKEN).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "urn:config-manager:problem:forbidden");
    let moved: Vec<String> = std::fs::read_dir(s.path("data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".broken-"))
        .collect();
    assert!(moved.is_empty(), "{moved:?}");
    let (_, audit) = s
        .get("/audit?actor=ttsw&outcome=denied", Some(WRITE_TOKEN))
        .await;
    assert_eq!(
        audit["entries"][0]["detail"]["reason"],
        "service-scoped token"
    );
    // An unscoped write token still can.
    let (status, body) = s.rebuild(WRITE_TOKEN, REBUILD_TOKEN).await;
    assert_eq!(status, 202, "{body}");
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn database_and_companion_files_are_owner_only_under_umask_022() {
    // The usual umask, inherited by the service.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let s = Server::start_with(env(&[
        ("REBUILD_TOKEN", REBUILD_TOKEN),
        ("BACKUP_SNAPSHOT_DIR", "snaps"),
        ("BACKUP_SNAPSHOT_INTERVAL_SECS", "1"),
    ]))
    .await;
    s.patch_ok("tts-worker", json!({"volume_percent": 7}), 1)
        .await;
    // A snapshot with its metadata.
    let snaps = s.path("snaps");
    let deadline = Instant::now() + Duration::from_secs(30);
    let snapshot = loop {
        let found = std::fs::read_dir(&snaps).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "db"))
        });
        if let Some(p) = found {
            break p;
        }
        assert!(Instant::now() < deadline, "no snapshot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A rebuild moves the database aside and writes a tombstone.
    let (status, body) = s.rebuild(WRITE_TOKEN, REBUILD_TOKEN).await;
    assert_eq!(status, 202, "{body}");
    s.patch_latest("tts-worker", json!({"volume_percent": 8}))
        .await;
    let data = s.path("data");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap().flatten() {
        // (A temp file may vanish meanwhile.)
        if let Ok(meta) = entry.metadata() {
            if meta.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let name = entry.file_name().to_string_lossy().into_owned();
                assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
                checked.push(name);
            }
        }
    }
    let snap_epoch = {
        let mut n = snapshot.as_os_str().to_owned();
        n.push(".epoch.json");
        std::path::PathBuf::from(n)
    };
    assert_eq!(mode(&snapshot), 0o600);
    assert_eq!(mode(&snap_epoch), 0o600);
    for expected in [
        "config.db",
        "config.db-wal",
        "config.db-shm",
        "config.db.epoch.json",
    ] {
        assert!(
            checked.iter().any(|n| n == expected),
            "{expected} missing: {checked:?}"
        );
    }
    for part in [".broken-", ".tombstone-"] {
        assert!(
            checked.iter().any(|n| n.contains(part)),
            "{part} missing: {checked:?}"
        );
    }
}

/// With its descriptors exhausted (`accept` fails with EMFILE) the server
/// neither dies nor spins: it logs a rate-limited warning, and serves again
/// once connections are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_does_not_stop_the_accept_loop() {
    let mut s = Server::start().await;
    s.http = unpooled();
    let pid = s.child.as_ref().unwrap().id();
    let ok = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=64:64"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "prlimit failed");
    // More connections than descriptors; each sends a request so that the
    // accepted ones stay busy until we drop them.
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut c = connect(&s);
        let _ = c.write_all(b"GET /api/config/health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        held.push(c);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.log().contains("accepting a connection failed") {
        assert!(Instant::now() < deadline, "no accept failure:\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(held);
    // Served again, by the same process.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = s.http.get(s.url("/health")).send().await {
            assert!(matches!(r.status().as_u16(), 200 | 503));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never served again:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.child.as_mut().unwrap().try_wait().unwrap().is_none());
    // Rate-limited: a handful of warnings, not one per retry.
    let warnings = s.log().matches("accepting a connection failed").count();
    assert!(warnings <= 10, "{warnings} warnings");
}
