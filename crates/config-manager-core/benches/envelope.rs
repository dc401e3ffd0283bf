//! Cost per MQTT message of signing (what the manager's publisher does for
//! every publish and re-issue) and of parsing + verifying (what every service
//! does for every message it receives).
//!
//! ```sh
//! cargo bench -p config-manager-core --bench envelope
//! ```
//!
//! Two configs: the shipped `tts-worker` schema's defaults (a typical service,
//! ~30 fields) and a synthetic 200-field config of mixed types (an upper end).
//! The Ed25519 rows isolate the signature itself from canonical JSON and
//! SHA-256. Figures are in `docs/mqtt.md`.

// Benchmarks are test code: a panic is the right reaction to a broken fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use config_manager_core::crypto::signing::{SigningKey, TrustedKeys};
use config_manager_core::domain::{Epoch, ServiceName, Version};
use config_manager_core::envelope::{Envelope, DEFAULT_MAX_ENVELOPE_BYTES};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Map, Value};

/// The defaults of the shipped tts-worker schema.
fn tts_defaults() -> Map<String, Value> {
    let schema: Value = serde_json::from_str(include_str!("../schemas/tts-worker.json")).unwrap();
    schema["properties"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, p)| p.get("x-secret") != Some(&Value::Bool(true)))
        .map(|(k, p)| (k.clone(), p["default"].clone()))
        .collect()
}

/// 200 fields: strings (some non-ASCII), integers, floats, booleans, arrays.
fn large() -> Map<String, Value> {
    (0..200)
        .map(|i| {
            let v = match i % 5 {
                0 => json!(format!("value {i} – größer ✓")),
                1 => json!(i * 1000),
                2 => json!(f64::from(i) / 7.0),
                3 => json!(i % 2 == 0),
                _ => json!([i, "x", null, 2.5]),
            };
            (format!("field_{i:03}"), v)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate();
    let trusted = TrustedKeys::from_keys([key.verifying_key()]);
    let service = ServiceName::parse("tts-worker").unwrap();
    let epoch = Epoch::generate();
    let version = Version::new(7).unwrap();

    for (name, config) in [("tts-worker", tts_defaults()), ("200-fields", large())] {
        let payload = Envelope::sign(&service, version, &epoch, config.clone(), &key)
            .unwrap()
            .to_json_bytes()
            .unwrap();
        let mut group = c.benchmark_group(format!("envelope/{name}"));
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_function("sign+serialize", |b| {
            b.iter(|| {
                let envelope =
                    Envelope::sign(&service, version, &epoch, black_box(config.clone()), &key)
                        .unwrap();
                black_box(envelope.to_json_bytes().unwrap())
            })
        });
        group.bench_function("parse+verify", |b| {
            b.iter(|| {
                let envelope =
                    Envelope::parse(black_box(&payload), DEFAULT_MAX_ENVELOPE_BYTES).unwrap();
                envelope.verify(&trusted).unwrap();
                black_box(envelope)
            })
        });
        group.finish();
        println!("envelope/{name}: payload {} bytes", payload.len());
    }

    let message = Envelope::sign(&service, version, &epoch, tts_defaults(), &key)
        .unwrap()
        .signed_bytes()
        .unwrap();
    let signature = key.sign_base64(&message);
    let public = key.verifying_key();
    let mut group = c.benchmark_group("ed25519");
    group.bench_function("sign", |b| {
        b.iter(|| black_box(key.sign_base64(black_box(&message))))
    });
    group.bench_function("verify_strict", |b| {
        b.iter(|| {
            public
                .verify_base64(black_box(&message), &signature)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
