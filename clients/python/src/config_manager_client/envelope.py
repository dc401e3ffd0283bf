"""The signed configuration envelope of ``contracts/README.md``: strict parsing
and verification, in the order the contract lists (the first failing check is
what a rejection reports).

Kept free of I/O and of the clock, so the shared vectors in
``contracts/vectors/`` can check every rule.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature

from .keys import TrustedKeys

#: Payloads above this many bytes are refused unparsed (the Rust client's default).
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
#: The largest integer with an exact double; larger ones have no canonical form.
MAX_SAFE_INTEGER = 2**53 - 1
#: The value the manager shows in place of a secret (API reads).
SECRET_MASK = "********"  # noqa: S105 - the mask, not a secret

MEMBERS = (
    "version",
    "service",
    "config",
    "checksum",
    "config_epoch",
    "issued_at",
    "key_id",
    "signature",
)
_SERVICE = re.compile(r"[a-z][a-z0-9-]{0,63}")
_CHECKSUM = re.compile(r"[0-9a-f]{64}")
_EPOCH = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


class Rejected(Exception):
    """An envelope failed a check. ``label`` is the stable counter/log label,
    the same strings the Rust client uses."""

    def __init__(self, label: str, detail: str) -> None:
        super().__init__(detail)
        self.label = label
        self.detail = detail


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope (not yet verified)."""

    version: int
    service: str
    config: dict[str, Any]
    checksum: str
    config_epoch: str
    issued_at: str
    key_id: str
    signature: str

    def issued_at_time(self) -> datetime:
        parsed = parse_rfc3339(self.issued_at)
        if parsed is None:  # parse() already checked it
            raise Rejected("invalid_field", "issued_at is not an RFC 3339 timestamp")
        return parsed

    def to_object(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "service": self.service,
            "config": self.config,
            "checksum": self.checksum,
            "config_epoch": self.config_epoch,
            "issued_at": self.issued_at,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    def signed_bytes(self) -> bytes:
        """RFC 8785 canonical JSON of the envelope without ``signature``."""
        obj = self.to_object()
        del obj["signature"]
        return canonical(obj)


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes of ``value``; :class:`Rejected` ``malformed`` when it has
    none (an integer beyond +/-(2^53-1), a lone surrogate)."""
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, UnicodeEncodeError, ValueError, TypeError) as e:
        raise Rejected("malformed", f"envelope has no canonical JSON form: {e}") from None


def config_checksum(config: dict[str, Any]) -> str:
    """Lowercase hex SHA-256 of the canonical JSON of ``config``."""
    return hashlib.sha256(canonical(config)).hexdigest()


def parse_rfc3339(raw: str) -> datetime | None:
    """An RFC 3339 timestamp as an aware UTC datetime (fractions beyond
    microseconds are truncated), or ``None``; never raises. A valid timestamp
    whose UTC time falls outside years 1-9999 (``9999-12-31T23:59:59-23:59``)
    has no ``datetime`` and is ``None`` too, as on the Rust side."""
    if not isinstance(raw, str):
        return None
    m = _RFC3339.fullmatch(raw)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    micros = int((m.group(7) or "0")[:6].ljust(6, "0"))
    try:
        t = datetime(year, month, day, hour, minute, second, micros, tzinfo=UTC)
    except ValueError:
        return None
    if m.group(9):
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        if int(m.group(10)) > 23 or int(m.group(11)) > 59:
            return None
        try:
            t = t - offset if m.group(9) == "+" else t + offset
        except OverflowError:
            return None
    return t


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate member name {k[:40]!r}")
        out[k] = v
    return out


def _finite_float(raw: str) -> float:
    value = float(raw)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def _integer(raw: str) -> int | float:
    """Integers as the Rust side reads them (serde_json): within the i64/u64
    range an integer (beyond +/-(2^53-1) it then has no canonical form);
    outside it a double. RFC 8785 writes the double 1e20 as
    ``100000000000000000000``, so such text must be read back as a double."""
    value = int(raw)
    if -(2**63) <= value <= 2**64 - 1:
        return value
    return _finite_float(raw)


def _no_constant(raw: str) -> Any:
    raise ValueError(f"{raw} is not JSON")


def parse_strict(payload: bytes) -> Any:
    """JSON as RFC 8259 allows it and the Rust side parses it: UTF-8 only,
    no duplicate names, no NaN/Infinity, no numbers beyond the double range.
    Raises only ``UnicodeDecodeError`` or ``ValueError`` (nesting too deep
    for the interpreter's stack included)."""
    text = payload.decode("utf-8")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_finite_float,
            parse_int=_integer,
            parse_constant=_no_constant,
        )
    except RecursionError:
        # Nesting deeper than the interpreter's stack: refused like any other
        # malformed text, so callers catch one error type.
        raise ValueError("JSON nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text):
        # Python accepts a lone surrogate escape ("\ud800"); it is no Unicode
        # text, and serde_json refuses it. Checked only when one may be there.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("lone surrogate in a string") from None
    return value


def _invalid(field: str, reason: str) -> Rejected:
    return Rejected("invalid_field", f"member {field!r} is invalid: {reason}")


def _string(obj: dict[str, Any], field: str) -> str:
    value = obj[field]
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    return value


def parse(payload: bytes, max_len: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Envelope:
    """Step 1 of the contract: size, JSON, shape and member types."""
    if len(payload) > max_len:
        raise Rejected(
            "oversized", f"payload is {len(payload)} bytes, more than the {max_len}-byte limit"
        )
    try:
        obj = parse_strict(payload)
    except (UnicodeDecodeError, ValueError) as e:
        raise Rejected("not_json", f"payload is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise Rejected("not_object", "payload is not a JSON object")
    if obj.get("signature") in (None, ""):
        raise Rejected("unsigned", "payload has no signature")
    for name in obj:
        if name not in MEMBERS:
            raise Rejected("unknown_field", f"payload has an unknown member {name[:40]!r}")
    for name in MEMBERS:
        if name not in obj:
            raise Rejected("missing_field", f"payload lacks the {name!r} member")
    version = obj["version"]
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= MAX_SAFE_INTEGER
    ):
        raise _invalid("version", "must be an integer between 1 and 2^53-1")
    service = _string(obj, "service")
    if not _SERVICE.fullmatch(service):
        raise _invalid("service", "not a service name")
    config = obj["config"]
    if not isinstance(config, dict):
        raise _invalid("config", "must be an object")
    checksum = _string(obj, "checksum")
    if not _CHECKSUM.fullmatch(checksum):
        raise _invalid("checksum", "must be 64 lowercase hex characters")
    epoch = _string(obj, "config_epoch")
    if not _EPOCH.fullmatch(epoch):
        raise _invalid("config_epoch", "must be a hyphenated UUID")
    issued_at = _string(obj, "issued_at")
    if parse_rfc3339(issued_at) is None:
        raise _invalid("issued_at", "must be an RFC 3339 timestamp")
    key_id = _string(obj, "key_id")
    if not _KEY_ID.fullmatch(key_id):
        raise _invalid("key_id", "not a key id")
    signature = _string(obj, "signature")
    return Envelope(version, service, config, checksum, epoch, issued_at, key_id, signature)


def verify(envelope: Envelope, trusted: TrustedKeys) -> None:
    """Steps 3-6: trusted key by ``key_id``, signature encoding, checksum,
    Ed25519 over the canonical envelope. Raises :class:`Rejected`."""
    key = trusted.get(envelope.key_id)
    if key is None:
        raise Rejected("unknown_key", f"signed with key {envelope.key_id}, which is not trusted")
    expected = config_checksum(envelope.config)
    signed = envelope.signed_bytes()
    try:
        signature = base64.b64decode(envelope.signature.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise Rejected("bad_base64", "signature is not valid base64") from None
    if len(signature) != 64:
        raise Rejected(
            "bad_signature_length",
            f"signature has {len(signature)} bytes, Ed25519 signatures have 64",
        )
    if not hmac.compare_digest(expected.encode(), envelope.checksum.encode()):
        raise Rejected("checksum_mismatch", "checksum does not match the config")
    try:
        key.verify(signature, signed)
    except InvalidSignature:
        raise Rejected("bad_signature", "signature does not verify") from None
