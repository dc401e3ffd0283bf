#!/usr/bin/env bash
# Load benchmark of config-manager (issue 9). Builds the `dist` profile (what
# ships; docs/performance.md, "Build profiles"), starts a real
# mosquitto and the service on free loopback ports, then measures:
#   - cold start to the first healthy answer (first run and restarts)
#   - idle and loaded RSS (VmRSS from /proc/PID/status)
#   - GET of one service config at 1 and 16 connections, next to a minimal
#     axum handler (examples/baseline.rs) measured in the same run
#   - search at 1 and 16 connections
#   - sequential PATCH latency (acknowledged = durably committed)
#   - PATCH -> applied by a verifying client-library subscriber (MQTT)
#   - 10 concurrent PATCHes with the same version, repeated: one 200, nine 409
#   - the fsync floor: a bare durable SQLite commit in the data directory
# and prints a table with the issue's targets.
#
#   scripts/bench.sh                 # the six TARS services
#   scripts/bench.sh --scale         # 1,000 services x 50 fields, 1,000,000 history rows
#   scripts/bench.sh --scale 10000   # 10,000 services (SCALE_SERVICES), same fields and rows
#
# Knobs (environment): RUNS (wrk repetitions, median reported; default 5),
# DURATION (seconds per wrk run; default 5), COUNT (sequential PATCHes; 300),
# ROUNDS (concurrency rounds; 20), BENCH_DIR (where the data directory goes;
# default a new temporary directory — put it on the disk the service uses),
# BENCH_OUT (also write the table there), KEEP=1 (keep the directory),
# BENCH_BIN (measure another config-manager binary, e.g. an older build, with
# the same tools), BENCH_SKIP_BUILD=1 (measure the dist binaries already
# built, e.g. while the tree has only formatting changes since),
# BENCH_RUST_LOG (the service's log filter; default info,
# the shipped default, so every request writes its access-log line).
# CARGO_TARGET_DIR is honoured. Needs: cargo, wrk, mosquitto, python3, curl.
# Everything runs on 127.0.0.1; every load run is bounded (-d, counts,
# timeouts); everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=0
case "${1:-}" in
  --scale)
    SCALE=1
    if [ -n "${2:-}" ]; then SCALE_SERVICES="$2"; fi ;;
  "") ;;
  -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--scale [SERVICES]]" >&2; exit 2 ;;
esac
case "${SCALE_SERVICES:-1000}" in
  ''|*[!0-9]*) echo "SERVICES must be a number of services" >&2; exit 2 ;;
esac
RUNS="${RUNS:-5}"
DURATION="${DURATION:-5}"
COUNT="${COUNT:-300}"
ROUNDS="${ROUNDS:-20}"
SCALE_SERVICES="${SCALE_SERVICES:-1000}"
SCALE_FIELDS="${SCALE_FIELDS:-50}"
SCALE_HISTORY="${SCALE_HISTORY:-1000000}"
MOSQUITTO="${MOSQUITTO:-/usr/sbin/mosquitto}"

# --- tools --------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing wrk (apt)" >&2
    apt-get install -y -qq wrk >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
  else
    echo "wrk is missing: run 'sudo apt-get install wrk'" >&2; exit 1
  fi
fi
[ -x "$MOSQUITTO" ] || { echo "mosquitto is missing at $MOSQUITTO: apt-get install mosquitto" >&2; exit 1; }
for bin in python3 curl cargo; do
  command -v "$bin" >/dev/null 2>&1 || { echo "$bin is missing" >&2; exit 1; }
done

if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
  echo "== BENCH_SKIP_BUILD=1: using the dist binaries already built" >&2
else
  echo "== building the dist profile (config-manager, examples baseline + bench_driver)" >&2
  cargo build --profile dist -q -p config-manager --bin config-manager --example baseline --example bench_driver
fi
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
REL="$(cd "$TARGET_DIR/dist" && pwd)"
BIN="${BENCH_BIN:-$REL/config-manager}"
DRIVER="$REL/examples/bench_driver"
BASELINE="$REL/examples/baseline"

# --- processes and cleanup ----------------------------------------------------
WORK="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
SERVER_PID="" BROKER_PID="" BASELINE_PID=""
cleanup() {
  local pid
  for pid in "$BASELINE_PID" "$SERVER_PID" "$BROKER_PID"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "$BASELINE_PID" "$SERVER_PID" "$BROKER_PID"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ] || [ -n "${BENCH_DIR:-}" ]; then
    echo "== data kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

TOKEN="bench-writer-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
HTTP_PORT="$(free_port)"
MQTT_PORT="$(free_port)"
URL="http://127.0.0.1:$HTTP_PORT"
API="$URL/api/config"
MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT"

# TCP_NODELAY on the broker, as docs/mqtt.md recommends: clients publish an
# applied-state report after each update, and without it the broker holds the
# next forwarded config for the delayed ACK of its PUBACK (~40 ms).
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n' "$MQTT_PORT" >"$WORK/mosquitto.conf"
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
BROKER_PID=$!

SCHEMA_DIR=""
if [ "$SCALE" = 1 ]; then
  SCHEMA_DIR="$WORK/schemas"
  python3 scripts/bench/scale_data.py schemas "$SCHEMA_DIR" \
    --services "$SCALE_SERVICES" --fields "$SCALE_FIELDS" >&2
fi

declare -A R=()
# Collects `RESULT name value` lines of a command's output into R.
collect() {
  local out="$WORK/driver.out"
  "$@" >"$out" 2>&1 || { cat "$out" >&2; echo "failed: $*" >&2; return 1; }
  grep '^#' "$out" >&2 || true
  local tag k v
  while read -r tag k v; do
    [ "$tag" = RESULT ] && R[$k]=$v
  done <"$out"
  return 0
}

start_server() { # $1: RESULT name of the start-up time
  local t0
  t0="$(date +%s%N)"
  env -i PATH="$PATH" HOME="$WORK" \
    CONFIG_ENV_FILE="$WORK/.env" \
    CONFIG_DB_PATH="$WORK/data/config.db" \
    CONFIG_LKG_CACHE_PATH="$WORK/data/config.lkg.json" \
    CONFIG_MANAGER_PORT="$HTTP_PORT" \
    CONFIG_API_TOKENS="bench=$TOKEN:config.write" \
    ${SCHEMA_DIR:+CONFIG_SCHEMA_DIR="$SCHEMA_DIR"} \
    MQTT_URL="$MQTT_URL" \
    RUST_LOG="${BENCH_RUST_LOG:-info}" \
    "$BIN" >>"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  collect "$DRIVER" wait-healthy --url "$URL" --since-ns "$t0" --name "$1" --timeout-s 120
}

stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# wrk_once NAME CONNECTIONS URL [VAR=value ...]: one bounded wrk run, its
# summary line appended to $WORK/wrk.NAME. With CPU_PID set, also the CPU time
# (user + system) that process spent per request, in microseconds.
wrk_once() {
  local name=$1 conns=$2 url=$3 threads=${WRK_THREADS:-2} line c0 c1 cpu=""
  shift 3
  if [ "$conns" -lt 2 ]; then threads=1; fi
  if [ -n "${CPU_PID:-}" ]; then c0="$(cpu_ticks "$CPU_PID")"; fi
  line="$(env BENCH_TOKEN="$TOKEN" "$@" wrk -t"$threads" -c"$conns" -d"${DURATION}s" \
    --timeout 5s -s scripts/bench/wrk.lua "$url" | grep '^WRK ')"
  if [ -n "${CPU_PID:-}" ]; then
    c1="$(cpu_ticks "$CPU_PID")"
    cpu="$(echo "$line" | awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" \
      '{split($2, r, "="); printf " cpu_us=%.1f", d / hz / r[2] * 1e6}')"
  fi
  echo "   $name: ${line#WRK }$cpu" >&2
  echo "$line$cpu" >>"$WORK/wrk.$name"
}

# Medians of every figure of NAME's runs into R[NAME_rps], R[NAME_p50_ms], ...
summarize() {
  local name=$1 field
  for field in rps p50_ms p99_ms non2xx sockerr cpu_us; do
    R[${name}_$field]="$({ grep -o " $field=[0-9.]*" "$WORK/wrk.$name" || true; } | cut -d= -f2 | median)"
  done
  if [ "${R[${name}_non2xx]}" != 0 ] || [ "${R[${name}_sockerr]}" != 0 ]; then
    echo "WARNING: $name had non-2xx answers or socket errors (see above)" >&2
  fi
}

# run_wrk NAME CONNECTIONS URL [VAR=value ...]: RUNS runs, medians in R.
run_wrk() {
  local i
  : >"$WORK/wrk.$1"
  for ((i = 0; i < RUNS; i++)); do wrk_once "$@"; done
  summarize "$1"
}

# --- start-up -----------------------------------------------------------------
if [ "$SCALE" = 1 ]; then P=scale_; else P=""; fi
echo "== first start (empty data directory: keys, migrations, seeding)" >&2
start_server "${P}first_start_ms"
if [ "$SCALE" = 1 ]; then
  stop_server
  echo "== inserting $SCALE_HISTORY history rows" >&2
  python3 scripts/bench/scale_data.py history "$WORK/data/config.db" --rows "$SCALE_HISTORY" >&2
  R[scale_db_mib]="$(du -m "$WORK/data/config.db" | cut -f1)"
  start_server "${P}first_restart_ms"
fi
stop_server
: >"$WORK/starts"
for ((i = 0; i < 3; i++)); do
  start_server start_once
  echo "${R[start_once]}" >>"$WORK/starts"
  if [ "$i" -lt 2 ]; then stop_server; fi
done
R[${P}cold_start_ms]="$(median <"$WORK/starts")"
echo "   restarts: $(tr '\n' ' ' <"$WORK/starts")ms" >&2

sleep 2
R[${P}idle_rss_mib]="$(awk -v k="$(rss_kib "$SERVER_PID")" 'BEGIN {printf "%.1f", k/1024}')"
# What the RSS is made of: private memory vs. file pages (mostly the binary's
# code, shared with the page cache).
R[${P}idle_anon_mib]="$(awk '/^RssAnon:/ {printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status")"
R[${P}idle_file_mib]="$(awk '/^RssFile:/ {printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status")"
echo "== idle RSS ${R[${P}idle_rss_mib]} MiB" >&2

# --- throughput and latency ---------------------------------------------------
SEARCH_BODY='{"query":"volume"}'
if [ "$SCALE" = 1 ]; then
  # Every service, spread at random (the read cache warms as it goes).
  curl -sf -H "X-API-Token: $TOKEN" "$API/services" |
    python3 -c 'import json,sys; [print("/api/config/services/" + s) for s in json.load(sys.stdin)["services"]]' \
      >"$WORK/paths"
  echo "== GET of $(wc -l <"$WORK/paths") services, random" >&2
  GET_ENV=(BENCH_PATHS="$WORK/paths")
else
  GET_ENV=()
fi
GET_URL="$API/services/tts-worker"
curl -sf -o /dev/null -H "X-API-Token: $TOKEN" "$GET_URL" || { echo "GET $GET_URL failed" >&2; exit 1; }

BASE_PORT="$(free_port)"
"$BASELINE" "127.0.0.1:$BASE_PORT" >"$WORK/baseline.log" 2>&1 &
BASELINE_PID=$!
for ((i = 0; i < 100; i++)); do curl -sf -o /dev/null "http://127.0.0.1:$BASE_PORT/" && break; sleep 0.05; done
# The baseline and the GET runs alternate, so both see the same background
# load; the ratio is taken per pair, then the median.
echo "== GET one service config, alternating with the baseline (minimal axum handler)" >&2
: >"$WORK/wrk.baseline16"; : >"$WORK/wrk.${P}get16"; : >"$WORK/ratios"
for ((i = 0; i < RUNS; i++)); do
  CPU_PID=$BASELINE_PID wrk_once baseline16 16 "http://127.0.0.1:$BASE_PORT/"
  CPU_PID=$SERVER_PID wrk_once ${P}get16 16 "$GET_URL" ${GET_ENV[@]+"${GET_ENV[@]}"}
  paste -d' ' <(tail -1 "$WORK/wrk.${P}get16") <(tail -1 "$WORK/wrk.baseline16") |
    awk '{split($3, a, "="); for (i = 4; i <= NF; i++) if ($i ~ /^rps=/) {split($i, b, "="); printf "%.3f\n", a[2] / b[2]}}' >>"$WORK/ratios"
done
summarize baseline16
summarize ${P}get16
R[${P}get16_ratio]="$(median <"$WORK/ratios")"
echo "   GET/baseline per pair: $(tr '\n' ' ' <"$WORK/ratios")" >&2
# The same pairs with the server (all its threads) on CPU 0 and wrk on CPU 1:
# on two shared cores the scheduler, not the handler, sets the p99 (the
# minimal handler's own p99 is several ms there).
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  echo "== the same, server on CPU 0 and wrk on CPU 1" >&2
  : >"$WORK/wrk.pinned_baseline16"; : >"$WORK/wrk.${P}pinned_get16"
  for pid in "$BASELINE_PID" "$SERVER_PID"; do taskset -a -p -c 0 "$pid" >/dev/null; done
  for ((i = 0; i < RUNS; i++)); do
    # One wrk thread for its one core: two would take turns and add their
    # own time slices to the latencies they measure.
    WRK_THREADS=1 CPU_PID=$BASELINE_PID wrk_once pinned_baseline16 16 "http://127.0.0.1:$BASE_PORT/" taskset -c 1
    WRK_THREADS=1 CPU_PID=$SERVER_PID wrk_once ${P}pinned_get16 16 "$GET_URL" ${GET_ENV[@]+"${GET_ENV[@]}"} taskset -c 1
  done
  for pid in "$BASELINE_PID" "$SERVER_PID"; do taskset -a -p -c "0-$(($(nproc) - 1))" "$pid" >/dev/null; done
  summarize pinned_baseline16
  summarize ${P}pinned_get16
fi
kill "$BASELINE_PID"; wait "$BASELINE_PID" 2>/dev/null || true; BASELINE_PID=""
CPU_PID=$SERVER_PID run_wrk ${P}get1 1 "$GET_URL" ${GET_ENV[@]+"${GET_ENV[@]}"}
echo "== search $SEARCH_BODY" >&2
CPU_PID=$SERVER_PID run_wrk ${P}search1 1 "$API/search" BENCH_METHOD=POST BENCH_BODY="$SEARCH_BODY"
CPU_PID=$SERVER_PID run_wrk ${P}search16 16 "$API/search" BENCH_METHOD=POST BENCH_BODY="$SEARCH_BODY"
if [ "$SCALE" = 1 ]; then
  Q2='{"query":"timeout"}'
  echo "== search $Q2" >&2
  run_wrk scale_search2_16 16 "$API/search" BENCH_METHOD=POST BENCH_BODY="$Q2"
  MID="scale-svc-$(printf %04d $((SCALE_SERVICES / 2)))"
  FROM="$(date -u -d '-120 days' +%Y-%m-%dT%H:%M:%SZ)"
  TO="$(date -u -d '-119 days' +%Y-%m-%dT%H:%M:%SZ)"
  echo "== history queries" >&2
  run_wrk scale_hist_all1 1 "$API/history?limit=100"
  run_wrk scale_hist_all16 16 "$API/history?limit=100"
  run_wrk scale_hist_svc1 1 "$API/history?service=$MID&limit=100"
  run_wrk scale_hist_svc16 16 "$API/history?service=$MID&limit=100"
  run_wrk scale_hist_day1 1 "$API/history?start_date=$FROM&end_date=$TO&limit=100"
  run_wrk scale_hist_day16 16 "$API/history?start_date=$FROM&end_date=$TO&limit=100"
  run_wrk scale_hist_svcday1 1 "$API/history?service=$MID&start_date=$FROM&end_date=$TO&limit=100"
fi

echo "== sequential PATCH latency ($COUNT)" >&2
collect "$DRIVER" put-latency --url "$URL" --token "$TOKEN" --count "$COUNT"
echo "== commit floor (bare durable SQLite commit in the data directory)" >&2
collect "$DRIVER" commit-floor --dir "$WORK/data" --count "$COUNT"
echo "== PATCH -> verified delivery at a client-library subscriber ($COUNT)" >&2
if ! collect "$DRIVER" delivery --url "$URL" --token "$TOKEN" --mqtt-url "$MQTT_URL" \
  --env-file "$WORK/.env" --count "$COUNT"; then
  echo "WARNING: delivery measurement failed (is the MQTT publisher in this build?)" >&2
fi
echo "== concurrency: $ROUNDS rounds of 10 PATCHes with the same version" >&2
collect "$DRIVER" conflict --url "$URL" --token "$TOKEN" --rounds "$ROUNDS" --writers 10
# The peak comes from the kernel (VmHWM): a sampling loop would fork every
# 100 ms on the cores being measured and show up in the p99s.
R[${P}loaded_rss_mib]="$(awk -v k="$(rss_kib "$SERVER_PID")" 'BEGIN {printf "%.1f", k/1024}')"
R[${P}hwm_rss_mib]="$(awk '/^VmHWM:/ {printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status")"

# --- table --------------------------------------------------------------------
v() { echo "${R[$1]:-n/a}"; }
# check VALUE OP LIMIT -> ok / MISS / n/a
check() {
  awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {
    if (a == "n/a" || a == "nan" || a == "") { print "n/a"; exit }
    ok = (op == "<") ? (a + 0 < b + 0) : (op == ">=") ? (a + 0 >= b + 0) : (a + 0 == b + 0)
    print ok ? "ok" : "MISS" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }

{
  echo "### config-manager load benchmark$([ "$SCALE" = 1 ] && echo " — scale: $SCALE_SERVICES services x $SCALE_FIELDS fields, $SCALE_HISTORY history rows")"
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r); $(date -u +%Y-%m-%d); wrk ${DURATION}s x $RUNS (median), $COUNT sequential PATCHes, data in $WORK"
  echo
  echo "| measurement | result | target | |"
  echo "|---|---|---|---|"
  if [ "$SCALE" = 0 ]; then
    gr="$(v get16_ratio)"
    echo "| baseline: minimal axum handler, 16 conns | $(v baseline16_rps) req/s, p50 $(v baseline16_p50_ms) ms, p99 $(v baseline16_p99_ms) ms; $(v baseline16_cpu_us) µs CPU/request | | |"
    echo "| GET one service, 1 conn | $(v get1_rps) req/s, p50 $(v get1_p50_ms) ms, p99 $(v get1_p99_ms) ms | | |"
    echo "| GET one service, 16 conns | $(v get16_rps) req/s (${gr} x baseline), p50 $(v get16_p50_ms) ms, p99 $(v get16_p99_ms) ms; $(v get16_cpu_us) µs CPU/request | ≥ 0.60 x baseline; p99 < 2 ms | $(check "$gr" ">=" 0.6) / $(check "$(v get16_p99_ms)" "<" 2) |"
    echo "| baseline, server on CPU 0, wrk on CPU 1 | $(v pinned_baseline16_rps) req/s, p50 $(v pinned_baseline16_p50_ms) ms, p99 $(v pinned_baseline16_p99_ms) ms | | |"
    echo "| GET one service, 16 conns, server on CPU 0, wrk on CPU 1 | $(v pinned_get16_rps) req/s ($(ratio "$(v pinned_get16_rps)" "$(v pinned_baseline16_rps)") x baseline), p50 $(v pinned_get16_p50_ms) ms, p99 $(v pinned_get16_p99_ms) ms | | |"
    echo "| search \`volume\`, 1 conn | $(v search1_rps) req/s, p50 $(v search1_p50_ms) ms, p99 $(v search1_p99_ms) ms | | |"
    echo "| search \`volume\`, 16 conns | $(v search16_rps) req/s, p50 $(v search16_p50_ms) ms, p99 $(v search16_p99_ms) ms; $(v search16_cpu_us) µs CPU/request | p99 < 5 ms | $(check "$(v search16_p99_ms)" "<" 5) |"
    echo "| sequential PATCH (acknowledged = committed) | p50 $(v put_p50_ms) ms, p90 $(v put_p90_ms) ms, p99 $(v put_p99_ms) ms | p50 < 3 ms | $(check "$(v put_p50_ms)" "<" 3) |"
    echo "| fsync floor: bare durable SQLite commit | p50 $(v commit_floor_p50_ms) ms, p99 $(v commit_floor_p99_ms) ms (PATCH p50 = $(ratio "$(v put_p50_ms)" "$(v commit_floor_p50_ms)") x floor) | | |"
    echo "| PATCH sent → applied by verifying subscriber | p50 $(v delivery_p50_ms) ms, p99 $(v delivery_p99_ms) ms | p50 < 3 ms, p99 < 10 ms | $(check "$(v delivery_p50_ms)" "<" 3) / $(check "$(v delivery_p99_ms)" "<" 10) |"
    echo "| PATCH reply → applied (after the ack) | p50 $(v delivery_after_reply_p50_ms) ms, p99 $(v delivery_after_reply_p99_ms) ms; applied before the reply: $(v delivery_before_reply_count) of $(v delivery_count) | | |"
    echo "| 10 concurrent PATCHes, same version | $(v conflict_exact_rounds) of $(v conflict_rounds) rounds exactly 1×200 + 9×409 | every round | $(check "$(v conflict_exact_rounds)" "==" "$(v conflict_rounds)") |"
    echo "| idle RSS (after start-up settled) | $(v idle_rss_mib) MiB (anonymous $(v idle_anon_mib), file-backed $(v idle_file_mib)) | < 15 MiB | $(check "$(v idle_rss_mib)" "<" 15) |"
    echo "| RSS after the runs above (peak, VmHWM) | $(v loaded_rss_mib) MiB (peak $(v hwm_rss_mib) MiB) | | |"
    echo "| first start (empty dir: keys, migrations, seeding) | $(v first_start_ms) ms | | |"
    echo "| cold start to first healthy answer (restart, median of 3) | $(v cold_start_ms) ms | < 100 ms | $(check "$(v cold_start_ms)" "<" 100) |"
  else
    # Issue 18's targets: 1,000 services as quick and small as six; 10,000 within
    # the second set.
    if [ "$SCALE_SERVICES" -ge 10000 ]; then
      T_START=2000 T_IDLE=160 T_PEAK="" T_PUT50=5 T_PUT99="" T_SEARCH99=50
    else
      T_START=300 T_IDLE=64 T_PEAK=128 T_PUT50=3 T_PUT99=10 T_SEARCH99=20
    fi
    target() { # LABEL VALUE LIMIT -> "| < LIMIT unit | ok/MISS |", or empty cells
      if [ -n "$3" ]; then echo "< $3 $1 | $(check "$2" "<" "$3")"; else echo " | "; fi
    }
    echo "| database after the history insert | $(v scale_db_mib) MiB | | |"
    echo "| first start (seeds $SCALE_SERVICES services) | $(v scale_first_start_ms) ms | | |"
    echo "| first start after inserting the history rows | $(v scale_first_restart_ms) ms | | |"
    echo "| cold start to first healthy answer (restart, median of 3) | $(v scale_cold_start_ms) ms | $(target ms "$(v scale_cold_start_ms)" "$T_START") |"
    echo "| idle RSS | $(v scale_idle_rss_mib) MiB (anonymous $(v scale_idle_anon_mib), file-backed $(v scale_idle_file_mib)) | $(target MiB "$(v scale_idle_rss_mib)" "$T_IDLE") |"
    echo "| GET random service, 1 conn | $(v scale_get1_rps) req/s, p50 $(v scale_get1_p50_ms) ms, p99 $(v scale_get1_p99_ms) ms | | |"
    echo "| GET random service, 16 conns | $(v scale_get16_rps) req/s, p50 $(v scale_get16_p50_ms) ms, p99 $(v scale_get16_p99_ms) ms | | |"
    echo "| GET random service, 16 conns, server on CPU 0, wrk on CPU 1 | $(v scale_pinned_get16_rps) req/s, p50 $(v scale_pinned_get16_p50_ms) ms, p99 $(v scale_pinned_get16_p99_ms) ms | | |"
    echo "| search \`volume\`, 1 conn | $(v scale_search1_rps) req/s, p50 $(v scale_search1_p50_ms) ms, p99 $(v scale_search1_p99_ms) ms | | |"
    echo "| search \`volume\`, 16 conns | $(v scale_search16_rps) req/s, p50 $(v scale_search16_p50_ms) ms, p99 $(v scale_search16_p99_ms) ms | p99 $(target ms "$(v scale_search16_p99_ms)" "$T_SEARCH99") |"
    echo "| search \`timeout\` (many hits), 16 conns | $(v scale_search2_16_rps) req/s, p50 $(v scale_search2_16_p50_ms) ms, p99 $(v scale_search2_16_p99_ms) ms | p99 $(target ms "$(v scale_search2_16_p99_ms)" "$T_SEARCH99") |"
    echo "| history, newest 100, 1 / 16 conns | p50 $(v scale_hist_all1_p50_ms) / $(v scale_hist_all16_p50_ms) ms, p99 $(v scale_hist_all1_p99_ms) / $(v scale_hist_all16_p99_ms) ms; $(v scale_hist_all16_rps) req/s | | |"
    echo "| history, one service, 1 / 16 conns | p50 $(v scale_hist_svc1_p50_ms) / $(v scale_hist_svc16_p50_ms) ms, p99 $(v scale_hist_svc1_p99_ms) / $(v scale_hist_svc16_p99_ms) ms; $(v scale_hist_svc16_rps) req/s | | |"
    echo "| history, one day 4 months ago, 1 / 16 conns | p50 $(v scale_hist_day1_p50_ms) / $(v scale_hist_day16_p50_ms) ms, p99 $(v scale_hist_day1_p99_ms) / $(v scale_hist_day16_p99_ms) ms; $(v scale_hist_day16_rps) req/s | | |"
    echo "| history, one service + one day, 1 conn | p50 $(v scale_hist_svcday1_p50_ms) ms, p99 $(v scale_hist_svcday1_p99_ms) ms | | |"
    echo "| sequential PATCH | p50 $(v put_p50_ms) ms, p99 $(v put_p99_ms) ms (floor p50 $(v commit_floor_p50_ms) ms) | p50 $(target ms "$(v put_p50_ms)" "$T_PUT50") |"
    if [ -n "$T_PUT99" ]; then
      echo "| sequential PATCH p99 | $(v put_p99_ms) ms | p99 $(target ms "$(v put_p99_ms)" "$T_PUT99") |"
    fi
    echo "| PATCH sent → applied by verifying subscriber | p50 $(v delivery_p50_ms) ms, p99 $(v delivery_p99_ms) ms | | |"
    echo "| 10 concurrent PATCHes, same version | $(v conflict_exact_rounds) of $(v conflict_rounds) rounds exact | every round | $(check "$(v conflict_exact_rounds)" "==" "$(v conflict_rounds)") |"
    echo "| RSS after the runs above (peak, VmHWM) | $(v scale_loaded_rss_mib) MiB (peak $(v scale_hwm_rss_mib) MiB) | peak $(target MiB "$(v scale_hwm_rss_mib)" "$T_PEAK") |"
  fi
} | tee "$WORK/table.md"
if [ -n "${BENCH_OUT:-}" ]; then cp "$WORK/table.md" "$BENCH_OUT"; fi
