"""The freshness and replay rule of ``contracts/freshness.md``, as one pure
function of the applied state, the verified envelope, ``now`` and the policy
(the same table as ``config_manager_core::envelope::freshness``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from .envelope import Envelope


@dataclass(frozen=True)
class AppliedState:
    """What the config in force was built from. ``checksum`` is ``None`` for a
    REST load (its body carries secrets the envelope leaves out, so checksums
    are not comparable)."""

    epoch: str
    version: int
    checksum: str | None

    @classmethod
    def of(cls, envelope: Envelope) -> AppliedState:
        return cls(envelope.config_epoch, envelope.version, envelope.checksum)


@dataclass(frozen=True)
class FreshnessPolicy:
    max_age: timedelta = timedelta(seconds=300)
    max_skew: timedelta = timedelta(seconds=60)
    accept_stale_initial: bool = False


@dataclass(frozen=True)
class Decision:
    """``apply``, ``ignore`` (a re-issue of what is applied) or ``reject`` with
    the client's reason label."""

    action: Literal["apply", "ignore", "reject"]
    reason: str = ""


APPLY = Decision("apply")


def check_freshness(
    applied: AppliedState | None,
    envelope: Envelope,
    now: datetime,
    policy: FreshnessPolicy,
) -> Decision:
    """Evaluates the table of ``freshness.md`` top to bottom."""
    age = now - envelope.issued_at_time()
    if -age > policy.max_skew:
        return Decision("reject", "from_future")
    fresh = age <= policy.max_age
    if applied is not None and applied.epoch == envelope.config_epoch:
        if envelope.version > applied.version:
            return APPLY
        if envelope.version < applied.version:
            return Decision("reject", "replay")
        if applied.checksum is None or applied.checksum == envelope.checksum:
            return Decision("ignore", "duplicate")
        return APPLY if fresh else Decision("reject", "version_conflict")
    if applied is not None:
        return APPLY if fresh else Decision("reject", "stale_epoch")
    if fresh or policy.accept_stale_initial:
        return APPLY
    return Decision("reject", "stale")
