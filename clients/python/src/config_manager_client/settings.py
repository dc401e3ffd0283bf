"""Client settings: keyword arguments of :class:`ConfigLibrary` first, then
the environment (read once, at construction).

| variable | meaning | default |
|---|---|---|
| ``CONFIG_MANAGER_URL`` | manager base URL for the start-up load | none (no REST) |
| ``CONFIG_API_TOKEN`` | ``X-API-Token``; a service-scoped one brings secrets | none |
| ``MQTT_URL`` | ``mqtt://[user:pass@]host:port`` or ``mqtts://…`` | none (no live updates) |
| ``MQTT_CA_FILE`` | CA PEM for ``mqtts://`` | system roots |
| ``CONFIG_SIGNATURE_PUBLIC_KEY`` / ``_B64`` | trusted key(s), see :mod:`keys` | required |
| ``CONFIG_CACHE_DIR`` | directory of the on-disk copy ``<svc>.json`` | see below |
| ``CONFIG_CACHE_PATH`` | this one service's on-disk copy (overrides the dir) | none |
| ``CONFIG_PINNED_ENV`` | comma-separated variables that win over the manager | none |
| ``CONFIG_MAX_AGE_SECS`` / ``CONFIG_MAX_SKEW_SECS`` | freshness window | 300 / 60 |
| ``CONFIG_ACCEPT_STALE_INITIAL`` | ``1``: apply a stale first message | 0 |
| ``CONFIG_MAX_PAYLOAD_BYTES`` | larger payloads are refused unparsed | 262144 |
| ``CONFIG_INSTANCE_ID`` | id in applied-state reports | host name + ``-`` + service |
| ``CONFIG_REPORT_APPLIED`` | ``0``: publish no applied-state reports (and no will) | 1 |

``CONFIG_CACHE_DIR`` defaults to ``/var/lib/tars-config`` if it exists or can be
created and written (mount a volume there), else ``$XDG_STATE_HOME/tars-config``,
else ``~/.local/state/tars-config``.

TARS' ``CONFIG_LKG_CACHE_PATH``, ``LKG_HMAC_KEY_BASE64``, ``LKG_HMAC_KEY_ID``
and ``CONFIG_DB_PATH`` (the manager's files and the key that seals them) are
not read: when present, one warning at start names them (docs/adopting.md).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from . import envelope as env
from .errors import SettingsError
from .freshness import FreshnessPolicy
from .mqtt_url import MqttEndpoint, parse_mqtt_url
from .report import default_instance_id, host_name, parse_instance_id

log = logging.getLogger("config_manager_client")

#: The manager's (and old TARS library's) variables a client no longer reads.
IGNORED_VARIABLES = (
    "CONFIG_LKG_CACHE_PATH",
    "LKG_HMAC_KEY_BASE64",
    "LKG_HMAC_KEY_ID",
    "CONFIG_DB_PATH",
)
#: The default cache directory: a volume mounted here survives a container
#: restart (decision 3 of docs/adopting.md).
SYSTEM_CACHE_DIR = Path("/var/lib/tars-config")
#: Cache directory name under the user's state directory.
CACHE_DIR_NAME = "tars-config"
#: Most variables in ``CONFIG_PINNED_ENV``.
MAX_PINNED = 64
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


@dataclass(frozen=True)
class ClientSettings:
    service: str
    manager_url: str | None = None
    api_token: str | None = field(default=None, repr=False)
    mqtt: MqttEndpoint | None = None
    cache_path: Path | None = None
    policy: FreshnessPolicy = field(default_factory=FreshnessPolicy)
    max_payload_bytes: int = env.DEFAULT_MAX_PAYLOAD_BYTES
    rest_timeout: float = 5.0
    mqtt_keepalive: int = 30
    #: Id of this instance in applied-state reports (always set: the
    #: configured one or the default for this host).
    instance_id: str = ""
    #: Publish applied-state reports and an ``offline`` last will.
    report_applied: bool = True
    #: Variables whose inherited value wins over the manager's.
    pinned_env: frozenset[str] = frozenset()
    #: TARS/manager variables present in the environment and not read.
    ignored: tuple[str, ...] = ()


def _get(envmap: Mapping[str, str], name: str) -> str | None:
    value = envmap.get(name, "").strip()
    return value or None


def _secs(envmap: Mapping[str, str], name: str, default: int) -> timedelta:
    raw = _get(envmap, name)
    if raw is None:
        return timedelta(seconds=default)
    if not raw.isdigit():
        raise SettingsError(f"{name} is invalid: expected whole seconds")
    return timedelta(seconds=int(raw))


def _writable_dir(path: Path) -> bool:
    """``path`` exists or can be created, and a file can be created in it."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def default_cache_dir(envmap: Mapping[str, str], system_dir: Path | None = None) -> Path:
    """``/var/lib/tars-config`` when it exists or can be created and written
    (mount a volume there to keep the copy across container restarts), else
    ``$XDG_STATE_HOME/tars-config``, else ``~/.local/state/tars-config``."""
    system_dir = SYSTEM_CACHE_DIR if system_dir is None else system_dir
    if _writable_dir(system_dir):
        return system_dir
    state = _get(envmap, "XDG_STATE_HOME")
    if state is not None:
        return Path(state) / CACHE_DIR_NAME
    home = _get(envmap, "HOME")
    base = Path(home) if home is not None else Path.home()
    return base / ".local" / "state" / CACHE_DIR_NAME


def default_cache_path(
    service: str, envmap: Mapping[str, str], system_dir: Path | None = None
) -> Path:
    """``CONFIG_CACHE_DIR/<service>.json``, the directory defaulting as
    :func:`default_cache_dir` says."""
    configured = _get(envmap, "CONFIG_CACHE_DIR")
    directory = Path(configured) if configured else default_cache_dir(envmap, system_dir)
    return directory / f"{service}.json"


def parse_pinned(raw: str | None) -> frozenset[str]:
    """``CONFIG_PINNED_ENV``: comma-separated variable names (blanks around
    names and empty items ignored); :class:`SettingsError` for a bad name."""
    if raw is None:
        return frozenset()
    names = [n.strip() for n in raw.split(",") if n.strip()]
    for n in names:
        if not _VARIABLE.fullmatch(n):
            raise SettingsError(
                "CONFIG_PINNED_ENV is invalid: expected comma-separated variable names "
                "([A-Za-z_][A-Za-z0-9_]*, at most 128 characters)"
            )
    if len(set(names)) > MAX_PINNED:
        raise SettingsError(f"CONFIG_PINNED_ENV is invalid: at most {MAX_PINNED} names")
    return frozenset(names)


def warn_ignored(service: str, ignored: tuple[str, ...]) -> None:
    """The one start-up line naming the TARS variables this client ignores."""
    if ignored:
        log.warning(
            "service=%s ignores %s: this client never opens the manager's database or "
            "LKG file and needs no shared HMAC key; it keeps its own verified copy "
            "(CONFIG_CACHE_DIR / CONFIG_CACHE_PATH, see docs/adopting.md)",
            service,
            ", ".join(ignored),
        )


def build_settings(
    service: str,
    *,
    manager_url: str | None = None,
    api_token: str | None = None,
    mqtt_url: str | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    instance_id: str | None = None,
    envmap: Mapping[str, str] = os.environ,
) -> ClientSettings:
    if not env._SERVICE.fullmatch(service):
        raise SettingsError("service_name is invalid: expected ^[a-z][a-z0-9-]*$, at most 64")
    url = manager_url or _get(envmap, "CONFIG_MANAGER_URL")
    mqtt_text = mqtt_url or _get(envmap, "MQTT_URL")
    mqtt = parse_mqtt_url(mqtt_text, _get(envmap, "MQTT_CA_FILE")) if mqtt_text else None
    stale = _get(envmap, "CONFIG_ACCEPT_STALE_INITIAL") or "0"
    if stale not in _FLAGS:
        raise SettingsError("CONFIG_ACCEPT_STALE_INITIAL is invalid: expected 1 or 0")
    report = _get(envmap, "CONFIG_REPORT_APPLIED") or "1"
    if report not in _FLAGS:
        raise SettingsError("CONFIG_REPORT_APPLIED is invalid: expected 1 or 0")
    if instance_id is not None:
        instance = parse_instance_id(instance_id.strip(), "instance_id")
    elif (from_env := _get(envmap, "CONFIG_INSTANCE_ID")) is not None:
        instance = parse_instance_id(from_env)
    else:
        instance = default_instance_id(host_name(), service)
    max_payload = _get(envmap, "CONFIG_MAX_PAYLOAD_BYTES") or str(env.DEFAULT_MAX_PAYLOAD_BYTES)
    if not max_payload.isdigit() or int(max_payload) < 1024:
        raise SettingsError("CONFIG_MAX_PAYLOAD_BYTES is invalid: expected bytes >= 1024")
    cache = cache_path or _get(envmap, "CONFIG_CACHE_PATH")
    pinned = parse_pinned(_get(envmap, "CONFIG_PINNED_ENV"))
    ignored = tuple(v for v in IGNORED_VARIABLES if v in envmap)
    return ClientSettings(
        service=service,
        manager_url=url.rstrip("/") if url else None,
        api_token=api_token or _get(envmap, "CONFIG_API_TOKEN"),
        mqtt=mqtt,
        cache_path=Path(cache) if cache else default_cache_path(service, envmap),
        policy=FreshnessPolicy(
            max_age=_secs(envmap, "CONFIG_MAX_AGE_SECS", 300),
            max_skew=_secs(envmap, "CONFIG_MAX_SKEW_SECS", 60),
            accept_stale_initial=stale in ("1", "true", "yes"),
        ),
        max_payload_bytes=int(max_payload),
        instance_id=instance,
        report_applied=_FLAGS[report],
        pinned_env=pinned,
        ignored=ignored,
    )
