//! A service opened in-process in a temp directory (`serve::Service::open`,
//! the binary's start-up path) for tests that call the router with
//! `tower::ServiceExt::oneshot`: no process, port or broker. Included with
//! `#[path]` by tests/router.rs and tests/prop_http.rs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use config_manager::serve::Service;
use config_manager_service::settings::{EnvSource, Settings};

pub const WRITE: &str = "writer-token-0123456789";
pub const READ: &str = "reader-token-0123456789";
pub const TTS: &str = "tts-scoped-token-0123456789";
/// Scoped to tts-worker with the write role: passes every role check, so
/// only the scope rules can refuse it.
pub const TTS_WRITE: &str = "tts-scoped-writer-0123456789";

/// A service opened in a temp dir (kept alive by the returned guard).
pub async fn open() -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let mut env = EnvSource::from_pairs([
        ("CONFIG_DB_PATH".to_owned(), p("data/config.db")),
        ("CONFIG_LKG_CACHE_PATH".to_owned(), p("data/lkg.json")),
        (
            "CONFIG_API_TOKENS".to_owned(),
            format!("writer={WRITE}:config.write,reader={READ}:config.read,tts={TTS}:config.read:tts-worker,ttsw={TTS_WRITE}:config.write:tts-worker"),
        ),
    ]);
    config_manager_service::first_run::generate_missing(&mut env).unwrap();
    let settings = Settings::from_env(&env, dir.path().join(".env")).unwrap();
    let service = Service::open(Arc::new(settings)).await.unwrap();
    (dir, service)
}
