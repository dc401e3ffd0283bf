//! Process lifecycle: first run, restart, SIGKILL durability, concurrency,
//! bad keys and an unwritable `.env`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{Server, READ_TOKEN};
use serde_json::json;

#[tokio::test]
async fn first_run_creates_env_database_and_defaults_then_reuses_them() {
    let mut s = Server::start_with(vec![]).await;
    let env_path = s.path(".env");
    let env_text = common::read_env_file(&env_path);
    for var in [
        "CONFIG_MASTER_KEY_BASE64",
        "LKG_HMAC_KEY_BASE64",
        "CONFIG_SIGNATURE_PRIVATE_KEY",
        "CONFIG_SIGNATURE_PUBLIC_KEY",
        "REBUILD_TOKEN",
    ] {
        assert!(env_text.contains(&format!("{var}=")), "{var} not generated");
    }
    // Tokens were given in the environment, so none is generated.
    assert!(!env_text.contains("CONFIG_API_TOKENS="));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(s.db_path().exists());
    let (_, health) = s.get("/health", None).await;
    let epoch = health["config_epoch"].as_str().unwrap().to_owned();
    assert_eq!(s.version("stt-worker").await, 1);
    // The log names what was generated but never a key.
    let log = s.log();
    assert!(log.contains("CONFIG_MASTER_KEY_BASE64"));
    for line in env_text.lines().filter(|l| l.contains("_BASE64=")) {
        let value = line.split_once('=').unwrap().1.trim_matches('"');
        assert!(!log.contains(value), "a key leaked into the log");
    }

    assert_eq!(s.terminate(), Some(0), "graceful shutdown exits 0");
    s.spawn().await;
    assert_eq!(
        common::read_env_file(&env_path),
        env_text,
        ".env untouched on restart"
    );
    let (_, health) = s.get("/health", None).await;
    assert_eq!(health["config_epoch"], epoch.as_str());
    assert_eq!(s.version("stt-worker").await, 1);
}

#[tokio::test]
async fn no_tokens_configured_generates_a_write_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_config-manager"))
        .current_dir(dir.path())
        .env_clear()
        .env("CONFIG_MANAGER_PORT", port.to_string())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let env_path = dir.path().join(".env");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..500 {
        if client
            .get(format!("http://127.0.0.1:{port}/api/config/health"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(up, "service did not start with embedded defaults");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CONFIG_API_TOKENS"), "{stderr}");
    let env_text = std::fs::read_to_string(&env_path).unwrap();
    let line = env_text
        .lines()
        .find(|l| l.starts_with("CONFIG_API_TOKENS="))
        .unwrap();
    let token = line
        .trim_start_matches("CONFIG_API_TOKENS=\"admin=")
        .trim_end_matches(":config.write\"");
    assert!(token.len() >= 32);
    assert!(!stderr.contains(token), "the token itself was printed");
    assert!(dir.path().join("data/config.db").exists());
}

#[tokio::test]
async fn acknowledged_write_survives_sigkill() {
    let mut s = Server::start().await;
    s.patch_ok("tts-worker", json!({"volume_percent": 33}), 1)
        .await;
    s.kill9();
    s.spawn().await;
    let (_, got) = s.get("/services/tts-worker", Some(READ_TOKEN)).await;
    assert_eq!(got["config"]["volume_percent"], 33);
    assert_eq!(got["version"], 2);
}

#[tokio::test]
async fn concurrent_writes_with_one_version_exactly_one_wins() {
    let s = Arc::new(Server::start().await);
    for round in 0..3 {
        let version = s.version("tts-worker").await;
        let mut tasks = Vec::new();
        for i in 0..10 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.patch_config(
                    "tts-worker",
                    &json!({"config": {"volume_percent": round * 10 + i}, "version": version}),
                )
                .await
                .0
            }));
        }
        let mut codes = Vec::new();
        for t in tasks {
            codes.push(t.await.unwrap());
        }
        codes.sort();
        assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
        assert_eq!(codes.iter().filter(|c| **c == 409).count(), 9, "{codes:?}");
    }
}

#[tokio::test]
async fn parallel_readers_and_writers_lose_nothing() {
    let s = Arc::new(Server::start().await);
    // Real changes on tts-worker from 4 concurrent writers.
    let mut writers = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..10 {
                loop {
                    let v = s.version("tts-worker").await;
                    let value = 1 + w * 20 + i;
                    let (status, body) = s
                        .patch_config(
                            "tts-worker",
                            &json!({"config": {"volume_percent": value}, "version": v}),
                        )
                        .await;
                    if status == 200 {
                        acknowledged.push(body["version"].as_i64().unwrap());
                        break;
                    }
                    assert_eq!(status, 409, "{body}");
                }
            }
            acknowledged
        }));
    }
    // Readers hammering meanwhile.
    let mut readers = Vec::new();
    for _ in 0..4 {
        let s = s.clone();
        readers.push(tokio::spawn(async move {
            for _ in 0..50 {
                let (status, _) = s.get("/services/tts-worker", Some(READ_TOKEN)).await;
                assert_eq!(status, 200);
            }
        }));
    }
    for r in readers {
        r.await.unwrap();
    }
    let mut versions = BTreeSet::new();
    for w in writers {
        for v in w.await.unwrap() {
            assert!(versions.insert(v), "version {v} acknowledged twice");
        }
    }
    assert_eq!(versions.len(), 40);
    // Every acknowledged write is in history, once.
    let (_, h) = s
        .get(
            "/history?service=tts-worker&key=volume_percent&limit=1000",
            Some(READ_TOKEN),
        )
        .await;
    let in_history: BTreeSet<i64> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    assert!(versions.is_subset(&in_history));
    assert!(!s.log().contains("database is locked"));
}

#[tokio::test]
async fn malformed_keys_are_a_clear_startup_error() {
    for (var, value) in [
        ("CONFIG_MASTER_KEY_BASE64", "not-base64!!"),
        ("CONFIG_MASTER_KEY_BASE64", "c2hvcnQ="),
        ("LKG_HMAC_KEY_BASE64", "%%%"),
        (
            "CONFIG_SIGNATURE_PRIVATE_KEY",
            "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----",
        ),
        ("CONFIG_API_TOKENS", "short:config.read"),
        ("CONFIG_MANAGER_PORT", "eighty"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_config-manager"))
            .current_dir(dir.path())
            .env_clear()
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var}: {stderr}");
        assert!(
            !stderr.contains(value) || value.len() < 8 || var == "CONFIG_MANAGER_PORT",
            "{var} value echoed"
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn unwritable_env_file_prints_keys_once_and_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    // A path whose parent is a regular file cannot be created, even by root.
    let blocker = ro.join("file");
    std::fs::write(&blocker, "x").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_config-manager"))
        .current_dir(dir.path())
        .env_clear()
        .env("CONFIG_ENV_FILE", blocker.join(".env"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write the generated keys"),
        "{stderr}"
    );
    assert!(stderr.contains("CONFIG_MASTER_KEY_BASE64="));
    assert!(
        !dir.path().join("data/config.db").exists(),
        "must not run without saved keys"
    );
}
