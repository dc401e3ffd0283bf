"""Trusted Ed25519 public keys, found the way TARS services find them.

Several keys may be trusted at once (one PEM text with several ``PUBLIC KEY``
blocks), so a key rollover does not stop updates.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from .errors import NoTrustedKeyError, SettingsError

#: Files TARS mounts the key at, checked first (TARS' own order).
KEY_FILES = (
    Path("/run/secrets/signature_public_key.pem"),
    Path("/etc/tars/secrets/signature_public_key.pem"),
)
_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", re.S)


def key_id(key: Ed25519PublicKey) -> str:
    """First 16 hex characters of SHA-256 over the 32 raw public-key bytes."""
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class TrustedKeys:
    """Public keys whose signatures are accepted, by key id."""

    def __init__(self, keys: list[Ed25519PublicKey]) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {key_id(k): k for k in keys}

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    @property
    def ids(self) -> list[str]:
        return sorted(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def from_pem(cls, text: str, origin: str) -> TrustedKeys:
        """Every ``PUBLIC KEY`` block of ``text`` (``\\n``-escaped text as in
        ``.env`` files is accepted). ``origin`` names the source in errors."""
        text = text.replace("\\n", "\n")
        keys: list[Ed25519PublicKey] = []
        for block in _BLOCK.findall(text):
            try:
                key = load_pem_public_key(block.encode())
            except (ValueError, TypeError, UnsupportedAlgorithm):
                raise SettingsError(f"{origin}: not a valid PEM public key") from None
            if not isinstance(key, Ed25519PublicKey):
                raise SettingsError(f"{origin}: the key is not an Ed25519 key")
            keys.append(key)
        if not keys:
            raise SettingsError(f'{origin}: no "-----BEGIN PUBLIC KEY-----" block found')
        return cls(keys)


def _from_value(value: str, origin: str) -> TrustedKeys:
    """PEM text, or comma-separated paths of PEM files (like the Rust client)."""
    if "-----BEGIN" in value.replace("\\n", "\n"):
        return TrustedKeys.from_pem(value, origin)
    texts = []
    for part in value.split(","):
        path = part.strip()
        if not path:
            continue
        try:
            texts.append(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise SettingsError(f"{origin}: cannot read {path}: {e.strerror}") from None
    return TrustedKeys.from_pem("\n".join(texts), origin)


def load_trusted_keys(
    explicit: str | None,
    env: Mapping[str, str] = os.environ,
    files: tuple[Path, ...] = KEY_FILES,
) -> TrustedKeys:
    """The ``signature_public_key`` argument if given (PEM or paths), else the
    first of: the mounted files, ``CONFIG_SIGNATURE_PUBLIC_KEY_B64`` (base64 of
    a PEM), ``CONFIG_SIGNATURE_PUBLIC_KEY`` (PEM or paths). None found is an
    error: a client without a key would refuse every update."""
    if explicit:
        return _from_value(explicit, "signature_public_key")
    for path in files:
        if path.is_file():
            try:
                return TrustedKeys.from_pem(path.read_text(encoding="utf-8"), str(path))
            except OSError as e:
                raise SettingsError(f"{path}: cannot read: {e.strerror}") from None
    b64 = env.get("CONFIG_SIGNATURE_PUBLIC_KEY_B64", "").strip()
    if b64:
        try:
            text = base64.b64decode(b64, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise SettingsError("CONFIG_SIGNATURE_PUBLIC_KEY_B64 is not base64 of a PEM") from None
        return TrustedKeys.from_pem(text, "CONFIG_SIGNATURE_PUBLIC_KEY_B64")
    pem = env.get("CONFIG_SIGNATURE_PUBLIC_KEY", "").strip()
    if pem:
        return _from_value(pem, "CONFIG_SIGNATURE_PUBLIC_KEY")
    raise NoTrustedKeyError(
        "no signature public key: set CONFIG_SIGNATURE_PUBLIC_KEY (PEM or path), "
        "CONFIG_SIGNATURE_PUBLIC_KEY_B64, or mount "
        + " or ".join(str(p) for p in files)
        + "; without it every configuration update would be refused"
    )
