//! The journal's threat cases (module docs of `crate::lkg`): each change an
//! attacker or a crash can make to the files, and what a reader does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::journal::forge_line;
use super::*;
use crate::crypto::mac::MacKey;

const EPOCH: &str = "550e8400-e29b-41d4-a716-446655440000";

fn ring() -> MacKeyRing {
    MacKeyRing::new(KeyId::parse("lkg-1").unwrap(), MacKey::generate())
}

fn name(s: &str) -> ServiceName {
    ServiceName::parse(s).unwrap()
}

fn entry(version: i64, volume: i64) -> LkgService {
    LkgService {
        version: Version::new(version).unwrap(),
        updated_at: "2026-01-15T09:30:00.000Z".into(),
        config: json!({ "volume_percent": volume })
            .as_object()
            .unwrap()
            .clone(),
    }
}

fn contents(epoch: &str) -> LkgContents {
    let mut c = LkgContents::new(Epoch::parse(epoch).unwrap(), "hash");
    c.services.insert(name("tts-worker"), entry(1, 50));
    c.services.insert(name("router"), entry(1, 0));
    c
}

/// A snapshot with `tts-worker` at version 1, then versions 2, 3, 4 of
/// `tts-worker` (volumes 20, 30, 40) and one `router` change, journaled.
fn journaled(dir: &Path, keys: &MacKeyRing) -> (PathBuf, LkgAppender) {
    let path = dir.join("lkg.json");
    let mut w = LkgCache::seal(contents(EPOCH), keys)
        .unwrap()
        .compact_to(&path, keys)
        .unwrap();
    for (v, vol) in [(2, 20), (3, 30)] {
        w.append(vec![(name("tts-worker"), Some(entry(v, vol)))])
            .unwrap();
    }
    w.append(vec![
        (name("router"), Some(entry(2, 7))),
        (name("tts-worker"), Some(entry(4, 40))),
    ])
    .unwrap();
    (path, w)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(journal_path(path))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(journal_path(path), text).unwrap();
}

fn volume(cache: &LkgCache, service: &str) -> i64 {
    cache.contents().services[&name(service)].config["volume_percent"]
        .as_i64()
        .unwrap()
}

fn fault(result: Result<LkgCache, LkgError>) -> JournalFault {
    match result {
        Err(LkgError::Journal { reason, .. }) => reason,
        other => panic!("expected a journal fault, got {other:?}"),
    }
}

#[test]
fn appended_changes_are_read_back_over_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, w) = journaled(dir.path(), &keys);
    assert_eq!(w.records(), 4);
    let cache = LkgCache::read_verified(&path, &keys).unwrap();
    assert_eq!(cache.journal().records, 4);
    assert_eq!(volume(&cache, "tts-worker"), 40);
    assert_eq!(
        cache.contents().services[&name("tts-worker")].version.get(),
        4
    );
    assert_eq!(volume(&cache, "router"), 7);
    // The snapshot file alone (what a format-1 reader sees) is still valid.
    let snapshot = LkgCache::from_slice_verified(&fs::read(&path).unwrap(), &keys).unwrap();
    assert_eq!(volume(&snapshot, "tts-worker"), 50);
    // A journaled cache has no single seal to write.
    assert!(matches!(cache.to_json_bytes(), Err(LkgError::NotSealed)));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(journal_path(&path))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_removal_record_removes_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, mut w) = journaled(dir.path(), &keys);
    w.append(vec![(name("router"), None)]).unwrap();
    let cache = LkgCache::read_verified(&path, &keys).unwrap();
    assert!(!cache.contents().services.contains_key(&name("router")));
}

#[test]
fn a_tampered_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, _) = journaled(dir.path(), &keys);
    let mut l = lines(&path);
    let changed = l[1].replacen("\"volume_percent\":30", "\"volume_percent\":31", 1);
    assert_ne!(changed, l[1]);
    l[1] = changed;
    write_lines(&path, &l);
    assert_eq!(
        fault(LkgCache::read_verified(&path, &keys)),
        JournalFault::BadMac
    );
}

#[test]
fn a_swapped_service_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, _) = journaled(dir.path(), &keys);
    let mut l = lines(&path);
    let changed = l[0].replacen("\"service\":\"tts-worker\"", "\"service\":\"router\"", 1);
    assert_ne!(changed, l[0]);
    l[0] = changed;
    write_lines(&path, &l);
    assert_eq!(
        fault(LkgCache::read_verified(&path, &keys)),
        JournalFault::BadMac
    );
}

#[test]
fn a_deleted_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, _) = journaled(dir.path(), &keys);
    let mut l = lines(&path);
    l.remove(1);
    write_lines(&path, &l);
    assert!(matches!(
        fault(LkgCache::read_verified(&path, &keys)),
        JournalFault::OutOfSequence {
            expected: 2,
            found: 3
        }
    ));
}

#[test]
fn reordered_or_repeated_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, _) = journaled(dir.path(), &keys);
    let original = lines(&path);
    let mut swapped = original.clone();
    swapped.swap(1, 2);
    write_lines(&path, &swapped);
    assert!(matches!(
        fault(LkgCache::read_verified(&path, &keys)),
        JournalFault::OutOfSequence { .. }
    ));
    // Rolling one service back by repeating its older record at the end.
    let mut repeated = original.clone();
    repeated.push(original[0].clone());
    write_lines(&path, &repeated);
    assert!(matches!(
        fault(LkgCache::read_verified(&path, &keys)),
        JournalFault::OutOfSequence { .. }
    ));
}

#[test]
fn a_single_service_rolled_back_by_a_forged_record_is_refused() {
    // Even a writer holding the key cannot make a reader accept an older
    // version after a newer one.
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, w) = journaled(dir.path(), &keys);
    let mut l = lines(&path);
    let epoch = Epoch::parse(EPOCH).unwrap();
    let (line, _) = forge_line(
        keys.current_key(),
        w.records() + 1,
        &epoch,
        &name("tts-worker"),
        Some(entry(2, 20)),
        &w.last_mac_for_tests(),
    );
    l.push(line);
    write_lines(&path, &l);
    assert!(matches!(
        fault(LkgCache::read_verified(&path, &keys)),
        JournalFault::VersionRollback {
            cached,
            version,
            ..
        } if cached.get() == 4 && version.get() == 2
    ));
}

#[test]
fn the_writer_refuses_to_go_back_and_asks_for_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, mut w) = journaled(dir.path(), &keys);
    let err = w
        .append(vec![(name("tts-worker"), Some(entry(3, 1)))])
        .unwrap_err();
    assert!(matches!(err, AppendError::NeedsCompaction(_)), "{err}");
    // Nothing was written.
    assert_eq!(lines(&path).len(), 4);
    assert_eq!(
        volume(
            &LkgCache::read_verified(&path, &keys).unwrap(),
            "tts-worker"
        ),
        40
    );
}

#[test]
fn records_of_another_epoch_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, w) = journaled(dir.path(), &keys);
    let mut l = lines(&path);
    let other = Epoch::parse("11111111-e29b-41d4-a716-446655440000").unwrap();
    let (line, _) = forge_line(
        keys.current_key(),
        w.records() + 1,
        &other,
        &name("tts-worker"),
        Some(entry(9, 90)),
        &w.last_mac_for_tests(),
    );
    l.push(line);
    write_lines(&path, &l);
    assert!(matches!(
        fault(LkgCache::read_verified(&path, &keys)),
        JournalFault::ForeignEpoch(_)
    ));
}

#[test]
fn records_spliced_in_from_another_journal_are_refused() {
    // Two caches under the same key (two installations, or two epochs of one).
    let keys = ring();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (path_a, _) = journaled(a.path(), &keys);
    let (path_b, _) = journaled(b.path(), &keys);
    let mut mixed = lines(&path_a);
    mixed[2] = lines(&path_b)[2].clone();
    write_lines(&path_a, &mixed);
    assert_eq!(
        fault(LkgCache::read_verified(&path_a, &keys)),
        JournalFault::ChainBroken
    );
}

#[test]
fn a_journal_sealed_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, _) = journaled(dir.path(), &keys);
    // Same snapshot, journal rewritten by someone with other key material.
    let other = MacKeyRing::new(KeyId::parse("lkg-1").unwrap(), MacKey::generate());
    let snapshot = LkgCache::from_slice_verified(&fs::read(&path).unwrap(), &keys).unwrap();
    let (line, _) = forge_line(
        other.current_key(),
        1,
        &Epoch::parse(EPOCH).unwrap(),
        &name("tts-worker"),
        Some(entry(9, 90)),
        &snapshot_hmac(&path),
    );
    write_lines(&path, &[line]);
    assert_eq!(
        fault(LkgCache::read_verified(&path, &keys)),
        JournalFault::BadMac
    );
    assert_eq!(volume(&snapshot, "tts-worker"), 50);
}

#[test]
fn an_unfinished_last_line_is_ignored() {
    // A crash during an append: the write was never acknowledged.
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, _) = journaled(dir.path(), &keys);
    let mut text = fs::read_to_string(journal_path(&path)).unwrap();
    let last = lines(&path)[3].clone();
    text.truncate(text.len() - last.len() / 2);
    fs::write(journal_path(&path), &text).unwrap();
    let cache = LkgCache::read_verified(&path, &keys).unwrap();
    assert!(cache.journal().torn_tail);
    assert_eq!(cache.journal().records, 3);
    // Records 1-3 (the last one: router) are kept; record 4 (tts-worker
    // version 4) was being written.
    assert_eq!(volume(&cache, "tts-worker"), 30);
    assert_eq!(volume(&cache, "router"), 7);
}

#[test]
fn a_complete_but_garbled_last_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, _) = journaled(dir.path(), &keys);
    let mut l = lines(&path);
    l[3] = "{\"seq\": 4".into();
    write_lines(&path, &l);
    assert!(matches!(
        fault(LkgCache::read_verified(&path, &keys)),
        JournalFault::Unparseable(_)
    ));
}

#[test]
fn cutting_off_the_newest_records_is_not_detectable_and_serves_the_older_state() {
    // The documented limit: tail truncation is a rollback that the files
    // alone cannot reveal (the start-up compaction from the database repairs it).
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, _) = journaled(dir.path(), &keys);
    let l = lines(&path);
    write_lines(&path, &l[..2]);
    let cache = LkgCache::read_verified(&path, &keys).unwrap();
    assert_eq!(volume(&cache, "tts-worker"), 30);
}

#[test]
fn a_journal_left_over_from_before_a_compaction_is_ignored() {
    // Crash after the new snapshot was renamed in, before the old journal
    // was removed: the new snapshot already holds every record.
    let dir = tempfile::tempdir().unwrap();
    let keys = ring();
    let (path, _) = journaled(dir.path(), &keys);
    let old_journal = fs::read(journal_path(&path)).unwrap();
    let merged = LkgCache::read_verified(&path, &keys)
        .unwrap()
        .into_contents();
    LkgCache::seal(merged, &keys)
        .unwrap()
        .write_atomic(&path)
        .unwrap();
    assert!(
        !journal_path(&path).exists(),
        "compaction removes the journal"
    );
    fs::write(journal_path(&path), old_journal).unwrap();
    let cache = LkgCache::read_verified(&path, &keys).unwrap();
    assert!(cache.journal().stale);
    assert_eq!(cache.journal().records, 0);
    assert_eq!(volume(&cache, "tts-worker"), 40);
    assert_eq!(volume(&cache, "router"), 7);
}

#[test]
fn a_journal_with_a_snapshot_of_another_epoch_is_not_applied() {
    // The snapshot replaced by another installation's (same key): the
    // journal no longer extends it and is ignored; the epoch check of the
    // caller then refuses the snapshot itself.
    let keys = ring();
    let a = tempfile::tempdir().unwrap();
    let (path, _) = journaled(a.path(), &keys);
    LkgCache::seal(contents("22222222-e29b-41d4-a716-446655440000"), &keys)
        .unwrap()
        .to_json_bytes()
        .map(|bytes| fs::write(&path, bytes).unwrap())
        .unwrap();
    let cache = LkgCache::read_verified(&path, &keys).unwrap();
    assert!(cache.journal().stale);
    assert_eq!(
        cache.contents().config_epoch.as_str(),
        "22222222-e29b-41d4-a716-446655440000"
    );
}

fn snapshot_hmac(path: &Path) -> String {
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    doc["hmac"].as_str().unwrap().to_owned()
}
