//! Supervised background tasks (issue 23): a task that panics or returns
//! while the service runs is restarted, counted and named in health, on a
//! real state opened in a temp directory (`serve::Service::open`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use config_manager::serve::Service;
use config_manager_service::health;
use config_manager_service::settings::{EnvSource, Settings};
use config_manager_service::supervise::{self, Lifetime};
use tokio_util::sync::CancellationToken;

async fn open() -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let mut env = EnvSource::from_pairs([
        ("CONFIG_DB_PATH".to_owned(), p("data/config.db")),
        ("CONFIG_LKG_CACHE_PATH".to_owned(), p("data/lkg.json")),
    ]);
    config_manager_service::first_run::generate_missing(&mut env).unwrap();
    let settings = Settings::from_env(&env, dir.path().join(".env")).unwrap();
    let service = Service::open(Arc::new(settings)).await.unwrap();
    (dir, service)
}

#[tokio::test]
async fn a_task_that_panics_is_restarted_counted_and_named_in_health() {
    let (_dir, service) = open().await;
    let state = service.state().clone();
    assert!(health::snapshot(&state).ok);
    let runs = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let task = {
        let (runs, stop) = (runs.clone(), shutdown.clone());
        supervise::spawn(
            "test task",
            Lifetime::UntilShutdown,
            &state,
            shutdown.clone(),
            move || {
                let (runs, stop) = (runs.clone(), stop.clone());
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("the first run dies");
                    }
                    stop.cancelled().await;
                }
            },
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while runs.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "never restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let h = health::snapshot(&state);
    assert!(!h.ok, "{h:?}");
    assert_eq!(h.degraded_tasks, ["test task"]);
    let body = serde_json::to_value(&h).unwrap();
    assert_eq!(body["degraded_tasks"][0], "test task");
    let metrics = state.metrics().encode().unwrap();
    assert!(
        metrics.contains("config_manager_task_restarts_total{task=\"test task\"} 1"),
        "{metrics}"
    );
    // A clean shutdown ends it without another restart.
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_healthy_service_names_no_degraded_task() {
    let (_dir, service) = open().await;
    let body = serde_json::to_value(health::snapshot(service.state())).unwrap();
    assert!(body.get("degraded_tasks").is_none(), "{body}");
}
