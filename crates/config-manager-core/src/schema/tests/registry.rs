//! Registry: loading directories, registration and the schema-set hash.

use std::fs;

use serde_json::{json, Value};

use super::*;

#[test]
fn load_dir_adds_and_replaces() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "camera.json", CAMERA);
    let tts_doc = r#"{"type": "object", "additionalProperties": false,
        "properties": {"volume_percent": {"type": "integer", "default": 50}}}"#;
    write(dir.path(), "tts-worker.json", tts_doc);
    write(dir.path(), "README.md", "not a schema");
    fs::create_dir(dir.path().join("sub.json")).unwrap();

    let mut registry = SchemaRegistry::builtin().unwrap();
    let loaded = registry.load_dir(dir.path()).unwrap();
    assert_eq!(loaded, [svc("camera"), svc("tts-worker")]);
    assert_eq!(registry.len(), 7);
    assert_eq!(
        registry.get("camera").unwrap().view().fields()[0].key,
        "zeta_fps"
    );
    assert_eq!(registry.get("tts-worker").unwrap().view().fields().len(), 1);
}

#[test]
fn load_dir_rejects_bad_files_and_changes_nothing() {
    let cases: [(&str, &str, &str); 7] = [
        ("Camera.json", CAMERA, "not a valid service name"),
        (".hidden.json", CAMERA, "not a valid service name"),
        ("camera.json", "{\"type\": \"object\",", "not valid JSON"),
        (
            "camera.json",
            r#"{"type": "object", "properties": {"a": {"type": "integer", "minimum": "x"}}}"#,
            "not a valid JSON Schema",
        ),
        (
            "camera.json",
            r#"{"type": "object", "properties": {"a": {"type": "integer", "default": "x"}}}"#,
            "defaults do not satisfy",
        ),
        ("camera.json", "[1, 2]", "must be a JSON object"),
        (
            "camera.json",
            r#"{"type": "object", "properties": {"x.y": {"type": "integer"}}}"#,
            "not a valid key",
        ),
    ];
    for (file, text, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "aaa-good.json", CAMERA);
        write(dir.path(), file, text);
        let mut registry = SchemaRegistry::builtin().unwrap();
        let before = registry.hash();
        let err = registry.load_dir(dir.path()).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains(file), "{file}: {shown}");
        assert!(shown.contains(want), "{file}: {shown}");
        assert_eq!(
            registry.len(),
            6,
            "a failed load_dir must not register anything"
        );
        assert_eq!(registry.hash(), before);
    }
}

#[test]
fn load_dir_limits_and_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let padding = " ".repeat(usize::try_from(MAX_SCHEMA_FILE_BYTES).unwrap());
    write(dir.path(), "camera.json", &format!("{CAMERA}{padding}"));
    let err = SchemaRegistry::new().load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, SchemaError::BadFile { .. }), "{err}");
    assert!(err.to_string().contains("limit"));

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("camera.json"), [0xff, 0xfe, 0x00]).unwrap();
    let err = SchemaRegistry::new().load_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("camera.json"), "{err}");

    let missing = dir.path().join("missing");
    let err = SchemaRegistry::new().load_dir(&missing).unwrap_err();
    assert!(matches!(err, SchemaError::Io { .. }));
    assert!(err.to_string().contains("missing"));

    let empty = tempfile::tempdir().unwrap();
    assert!(SchemaRegistry::new()
        .load_dir(empty.path())
        .unwrap()
        .is_empty());
}

#[test]
fn hash_is_stable_and_tracks_content() {
    let a = SchemaRegistry::builtin().unwrap();
    let b = SchemaRegistry::builtin().unwrap();
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash().len(), 64);
    assert!(a
        .hash()
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(a.hash(), SchemaRegistry::new().hash());

    // The same schemas from files (reformatted) hash the same.
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in BUILTIN_SCHEMAS {
        let doc: Value = serde_json::from_str(text).unwrap();
        write(
            dir.path(),
            &format!("{name}.json"),
            &serde_json::to_string(&doc).unwrap(),
        );
    }
    let mut from_files = SchemaRegistry::new();
    from_files.load_dir(dir.path()).unwrap();
    assert_eq!(from_files.hash(), a.hash());

    // Any content change changes it.
    let mut changed = a.clone();
    let mut doc = changed.get("tts-worker").unwrap().document();
    doc["properties"]["volume_percent"]["maximum"] = json!(150);
    changed.register(ServiceSchema::compile(svc("tts-worker"), doc).unwrap());
    assert_ne!(changed.hash(), a.hash());
    // The clone taken before was not affected.
    assert_eq!(
        a.get("tts-worker")
            .unwrap()
            .view()
            .field("volume_percent")
            .unwrap()
            .maximum,
        Some(200.0)
    );
    assert_eq!(a.hash(), b.hash());
}

#[test]
fn try_register_refuses_duplicates() {
    let mut registry = SchemaRegistry::builtin().unwrap();
    let camera = ServiceSchema::from_json_str(svc("camera"), CAMERA).unwrap();
    registry.try_register(camera).unwrap();
    let again = ServiceSchema::from_json_str(svc("camera"), CAMERA).unwrap();
    assert!(
        matches!(registry.try_register(again), Err(SchemaError::Duplicate(name)) if name == "camera")
    );
    assert!(registry.contains("camera") && !registry.contains("../camera"));
    assert!(registry.get("no-such").is_none());
}

#[test]
fn deferred_load_owes_the_validator_checks_until_check_pending() {
    // The two checks that need a compiled validator, deferred: both are
    // reported by `check_pending` with the file, unless the recorded hash
    // says this very set was checked before.
    let cases = [
        (
            r#"{"type": "object", "properties": {"a": {"type": "integer", "minimum": "x"}}}"#,
            "not a valid JSON Schema",
        ),
        (
            r#"{"type": "object", "properties": {"a": {"type": "integer", "default": "x"}}}"#,
            "defaults do not satisfy",
        ),
    ];
    for (text, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "aaa-good.json", CAMERA);
        write(dir.path(), "camera.json", text);
        let mut registry = SchemaRegistry::builtin().unwrap();
        registry.load_dir_deferred(dir.path()).unwrap();
        assert_eq!(registry.pending_checks(), 2);
        let mut unrecorded = registry.clone();
        let err = unrecorded.check_pending(None).unwrap_err().to_string();
        assert!(err.contains("camera.json") && err.contains(want), "{err}");
        let mut other = registry.clone();
        let err = other.check_pending(Some("another-set")).unwrap_err();
        assert!(err.to_string().contains(want));
        // The set the database recorded: nothing to compile.
        let hash = registry.hash();
        assert_eq!(registry.check_pending(Some(&hash)).unwrap(), 0);
        assert_eq!(registry.pending_checks(), 0);
    }
}

#[test]
fn deferred_schemas_validate_like_compiled_ones() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "camera.json", CAMERA);
    let mut deferred = SchemaRegistry::new();
    deferred.load_dir_deferred(dir.path()).unwrap();
    let mut compiled = SchemaRegistry::new();
    compiled.load_dir(dir.path()).unwrap();
    assert_eq!(deferred.hash(), compiled.hash());
    let (d, c) = (
        deferred.get("camera").unwrap(),
        compiled.get("camera").unwrap(),
    );
    assert_eq!(d.view(), c.view());
    for config in [
        json!({}),
        json!({"zeta_fps": 30}),
        json!({"zeta_fps": "fast"}),
        json!({"nope": 1}),
    ] {
        assert_eq!(d.validate(&config), c.validate(&config), "{config}");
    }
    assert_eq!(deferred.check_pending(None).unwrap(), 1);
}

#[test]
#[ignore = "measurement, run by hand"]
fn measure_registry_memory() {
    // The schemas of `scripts/bench/scale_data.py schemas DIR` (default
    // 1,000 services x 50 fields) in $SCALE_SCHEMA_DIR.
    fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find(|l| l.starts_with("RssAnon:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    }
    let dir = std::env::var("SCALE_SCHEMA_DIR").unwrap_or_else(|_| "/tmp/wt18-schemas1k".into());
    let before = rss_kib();
    let mut r = SchemaRegistry::new();
    r.load_dir_deferred(std::path::Path::new(&dir)).unwrap();
    let after = rss_kib();
    let docs: usize = r.iter().map(|s| s.document_text().len()).sum();
    eprintln!(
        "registry of {}: {} KiB anon ({} KiB of compact document text)",
        r.len(),
        after - before,
        docs / 1024
    );
    let started = std::time::Instant::now();
    let parsed: usize = r
        .iter()
        .map(|s| s.document().as_object().map_or(0, |o| o.len()))
        .sum();
    eprintln!(
        "parsing every document: {:.1} ms ({parsed})",
        started.elapsed().as_secs_f64() * 1e3
    );
    let started = std::time::Instant::now();
    let filled: usize = r
        .iter()
        .map(|s| s.with_defaults(&serde_json::Map::new()).len())
        .sum();
    eprintln!(
        "filling defaults from the resident text, every schema: {:.1} ms ({filled} values)",
        started.elapsed().as_secs_f64() * 1e3
    );
    let b = rss_kib();
    let started = std::time::Instant::now();
    let views: Vec<_> = r.iter().map(|s| s.view()).collect();
    let took = started.elapsed();
    let fields: usize = views.iter().map(|v| v.fields().len()).sum();
    eprintln!(
        "views of every schema ({fields} fields): {} KiB; derived in {:.1} ms ({:.0} us each; at most {} stay cached)",
        rss_kib() - b,
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e6 / r.len().max(1) as f64,
        r.cache_capacity()
    );
    drop(views);
    // Last: freed memory is reused, not returned, so each figure needs fresh pages.
    let b = rss_kib();
    let values: Vec<Value> = r.iter().map(|s| s.document()).collect();
    eprintln!("documents as Value: {} KiB", rss_kib() - b);
    drop(values);
}
