//! Faults of the machine rather than of the file's contents, against the
//! real binary: no file descriptor left (issue 14, finding 2), a full disk
//! (a size-limited tmpfs mounted here) and a database its user may not read
//! (the service runs as `nobody`). None of them is a reason to rebuild; each
//! ends by itself once the fault is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{free_port, wait_fallback, Server, READ_TOKEN};
use faults::*;
use serde_json::{json, Value};

/// A server value whose directory exists but whose process is not started.
fn unstarted(extra_env: Vec<(String, String)>) -> Server {
    Server {
        dir: tempfile::tempdir().unwrap(),
        port: free_port(),
        child: None,
        extra_env,
        http: reqwest::Client::new(),
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The attack of issue 14 (finding 2): the service's file descriptors are
/// used up by idle connections while `ALLOW_AUTO_REBUILD=1`. Before the fix
/// the monitor read "cannot open" as `missing` and moved the healthy
/// database aside. Now: fallback with `unavailable`, the file stays exactly
/// where it is, and everything is normal again once the connections go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_never_moves_a_healthy_database() {
    let s = Server::start_with(fast_monitor(&[("ALLOW_AUTO_REBUILD", "1")])).await;
    set_volume(&s, 61).await;
    let before = identity(&s.db_path());
    let pid = s.child.as_ref().unwrap().id();
    // A file limit a little above what the service uses now.
    let in_use = open_fds(pid);
    let limit = in_use + 12;
    eprintln!("the service has {in_use} descriptors open; file limit set to {limit}");
    let out = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "prlimit: {out:?}");

    // Idle connections: the service accepts until no descriptor is left.
    let mut conns = Vec::new();
    for _ in 0..(limit + 100) {
        conns.push(std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap());
    }
    wait_log(&s, "entered read-only fallback").await;
    // Many monitor ticks under the fault, rebuild allowed: nothing moves.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        broken_files(&s.path("data")).is_empty(),
        "a healthy database was moved aside:\n{}",
        s.log()
    );
    assert_eq!(identity(&s.db_path()), before);
    drop(conns);

    let h = wait_health(&s, "normal again", |h| h["operational_mode"] == "normal").await;
    assert_eq!(h["database_status"], "healthy");
    assert_eq!(
        identity(&s.db_path()),
        before,
        "the same file, never replaced"
    );
    assert!(broken_files(&s.path("data")).is_empty());
    assert_eq!(volume_from_database(&s).await, 61);
    set_volume(&s, 62).await;
    let log = s.log();
    assert!(
        log.contains("Unavailable") && !log.contains("database rebuilt"),
        "{log}"
    );
}

/// Unmounts (lazily) on drop, so a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Self(at.to_owned()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    // Whatever is left below one chunk, too.
    while f.write_all(&[0u8; 512]).is_ok() {}
    let _ = f.sync_all();
    path
}

async fn put_blob(s: &Server, name: &str) -> (u16, Value) {
    let blob = "b".repeat(200 * 1024);
    s.put_config(
        name,
        &json!({"service": name, "config": {"blob": blob}, "version": 0}),
    )
    .await
}

/// Disk full: the database lives on a 4 MiB tmpfs that is then filled. A
/// write gets 503 "disk is full", what was acknowledged stays readable from
/// the database (mode stays normal: nothing is broken), and writes succeed
/// again when space returns.
#[tokio::test]
async fn disk_full_write_gets_503_nothing_lost_and_writes_resume() {
    let mut s = unstarted(fast_monitor(&[("CONFIG_ALLOW_UNKNOWN_SERVICES", "1")]));
    let data = s.path("data");
    let _mount = match Mount::tmpfs(&data, "4m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED disk_full test: cannot mount a tmpfs here ({e})");
            return;
        }
    };
    s.spawn().await;
    set_volume(&s, 71).await;
    let filler = fill(&data);

    let (status, body) = put_blob(&s, "blob-one").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("disk is full"),
        "{body}"
    );
    let (status, _) = s.get("/services/blob-one", Some(READ_TOKEN)).await;
    assert_eq!(status, 404, "the refused write left nothing behind");
    assert_eq!(volume_from_database(&s).await, 71, "acknowledged data kept");
    let (_, h) = s.get("/health", None).await;
    assert_eq!(h["operational_mode"], "normal", "{h}");

    std::fs::remove_file(filler).unwrap();
    let (status, body) = put_blob(&s, "blob-one").await;
    assert_eq!(status, 200, "{body}");
    set_volume(&s, 72).await;
    assert_eq!(volume_from_database(&s).await, 72);
    s.kill9();
}

const AS_NOBODY: [&str; 5] = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
    "--",
];

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The database made unreadable for the service's (unprivileged) user,
/// while it runs and at start-up: read-only fallback with `unavailable`
/// (never `missing`, never a rebuild), reads from the cache; back to normal
/// by itself once the permissions are fixed.
#[tokio::test]
async fn unreadable_database_falls_back_then_recovers_when_permissions_are_fixed() {
    let mut s = unstarted(fast_monitor(&[("ALLOW_AUTO_REBUILD", "1")]));
    let status = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(s.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    spawn_wrapped(&mut s, &AS_NOBODY).await;
    let pid = s.child.as_ref().unwrap().id();
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        proc_status.lines().any(|l| l.starts_with("Uid:\t65534")),
        "runs as nobody: {proc_status}"
    );
    set_volume(&s, 81).await;

    // While running.
    chmod(&s.db_path(), 0o000);
    let h = wait_fallback(&s).await;
    assert_eq!(h["database_status"], "unavailable", "{h}");
    assert_fallback_serves_and_refuses(&s, 81).await;
    chmod(&s.db_path(), 0o600);
    wait_health(&s, "normal", |h| h["operational_mode"] == "normal").await;
    assert_eq!(volume_from_database(&s).await, 81);
    set_volume(&s, 82).await;

    // At start-up.
    assert_eq!(s.terminate(), Some(0));
    chmod(&s.db_path(), 0o000);
    spawn_wrapped(&mut s, &AS_NOBODY).await;
    let h = assert_started_in_fallback(&s, "unavailable").await;
    assert!(
        h["err"].as_str().unwrap().contains("cannot be opened"),
        "{h}"
    );
    assert_fallback_serves_and_refuses(&s, 82).await;
    assert!(broken_files(&s.path("data")).is_empty());
    chmod(&s.db_path(), 0o600);
    wait_health(&s, "normal", |h| h["operational_mode"] == "normal").await;
    assert_eq!(volume_from_database(&s).await, 82);
    set_volume(&s, 83).await;
    assert!(broken_files(&s.path("data")).is_empty());
}

/// The automatic rebuild checks the file once more before moving it: a
/// healthy database of another epoch swapped in under the running service
/// (`ALLOW_AUTO_REBUILD=1`) makes the monitor report `missing` (another
/// file), but the rebuild is refused and the file stays where it is.
#[tokio::test]
async fn automatic_rebuild_never_moves_a_database_that_checks_fine() {
    let s = Server::start_with(fast_monitor(&[("ALLOW_AUTO_REBUILD", "1")])).await;
    set_volume(&s, 91).await;
    let mut other = Server::start_with(fast_monitor(&[])).await;
    set_volume(&other, 92).await;
    assert_eq!(other.terminate(), Some(0));
    // Swapped by rename, as a copy tool would: a new inode at the path.
    let staged = s.path("data/incoming.db");
    std::fs::copy(other.db_path(), &staged).unwrap();
    std::fs::rename(&staged, s.db_path()).unwrap();
    let swapped = identity(&s.db_path());

    let h = wait_health(&s, "rebuild refused", |h| {
        h["err"]
            .as_str()
            .is_some_and(|e| e.contains("automatic rebuild refused"))
    })
    .await;
    assert_eq!(h["operational_mode"], "read-only-fallback", "{h}");
    assert_fallback_serves_and_refuses(&s, 91).await;
    assert!(broken_files(&s.path("data")).is_empty(), "{}", s.log());
    assert_eq!(identity(&s.db_path()), swapped, "the file was not moved");
}
