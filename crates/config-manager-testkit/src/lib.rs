//! Shared by every property test of a parser of untrusted input (issue 23,
//! "no panic from any input"): the generators ([`json`], [`text`],
//! [`bytes`]) and the runner ([`check`]) that bounds each property in cases
//! for `cargo test` and in time for `make fuzz`.
//!
//! The properties themselves live next to the crate they test
//! (`crates/*/tests/prop_*.rs`); docs/testing.md lists them and the fuzz
//! targets.
//!
//! Also the one test broker ([`broker`]) the integration tests of the
//! manager, the client library and config-agent start.

pub mod broker;
pub mod bytes;
pub mod documents;
pub mod json;
pub mod schema;
pub mod text;

use std::cell::Cell;
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

pub use proptest;

/// Cases per batch in fuzz mode when `PROPTEST_CASES` is not set.
const FUZZ_BATCH: u32 = 256;

/// Longest a failing case is shrunk before the runner reports it as found.
const MAX_SHRINK: Duration = Duration::from_secs(60);

/// Runs the property `test` over values of `strategy` and panics with the
/// smallest failing input (a panic inside `test` counts as a failure).
///
/// * `cargo test`: one batch of `cases` cases (`PROPTEST_CASES` overrides),
///   so the whole suite stays fast.
/// * `make fuzz` (`FUZZ_SECS` set): batches with fresh random seeds until
///   `FUZZ_SECS` seconds have passed, then stops by itself and prints how
///   many cases ran. `target` names the property in that line.
pub fn check<S, F>(target: &str, cases: u32, strategy: S, test: F)
where
    S: Strategy,
    F: Fn(S::Value) -> Result<(), TestCaseError>,
{
    let env_u64 = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let fuzz_secs = env_u64("FUZZ_SECS");
    let batch = env_u64("PROPTEST_CASES")
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(if fuzz_secs.is_some() {
            FUZZ_BATCH
        } else {
            cases
        });
    let config = Config {
        cases: batch,
        failure_persistence: None,
        max_shrink_time: u32::try_from(MAX_SHRINK.as_millis()).unwrap_or(u32::MAX),
        ..Config::default()
    };
    let started = Instant::now();
    let deadline = fuzz_secs.map(|s| started + Duration::from_secs(s));
    let ran = Cell::new(0u64);
    // Past the deadline the rest of a batch is skipped, so a run overshoots
    // FUZZ_SECS by one case at most.
    let bounded = |value: S::Value| {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        ran.set(ran.get() + 1);
        test(value)
    };
    loop {
        let mut runner = TestRunner::new(config.clone());
        match runner.run(&strategy, bounded) {
            Ok(()) => {}
            Err(TestError::Fail(reason, value)) => panic!(
                "{target}: property failed after {} cases: {reason}\nminimal input: {value:#?}",
                ran.get()
            ),
            Err(TestError::Abort(reason)) => panic!("{target}: aborted: {reason}"),
        }
        match deadline {
            Some(d) if Instant::now() < d => continue,
            Some(_) => {
                eprintln!(
                    "{target}: {} cases in {:.1} s, no failure",
                    ran.get(),
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            None => return,
        }
    }
}
