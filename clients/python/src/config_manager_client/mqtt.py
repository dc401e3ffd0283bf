"""A small asyncio adapter over paho-mqtt's threaded loop, working with both
paho 1.6 (what TARS gets through ``asyncio-mqtt==0.16.2``, which pins
``paho-mqtt<2``) and paho 2.x.

paho's own network thread connects, reconnects with backoff (1 s doubling to
30 s) and keeps the session alive; it never blocks the event loop, so a broker
that is down at start or later never delays ``get_config``. Received payloads
are handed to the event loop with ``call_soon_threadsafe``; the subscription is
renewed on every (re)connect (clean sessions).

Applied-state reports go out through the same connection: ``set_will`` before
``start`` (paho sends the will with every CONNECT, so a will re-set later
applies from the next reconnect), ``publish_retained`` while connected, and
``on_connect`` tells the library to say again what it runs after a reconnect
(the broker may have published the will meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from .mqtt_url import MqttEndpoint

log = logging.getLogger("config_manager_client")

MIN_BACKOFF = 1
MAX_BACKOFF = 30
#: ``TCP_NODELAY`` on the connection (off only to measure what it is for).
NODELAY = True


def _code(rc: Any) -> int:
    """paho 1.x passes ints, 2.x ``ReasonCode`` objects."""
    value = getattr(rc, "value", rc)
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _new_client(client_id: str) -> paho.Client:
    version = getattr(paho, "CallbackAPIVersion", None)
    if version is not None:  # paho 2.x: ask for the v2 callback signatures
        return paho.Client(
            version.VERSION2, client_id=client_id, clean_session=True, protocol=paho.MQTTv311
        )
    return paho.Client(client_id=client_id, clean_session=True, protocol=paho.MQTTv311)


class MqttSubscriber:
    """Subscribes to one topic at QoS 1 and delivers payloads to ``on_payload``
    on the event loop."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        topic: str,
        client_id: str,
        keepalive: int,
        on_payload: Callable[[bytes], None],
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._topic = topic
        self._on_connect = on_connect
        self._keepalive = keepalive
        self._on_payload = on_payload
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = False
        self._client = _new_client(client_id)
        if endpoint.username is not None:
            self._client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            context = ssl.create_default_context(cafile=endpoint.ca_file)
            self._client.tls_set_context(context)
        self._client.reconnect_delay_set(MIN_BACKOFF, MAX_BACKOFF)
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._message
        self._client.on_publish = self._published

    def set_will(self, topic: str, payload: bytes) -> None:
        """The retained QoS 1 message the broker publishes if this
        connection ends without a DISCONNECT; sent with the next CONNECT."""
        self._client.will_set(topic, payload, qos=1, retain=True)

    def publish_retained(self, topic: str, payload: bytes) -> Any | None:
        """Queues a retained QoS 1 message if connected; returns paho's
        ``MQTTMessageInfo``, or ``None`` when it could not be queued (not
        connected, or paho refused it): the caller retries after the next
        connect."""
        if not self.connected:
            return None
        info = self._client.publish(topic, payload, qos=1, retain=True)
        return info if info.rc == paho.MQTT_ERR_SUCCESS else None

    def start(self) -> None:
        """Starts the network thread; connecting (and retrying) happens there."""
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self._endpoint.host, self._endpoint.port, self._keepalive)
        self._client.loop_start()

    async def stop(self) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self.connected = False

    # paho callbacks: run on paho's thread. The signatures accept both the
    # 1.x and the 2.x (CallbackAPIVersion.VERSION2) forms.
    def _connected(
        self, client: paho.Client, _userdata: Any, _flags: Any, rc: Any, _props: Any = None
    ) -> None:
        if _code(rc) != 0:
            log.warning("MQTT broker refused the connection (code %s); retrying", _code(rc))
            return
        self.connected = True
        # Otherwise the applied-state report, written right after the PUBACK
        # of the update it reports, waits for the broker's delayed ACK of that
        # PUBACK (Nagle): about 40 ms per report.
        sock = client.socket()
        if sock is not None and NODELAY:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.info("connected to the MQTT broker, subscribing to %s", self._topic)
        client.subscribe(self._topic, qos=1)
        if self._on_connect is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # event loop closed while stopping
                self._loop.call_soon_threadsafe(self._on_connect)

    def _published(self, client: paho.Client, _userdata: Any, *_args: Any) -> None:
        """The broker's PUBACK of a report arrived: acknowledge that segment
        now instead of after the kernel's delayed-ACK timer. Until the broker
        sees that ACK, Nagle's algorithm (mosquitto's default, no
        ``set_tcp_nodelay``) holds the next config message it forwards to
        us: about 40 ms per update otherwise (docs/performance.md)."""
        quickack(client.socket())

    def _disconnected(self, _client: paho.Client, _userdata: Any, *args: Any) -> None:
        self.connected = False
        rc = args[1] if len(args) >= 2 else (args[0] if args else 0)
        if _code(rc) != 0:
            log.warning("MQTT connection lost (code %s); reconnecting", _code(rc))

    def _message(self, _client: paho.Client, _userdata: Any, message: Any) -> None:
        if message.topic != self._topic or self._loop is None:
            return
        payload = bytes(message.payload)
        with contextlib.suppress(RuntimeError):  # event loop closed while stopping
            self._loop.call_soon_threadsafe(self._on_payload, payload)


def quickack(sock: Any) -> None:
    """Sends a pending delayed ACK on ``sock`` now (Linux ``TCP_QUICKACK``;
    the flag is not sticky, so it is set again after each PUBACK). A no-op
    where the option does not exist or the socket is gone."""
    option = getattr(socket, "TCP_QUICKACK", None)
    if sock is None or option is None:
        return
    with contextlib.suppress(OSError, AttributeError, ValueError):
        sock.setsockopt(socket.IPPROTO_TCP, option, 1)


def default_client_id(service: str) -> str:
    """Unique per process, so two instances never disconnect each other."""
    return f"{service}-cfg-{os.urandom(4).hex()}"
