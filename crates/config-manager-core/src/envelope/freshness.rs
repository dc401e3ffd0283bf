//! Freshness and replay policy for received envelopes (`contracts/freshness.md`).
//!
//! Two mechanisms work together, each covering what the other cannot:
//!
//! - **Version order within an epoch.** Versions only grow inside one
//!   `config_epoch`, so a service that knows what it applied rejects anything
//!   older, however recently it was signed. This needs no clock, and it does
//!   not expire: a service that comes back after a week still accepts the
//!   current (newer) config.
//! - **Age across epochs.** A database rebuild starts a new epoch whose versions
//!   restart, so version order says nothing between epochs. There, and when the
//!   service has applied nothing yet, only recently issued messages
//!   (`max_age`, default 5 min) are accepted. The manager re-signs and
//!   re-publishes (retained) every service's config periodically, more often
//!   than `max_age`, and after every reconnect, so the retained message a late
//!   joiner receives is always fresh while the manager runs.
//!
//! A message dated more than `max_skew` (default 60 s) in the future is refused
//! in every case: it would otherwise stay "fresh" long after it was issued.

use std::time::Duration;

use thiserror::Error;
use time::OffsetDateTime;

use super::Envelope;
use crate::domain::{Epoch, Version};

/// What a service has applied: the reference point for the next message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedState {
    pub epoch: Epoch,
    pub version: Version,
    /// Checksum of the applied config, to recognise a re-issue of the same
    /// version. `None` when the state came from a source whose config is not
    /// byte-identical to the envelope's (a REST load includes the service's
    /// secrets, an envelope has them masked): the same version then counts as
    /// a re-issue whatever its checksum.
    pub checksum: Option<String>,
}

impl AppliedState {
    /// The state after applying `envelope`.
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            epoch: envelope.config_epoch.clone(),
            version: envelope.version,
            checksum: Some(envelope.checksum.clone()),
        }
    }
}

/// The tunables of the rule. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreshnessPolicy {
    /// Oldest `issued_at` accepted when version order cannot decide (another
    /// epoch, or nothing applied yet). Default 5 minutes.
    pub max_age: Duration,
    /// How far in the future `issued_at` may be (clock differences). Default 60 s.
    pub max_skew: Duration,
    /// Apply a stale message when nothing has been applied yet (no REST, no LKG,
    /// running on defaults). Default `false`: an attacker who can publish on the
    /// broker could otherwise feed a fresh service any old signed config; the
    /// periodic re-issue delivers a fresh one within one interval anyway.
    pub accept_stale_initial: bool,
}

impl Default for FreshnessPolicy {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(300),
            max_skew: Duration::from_secs(60),
            accept_stale_initial: false,
        }
    }
}

/// What to do with a verified envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Apply it (then record [`AppliedState::of`] the envelope).
    Apply,
    /// Drop it quietly: nothing new (a periodic re-issue of what is applied).
    Ignore(IgnoreReason),
    /// Drop it and report it: a replay, a stale or a future-dated message.
    Reject(Rejection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum IgnoreReason {
    #[error("same version and checksum as the applied config (re-issue)")]
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    /// An older version of the applied epoch: a replay.
    #[error(
        "version {received} is older than the applied version {applied} of this epoch (replay)"
    )]
    Replay { received: Version, applied: Version },
    /// The applied version with other content, issued too long ago to be the
    /// manager's current re-issue.
    #[error("version {version} was already applied with a different checksum, and this variant is stale")]
    VersionConflict { version: Version },
    /// Another epoch than the applied one, issued too long ago.
    #[error(
        "message from another epoch issued {age_secs} s ago, more than the {max_secs} s allowed"
    )]
    StaleEpoch { age_secs: u64, max_secs: u64 },
    /// Nothing applied yet and the message is too old (see
    /// [`FreshnessPolicy::accept_stale_initial`]).
    #[error("first message issued {age_secs} s ago, more than the {max_secs} s allowed")]
    StaleInitial { age_secs: u64, max_secs: u64 },
    /// Dated too far in the future.
    #[error("issued_at is {ahead_secs} s in the future, more than the {max_secs} s allowed")]
    FromFuture { ahead_secs: u64, max_secs: u64 },
    #[error("issued_at is not an RFC 3339 timestamp")]
    BadTimestamp,
}

impl Rejection {
    /// A stable label for counters and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Replay { .. } => "replay",
            Rejection::VersionConflict { .. } => "version_conflict",
            Rejection::StaleEpoch { .. } => "stale_epoch",
            Rejection::StaleInitial { .. } => "stale",
            Rejection::FromFuture { .. } => "from_future",
            Rejection::BadTimestamp => "bad_timestamp",
        }
    }
}

/// Decides whether a verified `envelope` may be applied, given what has been
/// applied (`None`: nothing yet, or only built-in defaults) and the time `now`.
///
/// 1. `issued_at` more than `max_skew` ahead of `now` → reject.
/// 2. Same epoch as applied: a higher version → apply, at any age; the same
///    version and checksum → ignore (re-issue); the same version with another
///    checksum → apply if issued within `max_age`, else reject; a lower
///    version → reject (replay).
/// 3. Another epoch (after a database rebuild): apply if issued within
///    `max_age`, else reject as stale.
/// 4. Nothing applied: apply if issued within `max_age`; an older message only
///    when `accept_stale_initial` is set.
pub fn check_freshness(
    applied: Option<&AppliedState>,
    envelope: &Envelope,
    now: OffsetDateTime,
    policy: &FreshnessPolicy,
) -> Decision {
    let Ok(issued_at) = envelope.issued_at_time() else {
        return Decision::Reject(Rejection::BadTimestamp);
    };
    let age = now - issued_at;
    if -age > policy.max_skew {
        return Decision::Reject(Rejection::FromFuture {
            ahead_secs: whole_secs(-age),
            max_secs: policy.max_skew.as_secs(),
        });
    }
    let fresh = age <= policy.max_age;
    match applied {
        Some(state) if state.epoch == envelope.config_epoch => {
            if envelope.version > state.version {
                Decision::Apply
            } else if envelope.version < state.version {
                Decision::Reject(Rejection::Replay {
                    received: envelope.version,
                    applied: state.version,
                })
            } else if state
                .checksum
                .as_ref()
                .is_none_or(|c| *c == envelope.checksum)
            {
                Decision::Ignore(IgnoreReason::Duplicate)
            } else if fresh {
                // The manager re-published the same version with other content:
                // its effective config changed without a stored change (an
                // environment override or schema default changed across a
                // restart). Only the manager can sign this, and requiring
                // freshness keeps an old variant from being replayed later.
                Decision::Apply
            } else {
                Decision::Reject(Rejection::VersionConflict {
                    version: envelope.version,
                })
            }
        }
        Some(_) if fresh => Decision::Apply,
        Some(_) => Decision::Reject(Rejection::StaleEpoch {
            age_secs: whole_secs(age),
            max_secs: policy.max_age.as_secs(),
        }),
        None if fresh || policy.accept_stale_initial => Decision::Apply,
        None => Decision::Reject(Rejection::StaleInitial {
            age_secs: whole_secs(age),
            max_secs: policy.max_age.as_secs(),
        }),
    }
}

fn whole_secs(d: time::Duration) -> u64 {
    u64::try_from(d.whole_seconds()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::signing::SigningKey;
    use crate::domain::ServiceName;
    use serde_json::{Map, Value};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00:00 UTC);
    const EPOCH_A: &str = "5b0c3f0e-8a51-4c8e-9a43-7f6d2b1e0a01";
    const EPOCH_B: &str = "9e2d7c41-1f3b-4a5e-8c6d-0b1a2c3d4e5f";

    fn v(n: i64) -> Version {
        Version::new(n).unwrap()
    }

    fn env(epoch: &str, version: i64, issued: OffsetDateTime, volume: i64) -> Envelope {
        let mut config = Map::new();
        config.insert("tts_volume".into(), Value::from(volume));
        Envelope::sign_at(
            &ServiceName::parse("tts-worker").unwrap(),
            v(version),
            &Epoch::parse(epoch).unwrap(),
            config,
            issued,
            &SigningKey::from_seed(&[7; 32]),
        )
        .unwrap()
    }

    fn state(epoch: &str, version: i64, volume: i64) -> AppliedState {
        AppliedState::of(&env(epoch, version, NOW, volume))
    }

    fn check(applied: Option<&AppliedState>, e: &Envelope) -> Decision {
        check_freshness(applied, e, NOW, &FreshnessPolicy::default())
    }

    const MIN: time::Duration = time::Duration::MINUTE;
    const DAY: time::Duration = time::Duration::DAY;

    #[test]
    fn same_epoch_newer_version_applies_at_any_age() {
        let s = state(EPOCH_A, 4, 1);
        assert_eq!(check(Some(&s), &env(EPOCH_A, 5, NOW, 2)), Decision::Apply);
        assert_eq!(
            check(Some(&s), &env(EPOCH_A, 9, NOW - 30 * DAY, 2)),
            Decision::Apply
        );
    }

    #[test]
    fn same_epoch_older_version_is_a_replay_even_when_fresh() {
        let s = state(EPOCH_A, 4, 1);
        assert_eq!(
            check(Some(&s), &env(EPOCH_A, 3, NOW, 0)),
            Decision::Reject(Rejection::Replay {
                received: v(3),
                applied: v(4)
            })
        );
    }

    #[test]
    fn same_version_is_ignored_or_needs_to_be_fresh() {
        let s = state(EPOCH_A, 4, 1);
        assert_eq!(
            check(Some(&s), &env(EPOCH_A, 4, NOW - DAY, 1)),
            Decision::Ignore(IgnoreReason::Duplicate)
        );
        assert_eq!(
            check(Some(&s), &env(EPOCH_A, 4, NOW - MIN, 2)),
            Decision::Apply
        );
        assert_eq!(
            check(Some(&s), &env(EPOCH_A, 4, NOW - 6 * MIN, 2)),
            Decision::Reject(Rejection::VersionConflict { version: v(4) })
        );
        let from_rest = AppliedState {
            checksum: None,
            ..s.clone()
        };
        assert_eq!(
            check(Some(&from_rest), &env(EPOCH_A, 4, NOW, 2)),
            Decision::Ignore(IgnoreReason::Duplicate)
        );
    }

    #[test]
    fn other_epoch_needs_a_fresh_message() {
        let s = state(EPOCH_A, 40, 1);
        assert_eq!(
            check(Some(&s), &env(EPOCH_B, 1, NOW - 4 * MIN, 2)),
            Decision::Apply
        );
        assert_eq!(
            check(Some(&s), &env(EPOCH_B, 99, NOW - 6 * MIN, 2)),
            Decision::Reject(Rejection::StaleEpoch {
                age_secs: 360,
                max_secs: 300
            })
        );
    }

    #[test]
    fn first_message_needs_to_be_fresh_unless_allowed() {
        assert_eq!(check(None, &env(EPOCH_A, 3, NOW - MIN, 2)), Decision::Apply);
        let stale = env(EPOCH_A, 3, NOW - DAY, 2);
        assert_eq!(
            check(None, &stale),
            Decision::Reject(Rejection::StaleInitial {
                age_secs: 86_400,
                max_secs: 300
            })
        );
        let lenient = FreshnessPolicy {
            accept_stale_initial: true,
            ..FreshnessPolicy::default()
        };
        assert_eq!(
            check_freshness(None, &stale, NOW, &lenient),
            Decision::Apply
        );
    }

    #[test]
    fn future_dated_messages_are_refused_in_every_case() {
        let ahead = env(EPOCH_A, 5, NOW + 2 * MIN, 2);
        let want = Decision::Reject(Rejection::FromFuture {
            ahead_secs: 120,
            max_secs: 60,
        });
        assert_eq!(check(None, &ahead), want);
        assert_eq!(check(Some(&state(EPOCH_A, 4, 1)), &ahead), want);
        let slightly = env(EPOCH_A, 5, NOW + 30 * time::Duration::SECOND, 2);
        assert_eq!(check(None, &slightly), Decision::Apply);
    }

    #[test]
    fn labels_are_stable() {
        let labels: Vec<_> = [
            Rejection::Replay {
                received: v(1),
                applied: v(2),
            },
            Rejection::StaleEpoch {
                age_secs: 1,
                max_secs: 1,
            },
            Rejection::StaleInitial {
                age_secs: 1,
                max_secs: 1,
            },
            Rejection::FromFuture {
                ahead_secs: 1,
                max_secs: 1,
            },
        ]
        .iter()
        .map(Rejection::label)
        .collect();
        assert_eq!(labels, ["replay", "stale_epoch", "stale", "from_future"]);
    }
}
