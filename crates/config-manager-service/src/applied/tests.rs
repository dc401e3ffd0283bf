//! Tests of the applied-state board.

#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

const EPOCH: &str = "550e8400-e29b-41d4-a716-446655440000";

fn report(instance: &str, status: &str, version: Option<u64>) -> Vec<u8> {
    let mut v = json!({
        "service": "tts-worker",
        "instance_id": instance,
        "config_epoch": version.map(|_| EPOCH),
        "version": version,
        "status": status,
        "reason": null,
        "rejected_version": null,
        "applied_at": version.map(|_| "2026-01-15T09:30:00.120Z"),
        "client": {"name": "config-manager-client", "version": "0.1.0"},
    });
    if status == "rejected" {
        v["reason"] = json!("bad_signature");
        v["rejected_version"] = json!(9);
    }
    v.to_string().into_bytes()
}

fn topic(instance: &str) -> String {
    format!("system/config/tts-worker/applied/{instance}")
}

fn desired(version: i64) -> Desired {
    Desired {
        config_epoch: EPOCH.into(),
        version: config_manager_core::domain::Version::new(version).unwrap(),
        updated_at: Some(OffsetDateTime::now_utc() - time::Duration::seconds(5)),
    }
}

fn svc() -> ServiceName {
    ServiceName::parse("tts-worker").unwrap()
}

#[test]
fn states_against_the_desired_version() {
    let board = AppliedBoard::new(AppliedLimits::default());
    for (id, status, v) in [
        ("a", "applied", Some(3)),
        ("b", "applied", Some(2)),
        ("c", "rejected", Some(3)),
        ("d", "offline", Some(3)),
        ("e", "applied", Some(4)),
    ] {
        assert_eq!(
            board.ingest(&topic(id), &report(id, status, v)),
            Ingested::Stored
        );
    }
    let views = board.instances(&svc(), Some(&desired(3)));
    let states: Vec<_> = views.iter().map(|v| (v.state, v.drift)).collect();
    assert_eq!(
        states,
        [
            (SyncState::InSync, None),
            (SyncState::Pending, Some(Drift::Behind)),
            (SyncState::Rejected, None),
            (SyncState::Offline, None),
            (SyncState::Pending, Some(Drift::Ahead)),
        ]
    );
    assert!(views[1].pending_seconds.unwrap() >= 5);
    assert_eq!(views[4].pending_seconds, None);
    let s = board.summary(&svc(), Some(&desired(3)));
    assert_eq!(
        (
            s.state,
            s.in_sync,
            s.pending,
            s.rejected,
            s.offline,
            s.reachable
        ),
        ("rejected", 1, 2, 1, 1, 4)
    );
    let other_epoch = Desired {
        config_epoch: "00000000-0000-4000-8000-000000000000".into(),
        ..desired(3)
    };
    assert_eq!(
        board.instances(&svc(), Some(&other_epoch))[0].drift,
        Some(Drift::OtherEpoch)
    );
    assert_eq!(board.summary(&svc(), None).pending, 3);
    let none = ServiceName::parse("stt-worker").unwrap();
    assert_eq!(board.summary(&none, None).state, "no_reports");
}

#[test]
fn bad_input_is_dropped_and_counted() {
    let board = AppliedBoard::new(AppliedLimits::default());
    board.set_known([svc()]);
    let drop = |t: &str, p: &[u8]| match board.ingest(t, p) {
        Ingested::Dropped(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        drop("system/config/tts-worker/applied", b"{}"),
        DropReason::BadTopic
    );
    assert_eq!(drop(&topic("a"), &vec![b' '; 20_000]), DropReason::TooLarge);
    assert_eq!(drop(&topic("a"), b"{nope"), DropReason::Invalid);
    assert_eq!(
        drop(&topic("b"), &report("a", "applied", Some(1))),
        DropReason::TopicMismatch
    );
    let other = String::from_utf8(report("a", "applied", Some(1)))
        .unwrap()
        .replace("tts-worker", "ghost");
    assert_eq!(
        drop("system/config/ghost/applied/a", other.as_bytes()),
        DropReason::UnknownService
    );
    assert!(board.is_empty());
    let counted: u64 = board.dropped().iter().map(|(_, n)| n).sum();
    assert_eq!(counted, 5);
    // A service that just got a schema is known at once.
    board.add_known(&[ServiceName::parse("ghost").unwrap()]);
    assert_eq!(
        board.ingest("system/config/ghost/applied/a", other.as_bytes()),
        Ingested::Stored
    );
}

#[test]
fn caps_bound_memory_and_empty_payload_clears() {
    let board = AppliedBoard::new(AppliedLimits {
        max_per_service: 3,
        max_total: 1000,
    });
    for i in 0..10 {
        let id = format!("i{i}");
        board.ingest(&topic(&id), &report(&id, "applied", Some(1)));
    }
    assert_eq!(board.len(), 3);
    assert_eq!(board.dropped()[DropReason::InstanceLimit as usize].1, 7);
    // An existing instance still updates at the cap.
    assert_eq!(
        board.ingest(&topic("i0"), &report("i0", "applied", Some(2))),
        Ingested::Stored
    );
    assert_eq!(board.ingest(&topic("i0"), b""), Ingested::Cleared);
    assert_eq!(board.len(), 2);
    let changes = board.take_dirty();
    assert_eq!(changes.len(), 3);
    assert!(changes
        .iter()
        .any(|c| matches!(c, AppliedChange::Remove { instance_id, .. } if instance_id == "i0")));
    assert!(board.take_dirty().is_empty());

    let tight = AppliedBoard::new(AppliedLimits {
        max_per_service: 10,
        max_total: 1,
    });
    tight.ingest(&topic("a"), &report("a", "applied", Some(1)));
    assert_eq!(
        tight.ingest(&topic("b"), &report("b", "applied", Some(1))),
        Ingested::Dropped(DropReason::TotalLimit)
    );
}

#[test]
fn a_full_service_makes_room_by_evicting_the_longest_offline_instance() {
    let board = AppliedBoard::new(AppliedLimits {
        max_per_service: 3,
        max_total: 1000,
    });
    let t0 = OffsetDateTime::now_utc();
    let at = |secs: i64| t0 + time::Duration::seconds(secs);
    let put = |id: &str, status: &str, secs: i64| {
        board.ingest_at(&topic(id), &report(id, status, Some(1)), at(secs))
    };
    assert_eq!(put("old-off", "offline", 0), Ingested::Stored);
    assert_eq!(put("live", "applied", 1), Ingested::Stored);
    assert_eq!(put("new-off", "offline", 2), Ingested::Stored);
    board.take_dirty();
    board.take_clear_requests();

    // Full: the instance offline the longest goes, the newer one stays.
    assert_eq!(put("fresh", "applied", 3), Ingested::Evicted);
    let ids = |b: &AppliedBoard| -> Vec<String> {
        b.instances(&svc(), None)
            .iter()
            .map(|v| v.instance_id.to_string())
            .collect()
    };
    assert_eq!(ids(&board), ["fresh", "live", "new-off"]);
    assert_eq!(board.len(), 3);
    // Its row is removed at the next persist and its retained report cleared.
    let changes = board.take_dirty();
    assert!(changes.iter().any(
        |c| matches!(c, AppliedChange::Remove { instance_id, .. } if instance_id == "old-off")
    ));
    let cleared: Vec<String> = board
        .take_clear_requests()
        .iter()
        .map(|(_, i)| i.to_string())
        .collect();
    assert_eq!(cleared, ["old-off"]);

    assert_eq!(put("fresh2", "applied", 4), Ingested::Evicted);
    assert_eq!(ids(&board), ["fresh", "fresh2", "live"]);
    // No instance offline any more: a new one is dropped, as before.
    assert_eq!(
        put("fresh3", "applied", 5),
        Ingested::Dropped(DropReason::InstanceLimit)
    );
    assert_eq!(ids(&board), ["fresh", "fresh2", "live"]);
}

#[test]
fn a_full_board_evicts_the_longest_offline_instance_of_any_service() {
    let board = AppliedBoard::new(AppliedLimits {
        max_per_service: 10,
        max_total: 2,
    });
    let t0 = OffsetDateTime::now_utc();
    let other = String::from_utf8(report("x", "offline", Some(1)))
        .unwrap()
        .replace("tts-worker", "stt-worker");
    assert_eq!(
        board.ingest_at("system/config/stt-worker/applied/x", other.as_bytes(), t0),
        Ingested::Stored
    );
    assert_eq!(
        board.ingest_at(
            &topic("a"),
            &report("a", "applied", Some(1)),
            t0 + time::Duration::seconds(1)
        ),
        Ingested::Stored
    );
    assert_eq!(
        board.ingest(&topic("b"), &report("b", "applied", Some(1))),
        Ingested::Evicted
    );
    let stt = ServiceName::parse("stt-worker").unwrap();
    assert!(board.instances(&stt, None).is_empty());
    assert_eq!(board.instances(&svc(), None).len(), 2);
    assert_eq!(
        board.ingest(&topic("c"), &report("c", "applied", Some(1))),
        Ingested::Dropped(DropReason::TotalLimit)
    );
    assert_eq!(board.len(), 2);
}

#[test]
fn persisted_rows_load_back() {
    let board = AppliedBoard::new(AppliedLimits::default());
    board.ingest(&topic("a"), &report("a", "rejected", Some(3)));
    let changes = board.take_dirty();
    let rows: Vec<StoredApplied> = changes
        .into_iter()
        .filter_map(|c| match c {
            AppliedChange::Upsert(s) => Some(s),
            AppliedChange::Remove { .. } => None,
        })
        .chain([StoredApplied {
            service: svc(),
            instance_id: "broken".into(),
            report: "{}".into(),
            received_at: "x".into(),
        }])
        .collect();
    let again = AppliedBoard::new(AppliedLimits::default());
    assert_eq!(again.load(rows), 1);
    let v = &again.instances(&svc(), Some(&desired(3)))[0];
    assert_eq!(
        (v.state, v.reason.as_deref()),
        (SyncState::Rejected, Some("bad_signature"))
    );
    assert!(again.take_dirty().is_empty());
}
