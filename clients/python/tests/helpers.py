"""Shared test helpers: the golden vectors and signing with the test keys."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from config_manager_client import key_id

REPO = Path(__file__).resolve().parents[3]
VECTORS = REPO / "contracts" / "vectors" / "envelopes.json"
# RFC 8032 section 7.1 TEST 1: public knowledge, the key of contracts/examples.
TEST_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
EPOCH_A = "5b0c3f0e-8a51-4c8e-9a43-7f6d2b1e0a01"
EPOCH_B = "9e2d7c41-1f3b-4a5e-8c6d-0b1a2c3d4e5f"


def trusted_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(TEST_SEED)


def public_pem(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def iso(t: datetime) -> str:
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def sign(
    config: dict[str, Any],
    *,
    version: int,
    issued: datetime,
    epoch: str = EPOCH_A,
    service: str = "tts-worker",
    key: Ed25519PrivateKey | None = None,
) -> bytes:
    """An envelope signed the way the manager signs (independent of the client)."""
    import hashlib

    key = key or trusted_key()
    msg: dict[str, Any] = {
        "version": version,
        "service": service,
        "config": config,
        "checksum": hashlib.sha256(rfc8785.dumps(config)).hexdigest(),
        "config_epoch": epoch,
        "issued_at": iso(issued),
        "key_id": key_id(key.public_key()),
    }
    msg["signature"] = base64.b64encode(key.sign(rfc8785.dumps(msg))).decode()
    return bytes(rfc8785.dumps(msg))
