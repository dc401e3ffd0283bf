#!/usr/bin/env python3
"""PATCH acknowledged → Python callback latency over N changes.

Starts mosquitto and the config-manager binary on free loopback ports (the
test harness in ``tests/harness.py``), a ``ConfigLibrary`` for tts-worker with
a callback, then sends N sequential PATCHes of ``volume_percent``. For each it
records when the HTTP answer arrived (acknowledged) and when the callback ran
with that value, both in the same asyncio loop with ``time.perf_counter``.
The PATCH runs on a worker thread and is timed there; a callback that
runs before the PATCH answer was read counts as 0.

    .venv-client/bin/python clients/python/bench/latency.py [--count 500] [--bin PATH]
        [--no-quickack] [--no-nodelay]

mosquitto runs on its default settings (no ``set_tcp_nodelay``), as on TARS'
robots. ``--no-quickack`` / ``--no-nodelay`` turn off the client's
``TCP_QUICKACK`` after each PUBACK / its ``TCP_NODELAY``, to measure what
they are for. Figures are printed, never asserted.

Default binary: target/dist/config-manager (`make dist`, the benchmark build)
if built, else target/release, else target/debug.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import httpx  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from config_manager_client import ConfigLibrary  # noqa: E402
from harness import REPO, TTS_TOKEN, WRITE_TOKEN, Broker, Manager, wait_until  # noqa: E402


class Tts(BaseModel):
    volume_percent: int = 100


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(count: int, tmp: Path) -> None:
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    broker = Broker(tmp).start()
    (tmp / "manager").mkdir()
    manager = Manager(tmp / "manager", broker.url).start()
    try:
        lib = ConfigLibrary(
            "tts-worker",
            cache_path=tmp / "cache.json",
            mqtt_url=broker.url,
            signature_public_key=manager.public_key(),
            manager_url=manager.base,
            api_token=TTS_TOKEN,
            environ={},
        )
        await lib.initialize()
        arrived: dict[int, float] = {}

        def on_change(cfg: Tts) -> None:
            arrived.setdefault(cfg.volume_percent, time.perf_counter())

        await lib.subscribe_updates(on_change, Tts)
        await wait_until(lambda: lib.mqtt_connected, "MQTT connection")
        after_ack: list[float] = []
        after_send: list[float] = []
        round_trip: list[float] = []
        early = 0
        version = manager.version()
        # The PATCHes run on another thread, so the acknowledgement is timed
        # when the answer is read, independent of the event loop's scheduling.
        with httpx.Client(base_url=manager.base + "/api/config") as http:

            def patch(volume: int, version: int) -> tuple[float, float, int]:
                sent = time.perf_counter()
                r = http.patch(
                    "/services/tts-worker",
                    headers={"X-API-Token": WRITE_TOKEN},
                    json={"config": {"volume_percent": volume}, "version": version},
                )
                acked = time.perf_counter()
                r.raise_for_status()
                return sent, acked, int(r.json()["version"])

            for i in range(count):
                volume = (i * 37) % 101  # differs from the previous change
                arrived.pop(volume, None)
                sent, acked, version = await asyncio.to_thread(patch, volume, version)
                await wait_until(lambda v=volume: v in arrived, f"callback {i}")
                cb = arrived[volume]
                early += cb < acked
                after_ack.append(max(0.0, cb - acked) * 1000)
                after_send.append((cb - sent) * 1000)
                round_trip.append((acked - sent) * 1000)
        await lib.close()
        snap = lib.counters.snapshot()
        print(f"binary: {os.environ.get('CONFIG_MANAGER_BIN')}")
        print(f"changes: {count}, applied {snap['applied']}, rejected {snap['rejected_total']}")
        print(
            f"PATCH acknowledged -> Python callback: p50 {statistics.median(after_ack):.3f} ms, "
            f"p99 {pct(after_ack, 99):.3f} ms, max {max(after_ack):.3f} ms "
            f"({early} callbacks ran before the PATCH answer was read)"
        )
        print(
            f"PATCH sent -> Python callback: p50 {statistics.median(after_send):.3f} ms, "
            f"p99 {pct(after_send, 99):.3f} ms"
        )
        print(
            f"PATCH round trip alone: p50 {statistics.median(round_trip):.3f} ms, "
            f"p99 {pct(round_trip, 99):.3f} ms"
        )
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        manager.kill()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--bin", help="config-manager binary")
    parser.add_argument("--no-quickack", action="store_true", help="no TCP_QUICKACK on PUBACK")
    parser.add_argument("--no-nodelay", action="store_true", help="no TCP_NODELAY")
    args = parser.parse_args()
    from config_manager_client import mqtt

    if args.no_quickack:
        mqtt.quickack = lambda _sock: None
    if args.no_nodelay:
        mqtt.NODELAY = False
    print(f"client TCP_QUICKACK: {not args.no_quickack}, TCP_NODELAY: {not args.no_nodelay}")
    candidates = [REPO / f"target/{p}/config-manager" for p in ("dist", "release", "debug")]
    default = next((c for c in candidates if c.exists()), candidates[-1])
    os.environ["CONFIG_MANAGER_BIN"] = str(args.bin or default)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.count, Path(tmp)))


if __name__ == "__main__":
    main()
