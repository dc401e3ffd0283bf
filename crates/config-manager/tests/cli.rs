//! The command line, as an operator runs it: `config get/set/export/import`
//! against a running service and offline against its database file,
//! `verify-lkg`, `verify-message`, `healthcheck` and `--help`.

// Helpers outside #[test] functions panic on failure too: that is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Server, READ_TOKEN, WRITE_TOKEN};
use config_manager_core::crypto::mac::{MacKey, MacKeyRing};
use config_manager_core::crypto::signing::SigningKey;
use config_manager_core::crypto::KeyId;
use config_manager_core::domain::{Epoch, ServiceName, Version};
use config_manager_core::envelope::Envelope;
use config_manager_core::lkg::{LkgCache, LkgContents, LkgService};
use config_manager_service::settings::{table, EnvSource};
use serde_json::{json, Value};

/// A CLI process with a clean environment.
fn cli() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_config-manager"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    cmd
}

/// The CLI against a running server `s`, with `token`.
fn remote(s: &Server, token: Option<&str>) -> Command {
    let mut cmd = cli();
    cmd.current_dir(s.dir.path())
        .env("CONFIG_MANAGER_URL", format!("http://127.0.0.1:{}", s.port));
    if let Some(t) = token {
        cmd.env("CONFIG_API_TOKEN", t);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run config-manager")
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn config_commands_against_a_running_server() {
    let s = Server::start().await;
    let out = run(remote(&s, Some(READ_TOKEN)).args(["config", "get", "tts-worker"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let got = stdout_json(&out);
    assert_eq!(got["service"], "tts-worker");
    assert_eq!(got["version"], 1);
    let out =
        run(remote(&s, Some(READ_TOKEN)).args(["config", "get", "tts-worker", "volume_percent"]));
    assert!(out.status.success());
    assert_eq!(stdout_json(&out), got["config"]["volume_percent"]);

    // set: a merge write with the version read just before.
    let out = run(remote(&s, Some(WRITE_TOKEN)).args([
        "config",
        "set",
        "tts-worker",
        "volume_percent=33",
        "--reason",
        "from the cli",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["version"], 2);
    let (status, body) = s.get("/services/tts-worker", Some(READ_TOKEN)).await;
    assert_eq!(
        body["config"]["volume_percent"],
        33,
        "{status} {body}\n{}",
        s.log()
    );
    let (_, h) = s
        .get(
            "/history?service=tts-worker&key=volume_percent",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(h["entries"][0]["change_reason"], "from the cli");
    assert_eq!(h["entries"][0]["changed_by"], "writer");

    // Refusals are exit 1 with the server's reason; field errors are listed.
    let out = run(remote(&s, Some(READ_TOKEN)).args([
        "config",
        "set",
        "tts-worker",
        "volume_percent=34",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    let out = run(remote(&s, Some(WRITE_TOKEN)).args([
        "config",
        "set",
        "tts-worker",
        "volume_percent=999",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/volume_percent"), "{}", stderr(&out));
    let out = run(remote(&s, Some(WRITE_TOKEN)).args([
        "config",
        "set",
        "tts-worker",
        "volume_percent=35",
        "--expect-version",
        "1",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("409"), "{}", stderr(&out));
    // No token: a usage error that says what to do.
    let out = run(remote(&s, None).args(["config", "get", "tts-worker"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("CONFIG_API_TOKEN"));

    // export → file → import: nothing changes; with secrets the file is 0600.
    let plain = s.path("export.json");
    let out = run(remote(&s, Some(READ_TOKEN))
        .args(["config", "export", "-o"])
        .arg(&plain));
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&std::fs::read(&plain).unwrap()).unwrap();
    assert_eq!(
        doc["services"]["tts-worker"]["config"]["volume_percent"],
        33
    );
    let secret = s.path("secret-export.json");
    let out = run(remote(&s, Some(WRITE_TOKEN))
        .args([
            "config",
            "export",
            "--include-secrets",
            "--include-profiles",
            "-o",
        ])
        .arg(&secret));
    assert!(out.status.success(), "{}", stderr(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = run(remote(&s, Some(WRITE_TOKEN))
        .args(["config", "export", "--include-secrets", "-o"])
        .arg(&secret));
    assert_eq!(
        out.status.code(),
        Some(1),
        "never overwrites a secret export"
    );
    let out = run(remote(&s, Some(WRITE_TOKEN))
        .args(["config", "import"])
        .arg(&plain));
    assert!(out.status.success(), "{}", stderr(&out));
    let result = stdout_json(&out);
    assert_eq!(result["services_updated"], json!([]));
    assert_eq!(result["services_unchanged"].as_array().unwrap().len(), 6);

    // Import from standard input, changed: a new version of type "import".
    let mut changed = doc.clone();
    changed["services"]["tts-worker"]["config"]["volume_percent"] = json!(12);
    let mut child = remote(&s, Some(WRITE_TOKEN))
        .args(["config", "import", "-", "--reason", "restore from git"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(changed.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout_json(&out)["services_updated"],
        json!([{"service": "tts-worker", "version": 3}])
    );
    let (_, h) = s
        .get(
            "/history?service=tts-worker&key=volume_percent",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(h["entries"][0]["change_type"], "import");
    assert_eq!(h["entries"][0]["change_reason"], "restore from git");
}

#[tokio::test]
async fn offline_commands_refuse_while_served_and_work_when_stopped() {
    let mut s = Server::start().await;
    // The harness's command carries the service's environment (paths, keys in .env).
    let offline = |s: &Server| {
        let mut cmd = s.command();
        cmd.stdin(Stdio::null()).arg("config").arg("--offline");
        cmd
    };
    let out = run(offline(&s).args(["get", "tts-worker"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    assert!(
        !s.log().contains("panicked"),
        "the probe must not disturb the service"
    );
    let (status, _) = s.get("/services/tts-worker", Some(READ_TOKEN)).await;
    assert_eq!(status, 200);

    assert_eq!(s.terminate(), Some(0));
    let out = run(offline(&s).args(["get", "tts-worker"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["version"], 1);
    let out = run(offline(&s).args([
        "set",
        "tts-worker",
        "volume_percent=44",
        "--reason",
        "bench",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["version"], 2);
    let out = run(offline(&s).args(["set", "tts-worker", "volume_percent=500"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/volume_percent"), "{}", stderr(&out));
    let out = run(offline(&s).args(["export", "--include-secrets"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut doc = stdout_json(&out);
    assert_eq!(
        doc["services"]["tts-worker"]["config"]["volume_percent"],
        44
    );
    doc["services"]["router"]["config"]["router_stream_max_chars"] = json!(222);
    let file = s.path("doc.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = run(offline(&s).args(["import"]).arg(&file).arg("--dry-run"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["dry_run"], true);
    let out = run(offline(&s).args(["import"]).arg(&file));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout_json(&out)["services_updated"],
        json!([{"service": "router", "version": 2}])
    );
    // The remote-only flags do not mix with --offline.
    let out = run(offline(&s).args(["--url", "http://127.0.0.1:1", "get", "tts-worker"]));
    assert_eq!(out.status.code(), Some(2));

    // The service sees every offline change, audited as cli-offline.
    s.spawn().await;
    let (_, tts) = s.get("/services/tts-worker", Some(READ_TOKEN)).await;
    assert_eq!(tts["config"]["volume_percent"], 44);
    let (_, router) = s.get("/services/router", Some(READ_TOKEN)).await;
    assert_eq!(router["config"]["router_stream_max_chars"], 222);
    let (_, audit) = s.get("/audit?actor=cli-offline", Some(WRITE_TOKEN)).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"config.update"), "{audit}");
    assert!(actions.contains(&"config.import"), "{audit}");
    assert!(actions.contains(&"config.export"), "{audit}");
}

#[tokio::test]
async fn offline_without_a_database_or_keys_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(cli()
        .current_dir(dir.path())
        .args(["config", "--offline", "get", "tts-worker"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not set"), "{}", stderr(&out));
}

/// The service's keys from its `.env` file.
fn env_of(s: &Server) -> EnvSource {
    EnvSource::from_pairs(
        dotenvy::from_path_iter(s.path(".env"))
            .unwrap()
            .map(|r| r.unwrap()),
    )
}

fn verify(s: &Server, args: &[&str], file: &Path) -> Output {
    run(cli()
        .current_dir(s.dir.path())
        .arg("--env-file")
        .arg(s.path(".env"))
        .args(args)
        .arg(file))
}

#[tokio::test]
async fn verify_lkg_and_verify_message() {
    let s = Server::start().await;
    let env = env_of(&s);

    // An LKG cache sealed with the service's HMAC key verifies; a changed
    // value does not.
    let key = MacKey::from_base64(env.get(table::LKG_HMAC_KEY_BASE64).unwrap()).unwrap();
    let ring = MacKeyRing::new(KeyId::parse("lkg-1").unwrap(), key);
    let mut contents = LkgContents::new(Epoch::generate(), "schema-hash");
    let mut config = serde_json::Map::new();
    config.insert("volume_percent".into(), json!(70));
    contents.services.insert(
        ServiceName::parse("tts-worker").unwrap(),
        LkgService {
            version: Version::new(4).unwrap(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            config,
        },
    );
    let lkg = s.path("lkg-copy.json");
    LkgCache::seal(contents, &ring)
        .unwrap()
        .write_atomic(&lkg)
        .unwrap();
    let out = verify(&s, &["verify-lkg"], &lkg);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout_json(&out);
    assert_eq!(report["valid"], true);
    assert_eq!(report["services"]["tts-worker"], 4);
    let tampered = std::fs::read_to_string(&lkg)
        .unwrap()
        .replace("\"volume_percent\": 70", "\"volume_percent\": 71");
    std::fs::write(&lkg, tampered).unwrap();
    let out = verify(&s, &["verify-lkg"], &lkg);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("INVALID"), "{}", stderr(&out));
    // Without the key nothing can be checked: a usage error.
    let out = run(cli()
        .current_dir(s.dir.path())
        .args(["--env-file", "/nonexistent/.env", "verify-lkg"])
        .arg(&lkg));
    assert_eq!(out.status.code(), Some(2));

    // A message signed with the service's key verifies, from a file or stdin.
    let signing =
        SigningKey::from_pkcs8_pem(env.get(table::CONFIG_SIGNATURE_PRIVATE_KEY).unwrap()).unwrap();
    let mut config = serde_json::Map::new();
    config.insert("volume_percent".into(), json!(70));
    let envelope = Envelope::sign(
        &ServiceName::parse("tts-worker").unwrap(),
        Version::new(4).unwrap(),
        &Epoch::generate(),
        config,
        &signing,
    )
    .unwrap();
    let msg = s.path("message.json");
    std::fs::write(&msg, envelope.to_json_bytes().unwrap()).unwrap();
    let out = verify(&s, &["verify-message"], &msg);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["version"], 4);
    let pem = s.path("public.pem");
    std::fs::write(&pem, signing.verifying_key().to_spki_pem().unwrap()).unwrap();
    let out = run(cli()
        .current_dir(s.dir.path())
        .args(["verify-message", "--public-key"])
        .arg(&pem)
        .arg("-")
        .stdin(std::fs::File::open(&msg).unwrap()));
    assert!(out.status.success(), "{}", stderr(&out));
    // Changed config → checksum mismatch; another key → unknown key.
    let text = std::fs::read_to_string(&msg)
        .unwrap()
        .replace("\"volume_percent\":70", "\"volume_percent\":71");
    std::fs::write(&msg, &text).unwrap();
    let out = verify(&s, &["verify-message"], &msg);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("checksum"), "{}", stderr(&out));
    let other = s.path("other.pem");
    std::fs::write(
        &other,
        SigningKey::generate()
            .verifying_key()
            .to_spki_pem()
            .unwrap(),
    )
    .unwrap();
    let out = run(cli()
        .args(["verify-message", "--public-key"])
        .arg(&other)
        .arg(&msg));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not trusted"), "{}", stderr(&out));
}

#[tokio::test]
async fn healthcheck_exit_codes() {
    let mut s = Server::start().await;
    let url = format!("http://127.0.0.1:{}", s.port);
    let out = run(cli().args(["healthcheck", "--url", &url]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.terminate(), Some(0));
    let out = run(cli().args(["healthcheck", "--url", &url]));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn help_is_clear_for_every_subcommand() {
    let cases: [(&[&str], &[&str]); 9] = [
        (
            &["--help"],
            &[
                "serve",
                "config",
                "verify-lkg",
                "verify-message",
                "healthcheck",
            ],
        ),
        (&["serve", "--help"], &["SIGTERM"]),
        (&["keys", "generate", "--help"], &["nothing is written"]),
        (
            &["config", "--help"],
            &["--offline", "--url", "--token", "CONFIG_API_TOKEN"],
        ),
        (&["config", "get", "--help"], &["secrets masked"]),
        (
            &["config", "set", "--help"],
            &["KEY=VALUE", "--expect-version"],
        ),
        (
            &["config", "export", "--help"],
            &["--include-secrets", "0600"],
        ),
        (
            &["config", "import", "--help"],
            &["all or nothing", "--dry-run"],
        ),
        (
            &["verify-message", "--help"],
            &["--public-key", "mosquitto_sub"],
        ),
    ];
    for (args, needles) in cases {
        let out = run(cli().args(args));
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        for n in needles {
            assert!(text.contains(n), "{args:?} --help lacks {n}:\n{text}");
        }
    }
    let out = run(cli().args(["verify-lkg", "--help"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("LKG_HMAC_KEY_BASE64"));
}
