"""The service's own copy of its last verified configuration on disk, read at
start-up when the manager cannot be reached.

Integrity without a new secret: the file holds the last *signed envelope*
the service verified (written after every applied update, and once after a
REST load, when the retained message of that version arrives). Reading it
repeats the signature check with the trusted public keys, so an edited file is
refused. The envelope never carries a secret (the manager leaves secrets out
of MQTT payloads), so no plaintext secret is ever written.

The file is replaced atomically (temporary file in the same directory,
``fsync``, ``os.replace``) with mode 0600.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

from . import envelope as env
from .keys import TrustedKeys

log = logging.getLogger("config_manager_client")

FORMAT = 1


def write(path: Path, envelope: env.Envelope) -> None:
    """Atomically replaces ``path`` with ``envelope`` (blocking I/O)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({"format": FORMAT, "envelope": envelope.to_object()}, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read(path: Path, service: str, trusted: TrustedKeys) -> env.Envelope:
    """The verified envelope in ``path``; raises :class:`envelope.Rejected`
    (label ``cache_*`` or the envelope check that failed) or ``OSError``."""
    data = path.read_bytes()
    return parse(data, str(path), service, trusted)


def parse(data: bytes, name: str, service: str, trusted: TrustedKeys) -> env.Envelope:
    """The verified envelope in the bytes of a cache file; raises only
    :class:`envelope.Rejected` (the file is untrusted input: any content,
    deep nesting or out-of-range timestamps included, is a rejection)."""
    try:
        doc = env.parse_strict(data)
    except (UnicodeDecodeError, ValueError):
        raise env.Rejected("cache_unreadable", f"{name} is not JSON") from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != FORMAT
        or not isinstance(doc.get("envelope"), dict)
    ):
        raise env.Rejected("cache_unreadable", f"{name} is not a cache file of format {FORMAT}")
    try:
        payload = json.dumps(doc["envelope"], ensure_ascii=False).encode()
    except (ValueError, RecursionError, UnicodeEncodeError):
        raise env.Rejected("cache_unreadable", f"{name} holds no envelope") from None
    envelope = env.parse(payload, max(len(payload), env.DEFAULT_MAX_PAYLOAD_BYTES))
    if envelope.service != service:
        raise env.Rejected("wrong_service", f"{name} holds the config of {envelope.service}")
    env.verify(envelope, trusted)
    return envelope
