"""A Python service for the manager's end-to-end applied-state tests
(applied_clients.rs) and the latency figure (examples/applied_latency.rs): a
ConfigLibrary for tts-worker configured from the environment
(CONFIG_INSTANCE_ID, MQTT_URL, CONFIG_MANAGER_URL, CONFIG_API_TOKEN,
CONFIG_SIGNATURE_PUBLIC_KEY, CONFIG_CACHE_PATH), whose model refuses a volume
above 150 (so a valid config can still be rejected by the service's own
model). Prints "ready" once initialized and runs until killed."""

from __future__ import annotations

import asyncio
import sys

from config_manager_client import ConfigLibrary
from pydantic import BaseModel, ConfigDict, Field


class Tts(BaseModel):
    model_config = ConfigDict(extra="ignore")
    volume_percent: int = Field(default=100, le=150)


async def main() -> None:
    lib = ConfigLibrary("tts-worker")
    await lib.initialize()
    await lib.subscribe_updates(lambda _c: None, Tts)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
