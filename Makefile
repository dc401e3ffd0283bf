# config-manager developer commands. `make run` and `make test` are the two
# commands a fresh machine needs (see README.md).
.PHONY: run dist test test-unit test-integration test-contract test-python fmt lint check settings-docs fuzz bench bench-load bench-scale bench-scale-10k bench-instructions image

run:
	cargo run --release -p config-manager -- serve

# The binary that ships (target/dist/config-manager): size-tuned, fat LTO,
# slower to build than `make run`'s release profile (docs/performance.md).
dist:
	cargo build --profile dist --locked -p config-manager

test:
	scripts/test.sh all

test-unit:
	scripts/test.sh unit

test-integration:
	scripts/test.sh integration

test-contract:
	scripts/test.sh contract

test-python:
	scripts/test.sh python

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	# The core crate without SQLite (with and without the schema engine; the
	# client library uses it with no features).
	cargo clippy -p config-manager-core --no-default-features --features schema --all-targets -- -D warnings
	cargo clippy -p config-manager-core --no-default-features --all-targets -- -D warnings
	# Doc comments' links resolve (a moved module leaves broken ones behind).
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

check: lint test

# Rewrite .env.example and the settings tables in docs/operations.md and
# docs/backup.md from the settings table
# (crates/config-manager-service/src/settings/table.rs). The same test without
# UPDATE_SETTINGS_DOCS fails when they differ.
settings-docs:
	UPDATE_SETTINGS_DOCS=1 cargo test -p config-manager-service --lib settings::render

# Longer runs of the property tests (docs/testing.md): one target per
# property, each stopping by itself after FUZZ_SECS seconds.
#   make fuzz                                 every target
#   make fuzz TARGET=envelope_near_valid FUZZ_SECS=600
#   make fuzz TARGET=list                     the targets
FUZZ_SECS ?= 60
fuzz:
	FUZZ_SECS=$(FUZZ_SECS) scripts/fuzz.sh $(TARGET)

# Benchmarks (docs/performance.md): criterion micro-benchmarks, the load
# benchmark with the issue's targets, and the 1,000-service scale run.
bench:
	cargo bench --profile dist -p config-manager-core --bench core --bench envelope

bench-load:
	scripts/bench.sh

bench-scale:
	scripts/bench.sh --scale 1000

# The same at 10,000 services (long: generating and seeding take minutes).
bench-scale-10k:
	scripts/bench.sh --scale 10000

# Instructions per cached GET under callgrind (repeatable, unlike wall time).
bench-instructions:
	scripts/bench-instructions.sh

# Container image (needs a Docker engine; see docs/deploy.md).
image:
	docker build -t config-manager .
