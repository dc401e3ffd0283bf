use super::table::{Source, SETTINGS};
use super::*;

/// A complete environment: first run's keys, MQTT and both backup kinds on,
/// and a key rotation in progress (so the previous keys and ids are read).
fn full_env() -> EnvSource {
    let mut env = EnvSource::of(&[
        (
            "CONFIG_API_TOKENS",
            "admin=0123456789abcdef0123:config.write",
        ),
        ("MQTT_URL", "mqtt://127.0.0.1:1"),
        ("LITESTREAM_BUCKET", "backups"),
        ("LITESTREAM_ENDPOINT", "http://127.0.0.1:1"),
        ("BACKUP_SNAPSHOT_DIR", "snapshots"),
    ]);
    crate::first_run::generate_missing(&mut env).unwrap();
    for (key, previous, id) in [
        (
            CONFIG_MASTER_KEY_BASE64,
            CONFIG_MASTER_KEY_PREVIOUS_BASE64,
            CONFIG_MASTER_KEY_PREVIOUS_ID,
        ),
        (
            LKG_HMAC_KEY_BASE64,
            LKG_HMAC_KEY_PREVIOUS_BASE64,
            LKG_HMAC_KEY_PREVIOUS_ID,
        ),
    ] {
        let current = env.get(key).unwrap().to_owned();
        env.set(previous, current);
        env.set(id, "old-1".into());
    }
    env
}

/// Every setting read from the environment and the `.env` file has a
/// reader among the parsers (with everything switched on), so the table —
/// and with it `.env.example` and the docs — cannot keep a variable nothing
/// reads. (The other way round holds by construction: a variable can only
/// be looked up through its table entry.) The process-only settings are
/// read by the binary: clap (`CONFIG_ENV_FILE`, `CONFIG_MANAGER_URL`,
/// `CONFIG_API_TOKEN`) and the log filter (`RUST_LOG`).
#[test]
fn every_setting_has_a_reader() {
    let env = full_env();
    let settings = Settings::from_env(&env, PathBuf::from(".env")).unwrap();
    assert!(settings.mqtt.is_some() && settings.backup.snapshots.is_some());
    assert!(settings.deprecations.is_empty());
    let read = env.looked_up();
    for s in SETTINGS {
        match s.source {
            Source::EnvAndFile => assert!(read.contains(s.name), "{s} is listed but not read"),
            Source::Process => assert!(!read.contains(s.name), "{s} is read from the file too"),
        }
        if let Some(old) = s.alias {
            assert!(
                read.contains(old),
                "{s}'s deprecated name {old} is not read"
            );
        }
    }
}

#[test]
fn errors_name_the_variable_not_the_value() {
    let env = EnvSource::of(&[("CONFIG_MASTER_KEY_BASE64", "sekrit-but-bad")]);
    let err = Settings::from_env(&env, PathBuf::from(".env")).unwrap_err();
    assert_eq!(err.var, "CONFIG_MASTER_KEY_BASE64");
    assert!(!err.to_string().contains("sekrit"));
}

/// Bad forms of the plain settings: each error names the variable and
/// never echoes the value.
#[test]
fn bad_values_name_the_variable_not_the_value() {
    for (var, value) in [
        ("CONFIG_MANAGER_HOST", "localhost-ish"),
        ("CONFIG_MANAGER_PORT", "eighty"),
        ("CONFIG_MANAGER_PORT", "65536"),
        ("CONFIG_MAX_BODY_BYTES", "256KiB"),
        ("CONFIG_MONITOR_INTERVAL_MS", "1s"),
        ("CONFIG_MONITOR_INTERVAL_MS", "49"),
        ("ALLOW_AUTO_REBUILD", "maybe"),
        ("LOG_FORMAT", "yaml-ish"),
        ("CONFIG_TEST_FAILPOINT", "before-commit"),
        ("CONFIG_SCHEMA_CACHE_SIZE", "0"),
        ("CONFIG_APPLIED_MAX_INSTANCES", "1000001"),
    ] {
        let mut e = full_env();
        e.set(table::find(var).unwrap(), value.to_owned());
        let err = Settings::from_env(&e, PathBuf::from(".env")).unwrap_err();
        assert_eq!(err.var, var, "{var}={value}: {err}");
        if value.len() > 2 {
            assert!(
                !err.to_string().contains(value),
                "{var}={value} echoed: {err}"
            );
        }
    }
}

#[test]
fn defaults_are_the_tables() {
    let s = Settings::from_env(&full_env(), PathBuf::from(".env")).unwrap();
    assert_eq!(s.host, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(s.port, 8081);
    assert_eq!(s.db_path, PathBuf::from("data/config.db"));
    assert_eq!(s.lkg_path, PathBuf::from("data/config.lkg.json"));
    assert_eq!(s.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(s.max_body_bytes, 256 * 1024);
    assert_eq!(s.monitor_interval, Duration::from_secs(1));
    assert_eq!(s.rotation_batch, 100);
    assert_eq!(s.log_format, LogFormat::Text);
    assert!(!s.allow_auto_rebuild && !s.allow_unknown_services);
    assert_eq!(s.failpoint, None);
    assert_eq!(
        s.schema_cache_size,
        config_manager_core::schema::cache::DEFAULT_CAPACITY
    );
}
