"""``MQTT_URL`` parsing, the grammar of the Rust client's ``mqtt_url.rs``:
``mqtt://[user[:pass]@]host[:port]`` (port 1883) or ``mqtts://…`` (TLS, 8883).
User and password may be %-escaped; IPv6 hosts in brackets. Errors never
contain the password."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from .errors import SettingsError


@dataclass(frozen=True)
class MqttEndpoint:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None


def _decode(part: str) -> str:
    raw = part.encode("utf-8")
    i = 0
    while (i := raw.find(b"%", i)) != -1:
        hexpart = raw[i + 1 : i + 3]
        if len(hexpart) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in hexpart):
            raise SettingsError("MQTT URL user or password has an invalid %-escape")
        i += 3
    try:
        return unquote_to_bytes(part).decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError("MQTT URL user or password has an invalid %-escape") from None


def parse_mqtt_url(url: str, ca_file: str | None = None) -> MqttEndpoint:
    url = url.strip()
    if url.startswith("mqtts://"):
        tls, rest = True, url[len("mqtts://") :]
    elif url.startswith("mqtt://"):
        tls, rest = False, url[len("mqtt://") :]
    else:
        raise SettingsError("MQTT URL must start with mqtt:// or mqtts://")
    rest = rest.removesuffix("/")
    if any(c in rest for c in "/?#"):
        raise SettingsError("MQTT URL must not have a path, query or fragment")
    userinfo, sep, hostport = rest.rpartition("@")
    username = password = None
    if sep:
        user, colon, pw = userinfo.partition(":")
        username = _decode(user) or None
        password = _decode(pw) if colon else None
    port_text: str | None
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        if not bracket:
            raise SettingsError("MQTT URL has no host")
        if after and not after.startswith(":"):
            raise SettingsError("MQTT URL port is not a number between 1 and 65535")
        port_text = after[1:] if after else None
    else:
        host, colon, p = hostport.rpartition(":")
        if not colon:
            host, port_text = hostport, None
        else:
            port_text = p
    if not host:
        raise SettingsError("MQTT URL has no host")
    port = 8883 if tls else 1883
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise SettingsError("MQTT URL port is not a number between 1 and 65535")
        port = int(port_text)
    return MqttEndpoint(host, port, username, password, tls, ca_file)
