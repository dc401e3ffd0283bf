#!/usr/bin/env python3
"""A TARS-style tts-worker configuration adapter on config-manager.

Shaped like ``apps/tts-worker/.../config_lib_adapter.py`` in TARS: the worker
reads module-level settings (``config.py`` constants there, the globals below
here); the adapter loads them at start and rewrites them on every verified
update. Adopting this package is an import-line change in that adapter.

Run it against a manager (``make run``) and a broker::

    export CONFIG_MANAGER_URL=http://127.0.0.1:8081
    export CONFIG_API_TOKEN=...           # best a service-scoped token (brings secrets)
    export MQTT_URL=mqtt://127.0.0.1:1883
    export CONFIG_SIGNATURE_PUBLIC_KEY="$(grep ^CONFIG_SIGNATURE_PUBLIC_KEY= .env | cut -d'"' -f2)"
    python clients/python/examples/tts_worker.py

then change something (``curl -X PATCH ... volume_percent``) and watch it print.
Stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from pydantic import BaseModel

from config_manager_client import ConfigLibrary


class TTSWorkerConfig(BaseModel):
    """The tts-worker fields TARS' adapter copies (schema: tts-worker.json)."""

    piper_voice: str = "en_US-lessac-medium"
    tts_provider: str = "piper"
    tts_streaming: bool = False
    tts_pipeline: bool = True
    tts_simpleaudio: bool = False
    tts_concurrency: int = 1
    tts_aggregate: bool = True
    tts_aggregate_debounce_ms: int = 150
    tts_aggregate_single_wav: bool = True
    tts_wake_cache_enable: bool = True
    tts_wake_cache_dir: str = "data/tts-cache"
    tts_wake_cache_max: int = 16
    eleven_api_base: str = "https://api.elevenlabs.io/v1"
    eleven_api_key: str = ""  # as TARS declares it
    eleven_voice_id: str = ""
    eleven_model_id: str = "eleven_multilingual_v2"
    eleven_optimize_streaming: int = 0
    volume_percent: int = 100


# ---- the worker's module-level settings (TARS: tts_worker/config.py) ----
PIPER_VOICE = "en_US-lessac-medium"
TTS_PROVIDER = "piper"
TTS_STREAMING = False
TTS_PIPELINE = True
TTS_SIMPLEAUDIO = False
TTS_CONCURRENCY = 1
TTS_AGGREGATE = True
TTS_AGGREGATE_DEBOUNCE_MS = 150
TTS_AGGREGATE_SINGLE_WAV = True
TTS_WAKE_CACHE_ENABLE = True
TTS_WAKE_CACHE_DIR = "data/tts-cache"
TTS_WAKE_CACHE_MAX = 16
ELEVEN_API_BASE = "https://api.elevenlabs.io/v1"
ELEVEN_API_KEY: str | None = None
ELEVEN_VOICE_ID = ""
ELEVEN_MODEL_ID = "eleven_multilingual_v2"
ELEVEN_OPTIMIZE_STREAMING = 0
VOLUME_PERCENT = 100

# ---- the adapter (TARS: config_lib_adapter.py) ----
_library: ConfigLibrary | None = None
_callbacks: list[Callable[[TTSWorkerConfig], None]] = []


def _apply(cfg: TTSWorkerConfig) -> None:
    """Copies every field into the module-level constant of the same name."""
    module = sys.modules[__name__]
    for name in TTSWorkerConfig.model_fields:
        setattr(module, name.upper(), getattr(cfg, name))


def _on_change(cfg: TTSWorkerConfig) -> None:
    _apply(cfg)
    for callback in _callbacks:
        callback(cfg)


def register_callback(callback: Callable[[TTSWorkerConfig], None]) -> None:
    _callbacks.append(callback)


async def initialize_and_subscribe(mqtt_url: str | None = None) -> ConfigLibrary:
    global _library
    _library = ConfigLibrary(service_name="tts-worker", mqtt_url=mqtt_url)
    await _library.initialize()
    _apply(await _library.get_config(TTSWorkerConfig))
    await _library.subscribe_updates(_on_change, TTSWorkerConfig)
    return _library


async def close() -> None:
    if _library is not None:
        await _library.close()


# ---- a stand-in for the worker's main loop ----
def _show(prefix: str) -> None:
    key = "set" if ELEVEN_API_KEY else "not set"
    print(
        f"{prefix}: provider={TTS_PROVIDER} voice={PIPER_VOICE} volume={VOLUME_PERCENT} "
        f"streaming={TTS_STREAMING} eleven_api_key={key}",
        flush=True,
    )


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    library = await initialize_and_subscribe()
    _show(f"started from {library.source.value}")
    register_callback(lambda _cfg: _show("updated"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print(f"counters: {library.counters.snapshot()}", flush=True)
    await close()


if __name__ == "__main__":
    asyncio.run(main())
