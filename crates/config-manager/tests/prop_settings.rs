//! No panic from any input (issue 23): the manager's settings, from
//! arbitrary variables and from arbitrary or damaged `.env` files, give
//! settings or an error naming the variable, never a panic. Each `#[test]`
//! is also a `make fuzz` target of the same name (docs/testing.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use config_manager_service::first_run::dotenv_quote;
use config_manager_service::settings::{table, EnvSource, Settings};
use config_manager_testkit::proptest::prelude::*;
use config_manager_testkit::{bytes, check, json, text};

/// Values of the shapes the variables take (numbers, durations, flags,
/// URLs, token tables, keys, paths), near misses of each, and anything.
fn value() -> BoxedStrategy<String> {
    prop_oneof![
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "0", "1", "true", "yes", "no", "2", "-1", "18446744073709551616", "5s", "1h",
            "10m", "1d", "0s", "", " ", "json", "text", "s3", "local", "off",
            "mqtt://127.0.0.1:1883", "mqtts://u:p%zz@[::1]:99999", "mqtt://", "http://x",
            "AAAA", "a2V5", "not base64!", "crash-after-commit",
        ])
        .prop_map(str::to_owned),
        1 => ("[a-z]{1,6}", "[A-Za-z0-9_-]{0,30}", "(:config\\.(read|write|admin))?(:[a-z-]{0,8})?")
            .prop_map(|(n, t, r)| format!("{n}={t}{r}")),
        1 => "(mqtts?://)?([a-z%0-9]{0,4}(:[a-z%0-9]{0,4})?@)?(\\[[0-9a-f:]{0,8}\\]|[a-z0-9.]{0,10})(:[0-9]{0,6})?/?",
        3 => text::string(),
    ]
    .boxed()
}

/// Names from the settings table (deprecated names included), and others.
fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let names: Vec<&str> = table::names().collect();
    prop::collection::vec((json::name_from(&names), value()), 0..12)
}

#[test]
fn settings_from_variables() {
    let dir = tempfile::tempdir().unwrap();
    check("settings_from_variables", 256, pairs(), |pairs| {
        let env = EnvSource::from_pairs(pairs);
        let _ = Settings::from_env(&env, dir.path().join(".env"));
        Ok(())
    });
}

#[test]
fn dotenv_files() {
    let example =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.env.example")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let written = pairs().prop_map(|pairs| {
        let mut text = String::new();
        for (k, v) in pairs {
            text.push_str(&format!("{k}={v}\n"));
        }
        text.into_bytes()
    });
    let input = prop_oneof![bytes::any_bytes(256), bytes::damaged(example, 8), written,];
    check("dotenv_files", 192, input, |b| {
        std::fs::write(&path, &b).unwrap();
        if let Ok(env) = EnvSource::load(&path) {
            let _ = Settings::from_env(&env, path.clone());
        }
        Ok(())
    });
}

/// What first run and key rotation write, the settings read back exactly.
#[test]
fn dotenv_quoting_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    check("dotenv_quoting_round_trips", 256, text::string(), |v| {
        // A variable of the table the test process does not set.
        std::fs::write(&path, format!("CONFIG_SCHEMA_DIR={}\n", dotenv_quote(&v))).unwrap();
        let env =
            EnvSource::load_file_only(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let read = env.get(table::CONFIG_SCHEMA_DIR);
        // Empty (and blank) values count as unset.
        if !v.trim().is_empty() {
            prop_assert_eq!(read, Some(v.as_str()));
        }
        Ok(())
    });
}
