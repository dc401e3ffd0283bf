#!/usr/bin/env bash
# Web UI benchmark: time to first render of a service tab with many fields,
# and page weight (bytes transferred), in real headless Chromium.
#
#   scripts/ui-bench.sh            # 120-field service, 7 runs each
#   FIELDS=300 RUNS=11 scripts/ui-bench.sh
#
# Builds the benchmark binary (profile dist), starts it on a free port with an extra schema of
# $FIELDS fields (half of them advanced), starts chromedriver, logs in through
# the form, then loads `/#/service/bench-large` repeatedly:
#   - cold: browser cache cleared before each load (first visit);
#   - warm: cache kept (assets revalidate with ETag -> 304).
# "First render" is the `cm:first-service-render` performance mark the page
# sets one animation frame after the form is in the DOM, measured from
# navigation start. Needs: cargo, python3, chromium, chromedriver.
set -euo pipefail
cd "$(dirname "$0")/.."
FIELDS="${FIELDS:-120}"
RUNS="${RUNS:-7}"

for bin in chromedriver chromium python3; do
  command -v "$bin" >/dev/null 2>&1 || { echo "missing $bin: apt-get install chromium chromium-driver python3" >&2; exit 1; }
done

echo "== building the benchmark binary (profile dist)" >&2
cargo build --profile dist -q -p config-manager
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="$(cd "$TARGET_DIR/dist" && pwd)/config-manager"

WORK=$(mktemp -d)
cleanup() {
  [ -n "${CM_PID:-}" ] && kill "$CM_PID" 2>/dev/null || true
  [ -n "${CD_PID:-}" ] && kill "$CD_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
CD_PORT=$(free_port)
TOKEN=bench-writer-token-0123456789

mkdir -p "$WORK/schemas"
python3 - "$FIELDS" > "$WORK/schemas/bench-large.json" <<'EOF'
import json, sys
n = int(sys.argv[1])
props = {}
kinds = ["integer", "number", "boolean", "string", "enum", "path"]
for i in range(n):
    kind = kinds[i % len(kinds)]
    p = {"title": f"Setting {i:03d}", "description": f"Benchmark field {i} ({kind}).",
         "x-complexity": "simple" if i % 2 == 0 else "advanced"}
    if kind == "integer":
        p.update(type="integer", minimum=0, maximum=10000, default=i)
    elif kind == "number":
        p.update(type="number", minimum=0, maximum=1, default=0.5)
    elif kind == "boolean":
        p.update(type="boolean", default=i % 3 == 0)
    elif kind == "string":
        p.update(type="string", maxLength=200, default=f"value {i}", examples=[f"example {i}"])
    elif kind == "enum":
        p.update(type="string", enum=["low", "medium", "high"], default="medium")
    else:
        p.update(type="string", **{"x-type": "path"}, minLength=1, maxLength=500, default=f"/data/f{i}")
    props[f"field_{i:03d}"] = p
print(json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Bench",
                  "type": "object", "additionalProperties": False, "properties": props}))
EOF

echo "== starting config-manager on :$PORT with a $FIELDS-field service" >&2
( cd "$WORK" && exec env -i PATH="$PATH" HOME="$WORK" \
    CONFIG_ENV_FILE="$WORK/.env" CONFIG_DB_PATH="$WORK/data/config.db" \
    CONFIG_LKG_CACHE_PATH="$WORK/data/lkg.json" CONFIG_MANAGER_PORT="$PORT" \
    CONFIG_SCHEMA_DIR="$WORK/schemas" CONFIG_API_TOKENS="bench=$TOKEN:config.write" \
    RUST_LOG=warn "$BIN" serve >"$WORK/server.log" 2>&1 ) &
CM_PID=$!
chromedriver --port="$CD_PORT" --allowed-ips=127.0.0.1 >"$WORK/chromedriver.log" 2>&1 &
CD_PID=$!
until curl -sf "http://127.0.0.1:$PORT/api/config/health" >/dev/null; do
  kill -0 "$CM_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.05
done
until curl -sf "http://127.0.0.1:$CD_PORT/status" | grep -q '"ready":true'; do sleep 0.05; done

python3 - "$PORT" "$CD_PORT" "$TOKEN" "$RUNS" "$FIELDS" "$WORK/profile" <<'EOF'
import json, statistics, sys, time, urllib.request
port, cd_port, token, runs, fields, profile = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
base = f"http://127.0.0.1:{port}/"

def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{cd_port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))["value"]

args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", "--no-first-run", "--window-size=1280,900", f"--user-data-dir={profile}"]
sid = call("POST", "/session", {"capabilities": {"alwaysMatch": {
    "browserName": "chrome", "goog:chromeOptions": {"args": args}}}})["sessionId"]
S = f"/session/{sid}"
js = lambda script: call("POST", f"{S}/execute/sync", {"script": script, "args": []})
el = lambda css: call("POST", f"{S}/element", {"using": "css selector", "value": css})["element-6066-11e4-a52e-4f735466cecf"]

def wait(script, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        v = js(script)
        if v:
            return v
        time.sleep(0.02)
    raise SystemExit(f"timed out: {script}")

WEIGHT = """const n = performance.getEntriesByType('navigation')[0];
  const r = performance.getEntriesByType('resource');
  const sum = (xs, f) => xs.reduce((a, x) => a + (x[f] || 0), 0);
  const api = r.filter(x => x.name.includes('/api/') || x.name.includes('/ui/session'));
  const assets = r.filter(x => !api.includes(x));
  return {transfer: n.transferSize + sum(r, 'transferSize'),
          shell: n.transferSize + sum(assets, 'transferSize'), api: sum(api, 'transferSize'),
          decoded: n.decodedBodySize + sum(r, 'decodedBodySize'), requests: 1 + r.length};"""

try:
    # Log in once (the session cookie survives reloads).
    call("POST", f"{S}/url", {"url": base})
    wait("return document.querySelector('#login-token') && !document.querySelector('#login-view').hidden")
    call("POST", f"{S}/element/{el('#login-token')}/value", {"text": token})
    call("POST", f"{S}/element/{el('#login-submit')}/click", {})
    wait("return !!document.querySelector('#service-form')")
    results = {}
    for mode in ("cold", "warm"):
        times, weights, datas, builds = [], [], [], []
        for i in range(runs + 1):
            if mode == "cold":
                call("POST", f"{S}/goog/cdp/execute", {"cmd": "Network.clearBrowserCache", "params": {}})
            call("POST", f"{S}/url", {"url": "about:blank"})
            call("POST", f"{S}/url", {"url": base + "#/service/bench-large"})
            t = wait("const m = performance.getEntriesByName('cm:first-service-render')[0]; return m && m.startTime")
            marks = js("return ['cm:first-service-data', 'cm:first-service-built'].map(n => performance.getEntriesByName(n)[0].startTime)")
            count = js("return document.querySelectorAll('#service-form .field').length")
            assert count == int(fields), count
            if i == 0:
                continue  # first run warms the server and the JIT
            times.append(t)
            datas.append(marks[0])
            builds.append(marks[1] - marks[0])
            weights.append(js(WEIGHT))
        results[mode] = (times, weights, datas, builds)
    print(f"\nUI benchmark: service with {fields} fields ({int(fields)//2 + int(fields)%2} shown in the simple view), {runs} runs, Chromium headless 1280x900\n")
    print(f"| load | first render p50 | min | max | data in (p50) | DOM build (p50) | transferred | of which page+assets | of which API | requests |")
    print(f"|---|---|---|---|---|---|---|---|---|---|")
    for mode, (times, weights, datas, builds) in results.items():
        w = weights[len(weights) // 2]
        print(f"| {mode} | {statistics.median(times):.0f} ms | {min(times):.0f} ms | {max(times):.0f} ms "
              f"| {statistics.median(datas):.0f} ms | {statistics.median(builds):.0f} ms "
              f"| {w['transfer']/1024:.1f} KiB | {w['shell']/1024:.1f} KiB | {w['api']/1024:.1f} KiB | {w['requests']} |")
    print("\n'data in': navigation start -> the service's JSON has arrived; 'DOM build': building the form;")
    print("'first render': navigation start -> the frame with the form has been painted.")
    w = results["cold"][1][0]
    print(f"\nuncompressed bytes of everything loaded (cold): {w['decoded']/1024:.1f} KiB")
finally:
    call("DELETE", S)
EOF
