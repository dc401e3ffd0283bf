#!/usr/bin/env python3
"""Memory per request under a burst of maximal list requests (issue 23, finding 2).

Starts a config-manager binary on a free 127.0.0.1 port in a new temporary
directory, builds the data set of the finding -- COUNT PATCHes of a VALUE_KB
value to one service (a registered schema with one free-text field) -- then
sends CONCURRENCY concurrent maximal requests (`GET /history?limit=1000`,
then `GET /services/<s>/versions?limit=1000`), ROUNDS times, and reads the
service's memory from /proc/<pid>/status:

  idle      VmRSS after the data set is built, before the burst
  peak      VmHWM (the high-water mark of resident memory) after the burst
  settled   VmRSS sampled every 5 s for SETTLE seconds after the burst

and prints one line of JSON with the figures and whether they meet the
issue's targets (peak < 256 MiB; settled within 20 % of idle within 60 s).

  python3 scripts/bench/memory_burst.py --bin target/release/config-manager
  python3 scripts/bench/memory_burst.py --bin OLD --concurrency 12   # an old build

Loopback only; every count and wait is bounded (requests time out after
120 s, the whole run is capped by --max-seconds); the service is stopped on
exit. Needs only the Python standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

TOKEN = "bench-memory-token-0123456789"
SERVICE = "blob-store"
SCHEMA = {"type": "object", "properties": {"data": {"type": "string", "default": ""}}}
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


class Api:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api/config"

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("X-API-Token", TOKEN)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, method: str, path: str, body: object | None = None) -> dict:
        status, raw = self.call(method, path, body)
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {raw[:200]!r}")
        return json.loads(raw)


def wait_healthy(api: Api, proc: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"config-manager exited with {proc.returncode}")
        try:
            if api.call("GET", "/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("service never became healthy")


def build_data_set(api: Api, count: int, value_len: int) -> None:
    status, raw = api.call("PUT", f"/services/{SERVICE}/schema", SCHEMA)
    if status != 200:
        raise RuntimeError(f"schema: {status} {raw[:200]!r}")
    version = api.json("GET", f"/services/{SERVICE}")["version"]
    for i in range(count):
        value = f"{i:06d}" + "x" * (value_len - 6)
        out = api.json(
            "PATCH",
            f"/services/{SERVICE}",
            {"config": {"data": value}, "version": version},
        )
        version = out["version"]


def burst(api: Api, paths: list[str], concurrency: int) -> tuple[int, int, int]:
    """Each of `concurrency` threads GETs every path once; returns
    (requests, failures, largest body in bytes)."""
    failures = 0
    largest = 0
    lock = threading.Lock()
    start = threading.Barrier(concurrency)

    def worker() -> None:
        nonlocal failures, largest
        start.wait()
        for path in paths:
            try:
                status, raw = api.call("GET", path)
                ok = status == 200
                size = len(raw)
            except OSError:
                ok, size = False, 0
            with lock:
                failures += 0 if ok else 1
                largest = max(largest, size)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return concurrency * len(paths), failures, largest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the config-manager binary to measure")
    ap.add_argument("--count", type=int, default=300, help="PATCHes in the data set")
    ap.add_argument("--value-kb", type=int, default=240, help="size of each value, kB")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle-wait", type=int, default=20, help="quiet seconds before idle RSS")
    ap.add_argument("--settle", type=int, default=60, help="seconds to watch RSS after")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the service (e.g. MALLOC_ARENA_MAX=2); repeatable",
    )
    ap.add_argument("--max-seconds", type=int, default=900, help="cap on the whole run")
    args = ap.parse_args()
    if not (1 <= args.concurrency <= 256 and 1 <= args.rounds <= 20 and 1 <= args.count <= 2000):
        ap.error("concurrency 1-256, rounds 1-20, count 1-2000")
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("memory_burst: --max-seconds reached"))
    signal.alarm(args.max_seconds)

    work = tempfile.mkdtemp(prefix="cm-memory-")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": work,
        "CONFIG_ENV_FILE": f"{work}/.env",
        "CONFIG_DB_PATH": f"{work}/data/config.db",
        "CONFIG_LKG_CACHE_PATH": f"{work}/data/config.lkg.json",
        "CONFIG_MANAGER_HOST": "127.0.0.1",
        "CONFIG_MANAGER_PORT": str(port),
        "CONFIG_API_TOKENS": f"bench={TOKEN}:config.write",
        "RUST_LOG": "warn",
    }
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            ap.error(f"--env wants NAME=VALUE, got {item!r}")
        env[name] = value
    log = open(f"{work}/server.log", "wb")
    proc = subprocess.Popen([args.bin], cwd=work, env=env, stdout=log, stderr=log)
    api = Api(port)
    try:
        wait_healthy(api, proc, time.monotonic() + 30)
        started = time.monotonic()
        build_data_set(api, args.count, args.value_kb * 1000)
        build_s = time.monotonic() - started
        # Idle = steady state with the background work running (the monitor,
        # the LKG re-verification every 5 ticks), not the moment after the
        # last PATCH.
        time.sleep(args.idle_wait)
        idle = status_kib(proc.pid, "VmRSS")
        idle_anon = status_kib(proc.pid, "RssAnon")
        hwm_before = status_kib(proc.pid, "VmHWM")
        paths = ["/history?limit=1000", f"/services/{SERVICE}/versions?limit=1000"]
        requests = failures = largest = 0
        started = time.monotonic()
        for _ in range(args.rounds):
            r, f, big = burst(api, paths, args.concurrency)
            requests, failures, largest = requests + r, failures + f, max(largest, big)
        burst_s = time.monotonic() - started
        peak = status_kib(proc.pid, "VmHWM")
        samples = []
        for _ in range(max(1, args.settle // 5)):
            time.sleep(5)
            samples.append(status_kib(proc.pid, "VmRSS"))
        anon = status_kib(proc.pid, "RssAnon")
        file_backed = status_kib(proc.pid, "RssFile")
        settled = samples[-1]
        out = {
            "binary": args.bin,
            "env": args.env,
            "data_set": f"{args.count} x {args.value_kb} kB",
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "requests": requests,
            "failed_requests": failures,
            "largest_body_bytes": largest,
            "build_seconds": round(build_s, 1),
            "burst_seconds": round(burst_s, 1),
            "hwm_before_burst_mib": round(hwm_before / 1024, 1),
            "idle_rss_mib": round(idle / 1024, 1),
            "idle_anon_mib": round(idle_anon / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1),
            "settled_rss_mib": [round(s / 1024, 1) for s in samples],
            "settled_anon_mib": round(anon / 1024, 1),
            "settled_file_mib": round(file_backed / 1024, 1),
            "peak_under_256_mib": peak < 256 * 1024,
            "settled_within_20pct_of_idle": settled <= idle * 1.2,
        }
        print(json.dumps(out))
        return 0 if failures == 0 else 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
