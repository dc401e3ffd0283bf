"""Applied-state reports (``contracts/mqtt-applied-state.schema.json``): what
this instance runs, published retained on
``system/config/<service>/applied/<instance_id>`` so the manager can show
operators which version each instance applied. Built here without I/O;
:mod:`config_manager_client.library` publishes them (table "Applied state" of
``contracts/README.md`` says when).

The same rules as the Rust client (``config_manager_core::applied`` and
``config-manager-client``'s ``report`` module), checked by the shared vectors
in ``contracts/vectors/applied-state.json``.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Literal

from .errors import SettingsError
from .freshness import AppliedState

#: ``client.name`` in every report of this package.
CLIENT_NAME = "tars-config-client"
#: Longest instance id (one MQTT topic level, one URL path segment).
MAX_INSTANCE_ID_LEN = 64
#: Most entries in ``fields`` and in ``pinned`` (the manager's bound).
MAX_NAMES = 64

_INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: Config keys (``fields``, keys of ``pinned``) and variable names (values of
#: ``pinned``) as decision 4 of docs/adopting.md bounds them.
_CONFIG_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HOST_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")

Status = Literal["applied", "rejected", "offline"]


def client_version() -> str:
    """The installed distribution's version (``client.version``)."""
    try:
        return metadata.version(CLIENT_NAME)
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def parse_instance_id(raw: str, name: str = "CONFIG_INSTANCE_ID") -> str:
    """``raw`` if it is an instance id (``^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$``),
    else :class:`SettingsError` naming ``name``."""
    if not _INSTANCE_ID.fullmatch(raw):
        raise SettingsError(
            f"{name} is invalid: expected 1 to {MAX_INSTANCE_ID_LEN} ASCII letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return raw


def default_instance_id(host: str, service: str) -> str:
    """The id an instance gets unless configured: the host name with ASCII
    letters lower-cased and every other character outside ``[a-z0-9]``
    (non-ASCII ones too, one each) turned into ``-``, trimmed of ``-``, then
    ``-`` and the service; cut from the front to 64 characters so the
    service stays readable. The same rule as ``InstanceId::default_for`` in
    Rust, so both clients on one host name the same instance alike."""
    mapped = "".join(
        c if c in _HOST_KEEP else "-"
        for c in (ch.lower() if "A" <= ch <= "Z" else ch for ch in host)
    ).strip("-")
    ident = f"{mapped}-{service}" if mapped else service
    if len(ident) > MAX_INSTANCE_ID_LEN:
        ident = ident[-MAX_INSTANCE_ID_LEN:].lstrip("-")
    return ident


def host_name() -> str:
    """The host name as the kernel reports it (empty when unknown)."""
    try:
        return socket.gethostname()
    except OSError:
        return ""


def report_topic(service: str, instance_id: str) -> str:
    return f"system/config/{service}/applied/{instance_id}"


def _iso(t: datetime) -> str:
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def build_report(
    service: str,
    instance_id: str,
    status: Status,
    running: tuple[AppliedState, str] | None,
    *,
    reason: str | None = None,
    rejected_version: int | None = None,
    version: str | None = None,
    fields: list[str] | tuple[str, ...] = (),
    pinned: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One report as a JSON object (every required member of the schema, in
    its order). The optional ``fields`` (with ``rejected``: the config keys
    that did not fit, never values) and ``pinned`` (config key → the variable
    holding it, ``CONFIG_PINNED_ENV``) are added only when not empty, at most
    64 entries each."""
    report: dict[str, Any] = {
        "service": service,
        "instance_id": instance_id,
        "config_epoch": running[0].epoch if running else None,
        "version": running[0].version if running else None,
        "status": status,
        "reason": reason,
        "rejected_version": rejected_version
        if rejected_version is not None and rejected_version >= 1
        else None,
        "applied_at": running[1] if running else None,
        "client": {"name": CLIENT_NAME, "version": version or client_version()},
    }
    names = [f for f in dict.fromkeys(fields) if _CONFIG_KEY.fullmatch(f)][:MAX_NAMES]
    if status == "rejected" and names:
        report["fields"] = names
    held = _pinned_members(pinned or {})
    if status != "offline" and held:
        report["pinned"] = held
    return report


def _pinned_members(pinned: dict[str, str]) -> dict[str, str]:
    """The ``pinned`` member: entries whose key is a config key and whose
    value a variable name (what the manager accepts), sorted, at most 64."""
    ok = [
        (k, v)
        for k, v in sorted(pinned.items())
        if _CONFIG_KEY.fullmatch(k) and _VARIABLE.fullmatch(v)
    ]
    return dict(ok[:MAX_NAMES])


@dataclass
class Reporter:
    """What this instance runs and the report describing it now."""

    service: str
    instance_id: str
    #: The version in force and when it was applied (``None``: defaults).
    running: tuple[AppliedState, str] | None = None
    #: The report describing the instance now; ``None`` until something was
    #: applied or refused (the contract publishes nothing before that).
    current: dict[str, Any] | None = None
    #: Config key → variable, fields held by the environment (every report).
    pinned: dict[str, str] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return report_topic(self.service, self.instance_id)

    def applied(self, state: AppliedState, now: datetime) -> dict[str, Any]:
        """A version took effect (start-up load or update)."""
        self.running = (state, _iso(now))
        self.current = build_report(
            self.service, self.instance_id, "applied", self.running, pinned=self.pinned
        )
        return self.current

    def rejected(
        self, label: str, rejected_version: int | None, fields: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        """An update was refused; the instance keeps what it runs. ``None``
        when this says exactly what the last report said (a repeat or a flood
        of the same refused update): nothing new to publish."""
        if not _REASON.fullmatch(label):  # the manager would drop the report
            label = "rejected"
        report = build_report(
            self.service,
            self.instance_id,
            "rejected",
            self.running,
            reason=label,
            rejected_version=rejected_version,
            fields=fields,
            pinned=self.pinned,
        )
        if report == self.current:
            return None
        self.current = report
        return report

    def not_fitting(self, version: int | None, fields: tuple[str, ...]) -> dict[str, Any] | None:
        """The start-up config does not fit the service's model: the failing
        fields run on their defaults, so the instance does not run that
        version (``rejected``, ``invalid_config``, nothing running)."""
        self.running = None
        return self.rejected("invalid_config", version, fields)

    def set_pinned(self, pinned: dict[str, str]) -> dict[str, Any] | None:
        """Records the pinned fields; the current report again when that
        changed it (``None`` otherwise)."""
        if pinned == self.pinned:
            return None
        self.pinned = dict(pinned)
        if self.current is None:
            return None
        if self.current.get("status") != "offline":
            held = _pinned_members(pinned)
            if held:
                self.current["pinned"] = held
            else:
                self.current.pop("pinned", None)
        return self.current

    def offline(self) -> dict[str, Any]:
        """The last will (what runs when it is set) and the clean-stop report."""
        return build_report(self.service, self.instance_id, "offline", self.running)


def encode(report: dict[str, Any]) -> bytes:
    """The payload as published: compact JSON, well under the manager's 4 KiB."""
    return json.dumps(report, separators=(",", ":")).encode()
