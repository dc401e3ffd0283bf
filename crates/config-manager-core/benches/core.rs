//! Micro-benchmarks of the work behind every request (issue 9): schema
//! validation, canonical JSON + Ed25519, AES-GCM secrets, the HMAC of the
//! last-known-good (LKG) file and its write per update, store reads and
//! durable writes, a rebuild of 100 services, and — as the floor the durable
//! figures are compared with — a bare durable SQLite commit on the same disk.
//!
//! ```sh
//! cargo bench -p config-manager-core --bench core
//! cargo bench -p config-manager-core --bench core -- store/   # one group
//! ```
//!
//! Every file-backed benchmark works in a temporary directory on the disk
//! `TMPDIR` points at (default `/tmp`): point it at the disk the service uses
//! when that differs, or the fsync figures describe the wrong device.
//! Figures and the machine they come from: `docs/performance.md`.

// Benchmarks are test code: a panic is the right reaction to a broken fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use config_manager_core::change_type::ChangeType;
use config_manager_core::crypto::canonical;
use config_manager_core::crypto::key_id::KeyId;
use config_manager_core::crypto::mac::{MacKey, MacKeyRing};
use config_manager_core::crypto::secret_box::{MasterKey, SecretKeyRing};
use config_manager_core::crypto::signing::SigningKey;
use config_manager_core::domain::{Epoch, ServiceName, Version};
use config_manager_core::lkg::{LkgCache, LkgContents};
use config_manager_core::manager::{Manager, ManagerOptions, PutRequest, SecretView};
use config_manager_core::schema::{SchemaRegistry, ServiceSchema};
use config_manager_core::store::{ConfigWrite, Store};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Map, Value};

/// A synthetic service schema of `fields` settings, mixing the kinds real
/// schemas use: bounded strings (some with a pattern or `format: uri`),
/// integers and floats with ranges, booleans, enums and a nullable string;
/// every third field advanced.
fn synthetic_schema(fields: usize) -> Value {
    let mut props = Map::new();
    for i in 0..fields {
        let complexity = if i % 3 == 2 { "advanced" } else { "simple" };
        let description =
            format!("Setting number {i} of the synthetic service, used for benchmarks.");
        let prop = match i % 8 {
            0 => json!({"type": "string", "minLength": 1, "maxLength": 200,
                        "default": format!("value-{i}")}),
            1 => json!({"type": "integer", "minimum": 0, "maximum": 100_000, "default": i * 10}),
            2 => json!({"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.5}),
            3 => json!({"type": "boolean", "default": i % 2 == 0}),
            4 => json!({"type": "string", "x-type": "enum", "enum": ["low", "medium", "high"],
                        "default": "medium"}),
            5 => json!({"type": "string", "pattern": "^[a-z][a-z0-9_-]*$", "maxLength": 64,
                        "default": "model_small"}),
            6 => json!({"type": "string", "format": "uri", "maxLength": 500,
                        "default": "http://127.0.0.1:8080/v1"}),
            _ => json!({"type": ["string", "null"], "maxLength": 500, "default": null}),
        };
        let mut prop = prop.as_object().cloned().unwrap();
        prop.insert("title".into(), json!(format!("Setting {i}")));
        prop.insert("description".into(), json!(description));
        prop.insert("x-complexity".into(), json!(complexity));
        props.insert(format!("setting_{i:03}"), Value::Object(prop));
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Synthetic",
        "description": "A generated schema for benchmarks.",
        "type": "object",
        "additionalProperties": false,
        "properties": props,
    })
}

/// A valid configuration for [`synthetic_schema`] whose values differ from the
/// defaults (so nothing is skipped as "unchanged").
fn synthetic_config(fields: usize) -> Map<String, Value> {
    (0..fields)
        .map(|i| {
            let v = match i % 8 {
                0 => json!(format!("changed value {i} – größer ✓")),
                1 => json!(i * 10 + 7),
                2 => json!(0.25),
                3 => json!(i % 2 != 0),
                4 => json!("high"),
                5 => json!("model_large-2"),
                6 => json!("https://example.invalid/api"),
                _ => json!("some text"),
            };
            (format!("setting_{i:03}"), v)
        })
        .collect()
}

fn key_id(raw: &str) -> KeyId {
    KeyId::parse(raw).unwrap()
}

fn options() -> ManagerOptions {
    ManagerOptions {
        allow_unknown_services: false,
        env_policy: Arc::default(),
        env: Arc::new(|_| None),
        secrets: Some(Arc::new(SecretKeyRing::new(
            key_id("master-1"),
            MasterKey::generate(),
        ))),
        auto_fix_schema: false,
    }
}

/// Built-in schemas plus `extra` synthetic services of 50 fields each.
fn registry(extra: usize) -> SchemaRegistry {
    let mut schemas = SchemaRegistry::builtin().unwrap();
    for i in 0..extra {
        let name = ServiceName::parse(&format!("bench-service-{i:04}")).unwrap();
        schemas.register(ServiceSchema::compile(name, synthetic_schema(50)).unwrap());
    }
    schemas
}

fn open_manager(dir: &Path, schemas: SchemaRegistry, options: ManagerOptions) -> Manager {
    let store = Store::open(&dir.join("config.db")).unwrap();
    Manager::open(store, schemas, options).unwrap()
}

fn patch(config: Value, version: Version) -> PutRequest {
    PutRequest {
        config: config.as_object().cloned().unwrap(),
        expected_version: Some(version),
        merge: true,
        actor: "bench".into(),
        reason: None,
        change_type: ChangeType::Update,
    }
}

fn schema_validation(c: &mut Criterion) {
    let name = ServiceName::parse("bench-service").unwrap();
    let schema = ServiceSchema::compile(name, synthetic_schema(60)).unwrap();
    let config = Value::Object(schema.view().with_defaults(&synthetic_config(60)));
    assert!(schema.validate(&config).is_ok());
    let mut invalid = config.clone();
    invalid["setting_001"] = json!(-5);
    invalid["setting_004"] = json!("extreme");
    assert_eq!(schema.validate(&invalid).unwrap_err().len(), 2);

    let mut group = c.benchmark_group("schema");
    group.bench_function("validate 60 fields (valid)", |b| {
        b.iter(|| schema.validate(black_box(&config)).is_ok())
    });
    group.bench_function("validate 60 fields (2 errors)", |b| {
        b.iter(|| schema.validate(black_box(&invalid)).is_err())
    });
    group.finish();
}

fn signatures(c: &mut Criterion) {
    let config = synthetic_config(60);
    let key = SigningKey::generate();
    let public = key.verifying_key();
    let bytes = canonical::object_to_canonical_bytes(&config).unwrap();
    let signature = key.sign_base64(&bytes);
    println!(
        "signatures: 60-field config, canonical form {} bytes",
        bytes.len()
    );

    let mut group = c.benchmark_group("signature");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("canonical JSON (60 fields)", |b| {
        b.iter(|| canonical::object_to_canonical_bytes(black_box(&config)).unwrap())
    });
    group.bench_function("canonical JSON + Ed25519 sign", |b| {
        b.iter(|| {
            let bytes = canonical::object_to_canonical_bytes(black_box(&config)).unwrap();
            key.sign_base64(&bytes)
        })
    });
    group.bench_function("canonical JSON + Ed25519 verify", |b| {
        b.iter(|| {
            let bytes = canonical::object_to_canonical_bytes(black_box(&config)).unwrap();
            public.verify_base64(&bytes, &signature).unwrap()
        })
    });
    group.finish();
}

fn secrets(c: &mut Criterion) {
    let ring = SecretKeyRing::new(key_id("master-1"), MasterKey::generate());
    let plain = b"sk-proj-0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
    let sealed = ring.seal("llm-worker", "openai_api_key", plain).unwrap();

    let mut group = c.benchmark_group("aes-gcm");
    group.bench_function("encrypt (seal a 50-byte secret)", |b| {
        b.iter(|| {
            ring.seal("llm-worker", "openai_api_key", black_box(plain))
                .unwrap()
        })
    });
    group.bench_function("decrypt (open a 50-byte secret)", |b| {
        b.iter(|| {
            ring.open("llm-worker", "openai_api_key", black_box(&sealed))
                .unwrap()
        })
    });
    group.finish();
}

/// LKG contents of the six TARS services with one secret set: what the
/// service writes after every update.
fn tars_manager(dir: &Path) -> Manager {
    let m = open_manager(dir, registry(0), options());
    let name = ServiceName::parse("llm-worker").unwrap();
    let version = m
        .get_effective(&name, SecretView::Omitted, false)
        .unwrap()
        .version;
    m.put(
        &name,
        patch(json!({"openai_api_key": "sk-bench-secret"}), version),
    )
    .unwrap();
    m
}

fn lkg(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let manager = tars_manager(dir.path());
    let keys = MacKeyRing::new(key_id("lkg-1"), MacKey::generate());
    let contents = manager.lkg_contents().unwrap();
    let file = LkgCache::seal(contents.clone(), &keys)
        .unwrap()
        .to_json_bytes()
        .unwrap();
    println!(
        "lkg: {} services, file {} bytes",
        contents.services.len(),
        file.len()
    );
    let lkg_path = dir.path().join("config.lkg.json");

    let mut group = c.benchmark_group("lkg");
    group.throughput(Throughput::Bytes(file.len() as u64));
    group.bench_function("HMAC seal (6 TARS services)", |b| {
        b.iter_batched(
            || contents.clone(),
            |contents| LkgCache::seal(contents, &keys).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("parse + HMAC verify (6 TARS services)", |b| {
        b.iter(|| LkgCache::from_slice_verified(black_box(&file), &keys).unwrap())
    });
    group.bench_function("write per update (read DB + seal + atomic write)", |b| {
        b.iter(|| {
            let contents = manager.lkg_contents().unwrap();
            LkgCache::seal(contents, &keys)
                .unwrap()
                .write_atomic(&lkg_path)
                .unwrap()
        })
    });
    group.finish();
}

fn store(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let manager = tars_manager(dir.path());
    let service = ServiceName::parse("tts-worker").unwrap();
    let store = manager.store();

    let mut group = c.benchmark_group("store");
    group.bench_function("read one service (Store::get_config)", |b| {
        b.iter(|| store.get_config(black_box(&service)).unwrap())
    });
    group.bench_function("effective config, masked (uncached GET body)", |b| {
        b.iter(|| {
            manager
                .get_effective(black_box(&service), SecretView::Masked, false)
                .unwrap()
        })
    });

    // Durable writes: each iteration changes a value, so each one commits a
    // new version with `synchronous=FULL` (one WAL fsync).
    let stored = store.get_config(&service).unwrap();
    let items = store.list_items(Some(&service)).unwrap();
    let mut volume = 0i64;
    group.bench_function("durable write (Store::save_config, 1 key changed)", |b| {
        b.iter(|| {
            volume = (volume + 1) % 200;
            let mut config = stored.config.clone();
            config.insert("volume_percent".into(), json!(volume));
            let write = ConfigWrite {
                service: service.clone(),
                config,
                expected_version: None,
                actor: "bench".into(),
                reason: None,
                change_type: ChangeType::Update,
                items: items.clone(),
                secrets: vec![],
            };
            store.save_config(&write, manager.epoch()).unwrap()
        })
    });
    let mut version = store.get_config(&service).unwrap().version;
    group.bench_function("validated PATCH (Manager::put, 1 key changed)", |b| {
        b.iter(|| {
            volume = (volume + 1) % 200;
            let out = manager
                .put(&service, patch(json!({"volume_percent": volume}), version))
                .unwrap();
            version = out.stored.version;
            out
        })
    });
    group.finish();
}

/// The floor under every durable write: one row committed in its own
/// transaction, WAL mode, `synchronous=FULL`, on the same disk.
fn sqlite_floor(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("floor.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
    )
    .unwrap();
    let mut i = 0i64;
    let mut group = c.benchmark_group("sqlite");
    group.bench_function("bare durable commit (WAL, synchronous=FULL)", |b| {
        b.iter(|| {
            i += 1;
            conn.execute("INSERT INTO t (id, v) VALUES (?1, 'x')", [i])
                .unwrap()
        })
    });
    let path = dir.path().join("fsync.bin");
    group.bench_function("file write + fsync + rename + dir fsync (4 KiB)", |b| {
        let data = vec![b'x'; 4096];
        b.iter(|| {
            use std::io::Write as _;
            let tmp = dir.path().join("fsync.tmp");
            let mut f = std::fs::File::create(&tmp).unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            std::fs::File::open(dir.path()).unwrap().sync_all().unwrap()
        })
    });
    group.finish();
}

fn rebuild(c: &mut Criterion) {
    // 6 TARS services + 94 synthetic ones of 50 fields = 100 services.
    let schemas = registry(94);
    let options = options();
    let source = tempfile::tempdir().unwrap();
    let cache: LkgContents = open_manager(source.path(), schemas.clone(), options.clone())
        .lkg_contents()
        .unwrap();
    assert_eq!(cache.services.len(), 100);
    let previous = cache.config_epoch.to_string();

    let mut group = c.benchmark_group("rebuild");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("100 services from the LKG (Manager::rebuild_into)", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(&dir.path().join("config.db")).unwrap();
                (dir, store)
            },
            |(dir, store)| {
                let (manager, report) = Manager::rebuild_into(
                    store,
                    schemas.clone(),
                    options.clone(),
                    &Epoch::generate(),
                    Some(&previous),
                    "benchmark",
                    Some(&cache),
                )
                .unwrap();
                assert_eq!(report.services_seeded.len(), 100);
                (dir, manager)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = schema_validation, signatures, secrets, lkg, store, sqlite_floor, rebuild
}
criterion_main!(benches);
