"""A service process for test_applied.py's last-will test: a ConfigLibrary
configured from the environment (CONFIG_INSTANCE_ID, MQTT_URL, ...) that
runs until it is killed."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from config_manager_client import ConfigLibrary


class Tts(BaseModel):
    volume_percent: int = 100


async def main() -> None:
    lib = ConfigLibrary("tts-worker")
    await lib.initialize()
    await lib.subscribe_updates(lambda _c: None, Tts)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
