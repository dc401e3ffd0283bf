#!/usr/bin/env python3
"""Signed update published → the client's ``applied`` report received, per client.

Client-side share of the "applied by every instance" loop, without the
manager: starts mosquitto on a free loopback port (``tests/harness.py``), then
one client process at a time — the Rust ``example_service`` and the Python
``tests/child_client.py`` — each with its own ``CONFIG_INSTANCE_ID``. For each
of N versions it publishes a signed retained envelope (the test key of
``contracts/examples``) and times, with ``time.perf_counter`` in this process,
until that instance's ``applied`` report for the version arrives on
``system/config/tts-worker/applied/+``. A pause between updates (``--gap``)
stands for config changes being rare (and lets TCP acknowledge everything).

    cargo build -p config-manager-client --example example_service
    .venv-client/bin/python clients/python/bench/applied_latency.py [--count 300] [--gap 0.05]

``--rust-bin`` picks another build of the example (default: the debug one).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import paho.mqtt.client as paho  # noqa: E402

from harness import REPO, Broker  # noqa: E402
from helpers import public_pem, sign, trusted_key  # noqa: E402

REPORTS = "system/config/tts-worker/applied/+"


def new_client() -> paho.Client:
    version = getattr(paho, "CallbackAPIVersion", None)
    return paho.Client(version.VERSION2) if version else paho.Client()


def measure(
    name: str, cmd: list[str], broker: Broker, workdir: Path, count: int, gap: float
) -> list[float]:
    reports: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
    sub = new_client()
    sub.on_message = lambda _c, _u, m: reports.put((time.perf_counter(), json.loads(m.payload)))
    subscribed = threading.Event()
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    sub.subscribe(REPORTS, qos=1)
    subscribed.wait(10)
    pub = new_client()
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SERVICE_NAME": "tts-worker",
        "MQTT_URL": broker.url,
        "CONFIG_SIGNATURE_PUBLIC_KEY": public_pem(trusted_key()),
        "CONFIG_INSTANCE_ID": name,
        "CONFIG_CACHE_PATH": str(workdir / f"{name}.json"),
    }
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = int(time.time() * 1000)  # above every version published before
    latencies: list[float] = []
    try:
        for i in range(count + 1):
            version = base + i
            payload = sign({"volume_percent": i % 100}, version=version, issued=datetime.now(UTC))
            time.sleep(gap)
            start = time.perf_counter()
            pub.publish("system/config/tts-worker", payload, qos=1, retain=True)
            while True:
                at, report = reports.get(timeout=30)
                if (report["instance_id"], report["status"], report["version"]) == (
                    name,
                    "applied",
                    version,
                ):
                    break
            if i > 0:  # the first one includes the process start-up
                latencies.append((at - start) * 1000)
    finally:
        proc.terminate()
        proc.wait()
        for c in (sub, pub):
            c.loop_stop()
            c.disconnect()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.05)
    parser.add_argument(
        "--rust-bin", type=Path, default=REPO / "target/debug/examples/example_service"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp)).start()
        try:
            clients = {
                "rust": [str(args.rust_bin)],
                "python": [sys.executable, str(HERE.parent / "tests" / "child_client.py")],
            }
            for name, cmd in clients.items():
                lat = sorted(measure(name, cmd, broker, Path(tmp), args.count, args.gap))
                p99 = lat[max(0, round(0.99 * len(lat)) - 1)]
                print(
                    f"{name}: n={len(lat)} p50={statistics.median(lat):.2f} ms "
                    f"p99={p99:.2f} ms max={lat[-1]:.2f} ms"
                )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
