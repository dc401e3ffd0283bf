#!/usr/bin/env bash
# Instructions per cached GET, counted by callgrind (docs/performance.md).
# Wall-clock figures on a shared two-core VM move by ±5% from run to run;
# instruction counts repeat exactly, so this is the way to compare two builds
# of the request path. Builds the `profiling` profile (the shipped `dist`
# code with symbols), starts mosquitto and the service under callgrind on free loopback
# ports, warms up, then counts COUNT sequential GETs of one service config on
# one connection; the same for the minimal axum handler (examples/baseline.rs).
#
#   scripts/bench-instructions.sh          # COUNT=2000
#   BENCH_BIN=path/to/config-manager scripts/bench-instructions.sh
#
# Prints `instructions/request` for both and leaves the callgrind files in
# the printed directory (`callgrind_annotate FILE` shows where they go). The
# portable SHA-256 code runs under valgrind (it hides SHA-NI): on a CPU with
# SHA extensions the token check costs ~3,000 instructions less than shown.
# Needs: cargo, valgrind, mosquitto, python3, curl. Everything it starts is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT="${COUNT:-2000}"
MOSQUITTO="${MOSQUITTO:-/usr/sbin/mosquitto}"
if ! command -v valgrind >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq valgrind >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
  else
    echo "valgrind is missing: run 'sudo apt-get install valgrind'" >&2; exit 1
  fi
fi
[ -x "$MOSQUITTO" ] || { echo "mosquitto is missing at $MOSQUITTO: apt-get install mosquitto" >&2; exit 1; }

echo "== building the profiling profile (config-manager, examples/baseline)" >&2
cargo build --profile profiling -q -p config-manager --bin config-manager --example baseline
REL="$(cd "${CARGO_TARGET_DIR:-target}/profiling" && pwd)"
BIN="${BENCH_BIN:-$REL/config-manager}"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
TOKEN="bench-reader-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
HTTP_PORT="$(free_port)" MQTT_PORT="$(free_port)" BASE_PORT="$(free_port)"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$MQTT_PORT" >"$WORK/mosquitto.conf"
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)

# gets URL N TOKEN: N sequential GETs on one connection, each must be 200.
gets() {
  python3 - "$@" <<'PY'
import http.client, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1]); n = int(sys.argv[2]); token = sys.argv[3]
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
for _ in range(n):
    c.request("GET", u.path, headers={"X-API-Token": token} if token else {})
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit(f"GET {u.path}: {r.status}")
PY
}

# count NAME PID URL [TOKEN]: warm up, zero the counters, COUNT GETs, dump, report.
count() {
  local name=$1 pid=$2 url=$3 token=${4:-} i
  for ((i = 0; i < 300; i++)); do curl -sf -o /dev/null -H "X-API-Token: $token" "$url" && break; sleep 0.2; done
  gets "$url" 500 "$token"
  callgrind_control -z "$pid" >/dev/null 2>&1
  gets "$url" "$COUNT" "$token"
  callgrind_control -d "$pid" >/dev/null 2>&1
  local file="$WORK/$name.out.1"
  for ((i = 0; i < 50; i++)); do [ -s "$file" ] && break; sleep 0.1; done
  callgrind_annotate "$file" 2>/dev/null | awk -v n="$COUNT" -v name="$name" \
    '/PROGRAM TOTALS/ {gsub(",", "", $1); printf "%-28s %8.0f instructions/request\n", name, $1 / n}'
}

env -i PATH="$PATH" HOME="$WORK" \
  CONFIG_ENV_FILE="$WORK/.env" CONFIG_DB_PATH="$WORK/data/config.db" \
  CONFIG_LKG_CACHE_PATH="$WORK/data/config.lkg.json" CONFIG_MANAGER_PORT="$HTTP_PORT" \
  CONFIG_API_TOKENS="bench=$TOKEN:config.read" MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT" \
  RUST_LOG="${BENCH_RUST_LOG:-info}" \
  valgrind --tool=callgrind --callgrind-out-file="$WORK/config-manager.out" "$BIN" \
  >"$WORK/server.log" 2>&1 &
PIDS+=($!)
SERVER_PID=$!
valgrind --tool=callgrind --callgrind-out-file="$WORK/baseline.out" \
  "$REL/examples/baseline" "127.0.0.1:$BASE_PORT" >"$WORK/baseline.log" 2>&1 &
PIDS+=($!)
BASELINE_PID=$!

echo "== $COUNT sequential GETs each, after 500 to warm up" >&2
count baseline "$BASELINE_PID" "http://127.0.0.1:$BASE_PORT/"
count config-manager "$SERVER_PID" "http://127.0.0.1:$HTTP_PORT/api/config/services/tts-worker" "$TOKEN"
echo "== callgrind files in $WORK" >&2
