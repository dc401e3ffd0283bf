"""The checks a received MQTT payload goes through before anything changes:
size and parse → service → key, checksum, signature → freshness and replay.
Typed validation and the application's callbacks come after (in
:mod:`config_manager_client.library`); only then is the update committed.

No I/O and no clock here, so every rule is tested with fixed inputs.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from . import envelope as env
from .freshness import AppliedState, FreshnessPolicy, check_freshness
from .keys import TrustedKeys

log = logging.getLogger("config_manager_client")


@dataclass(frozen=True)
class Outcome:
    """What one payload led to. For ``apply``, ``config`` is the new raw
    config (secrets the update left out or masked carried over)."""

    action: Literal["apply", "ignore", "reject"]
    reason: str = ""
    detail: str = ""
    envelope: env.Envelope | None = None
    config: dict[str, Any] | None = None
    #: The version the payload named when it parsed as an envelope for this
    #: service, authentic or not (a rejection report's ``rejected_version``).
    version: int | None = None
    #: With ``invalid_config``: the config keys that did not fit (no values).
    fields: tuple[str, ...] = ()


@dataclass
class Counters:
    """Applied, ignored and rejected updates, rejections by reason label.
    Thread-safe; read with :meth:`snapshot`."""

    applied: int = 0
    ignored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    #: Applied-state reports handed to the MQTT connection.
    reports_published: int = 0
    #: Reports that could not be handed over (retried after the next connect).
    report_failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, outcome: Outcome) -> None:
        with self._lock:
            if outcome.action == "apply":
                self.applied += 1
            elif outcome.action == "ignore":
                self.ignored += 1
            else:
                self.rejected[outcome.reason] += 1

    def record_report(self, published: bool) -> None:
        with self._lock:
            if published:
                self.reports_published += 1
            else:
                self.report_failures += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "applied": self.applied,
                "ignored": self.ignored,
                "rejected": dict(self.rejected),
                "rejected_total": sum(self.rejected.values()),
                "reports_published": self.reports_published,
                "report_failures": self.report_failures,
            }


def carry_over_secrets(new: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """MQTT payloads never carry a secret in clear text: the manager leaves
    secret fields out (``docs/mqtt.md``); a masked value (``********``) is
    handled the same way for older publishers. Where the update omits a key or
    shows the mask and the config in force has a real value (from an
    authenticated REST load), that value stays, so an update of another field
    does not drop the service's API key."""
    merged = dict(new)
    for key, value in merged.items():
        prev = previous.get(key)
        if value == env.SECRET_MASK and isinstance(prev, str) and prev != env.SECRET_MASK:
            merged[key] = prev
    for key, prev in previous.items():
        if key not in merged:
            merged[key] = prev
    return merged


class UpdatePipeline:
    """Verifies payloads for one service against the state in force."""

    def __init__(
        self,
        service: str,
        trusted: TrustedKeys,
        policy: FreshnessPolicy | None = None,
        max_payload: int = env.DEFAULT_MAX_PAYLOAD_BYTES,
        applied: AppliedState | None = None,
        raw: dict[str, Any] | None = None,
        counters: Counters | None = None,
    ) -> None:
        self.service = service
        self.trusted = trusted
        self.policy = policy or FreshnessPolicy()
        self.max_payload = max_payload
        self.applied = applied
        self.raw: dict[str, Any] = dict(raw or {})
        self.counters = counters or Counters()

    def check(self, payload: bytes, now: datetime) -> Outcome:
        """Every contract check, without side effects on the state."""
        try:
            envelope = env.parse(payload, self.max_payload)
            if envelope.service != self.service:
                raise env.Rejected(
                    "wrong_service",
                    f"envelope is for service {envelope.service}, not {self.service}",
                )
        except env.Rejected as r:
            return Outcome("reject", r.label, r.detail)
        try:
            env.verify(envelope, self.trusted)
        except env.Rejected as r:
            return Outcome("reject", r.label, r.detail, version=envelope.version)
        decision = check_freshness(self.applied, envelope, now, self.policy)
        if decision.action == "reject":
            return Outcome("reject", decision.reason, f"freshness: {decision.reason}", envelope)
        if decision.action == "ignore":
            return Outcome("ignore", decision.reason, "re-issue of the applied version", envelope)
        merged = carry_over_secrets(envelope.config, self.raw)
        return Outcome("apply", envelope=envelope, config=merged)

    def commit(self, outcome: Outcome) -> None:
        """Makes an ``apply`` outcome the state in force."""
        assert outcome.envelope is not None
        assert outcome.config is not None
        self.raw = outcome.config
        self.applied = AppliedState.of(outcome.envelope)

    def record(self, outcome: Outcome) -> None:
        """Counts and logs the final outcome of one payload (never the config)."""
        self.counters.record(outcome)
        if outcome.action == "apply" and outcome.envelope is not None:
            log.info(
                "applied configuration update service=%s version=%d epoch=%s",
                self.service,
                outcome.envelope.version,
                outcome.envelope.config_epoch,
            )
        elif outcome.action == "ignore":
            log.debug("ignored configuration update service=%s (%s)", self.service, outcome.detail)
        else:
            log.warning(
                "rejected configuration update service=%s reason=%s error=%s; "
                "keeping the current config",
                self.service,
                outcome.reason,
                outcome.detail,
            )
