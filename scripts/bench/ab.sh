#!/usr/bin/env bash
# Interleaved A/B load comparison of config-manager builds or settings
# (docs/performance.md, "Request path: own code vs the standard").
#
#   scripts/bench/ab.sh NAME:BINARY[:VAR=value ...] NAME:BINARY[:VAR=value ...] ...
#
#   scripts/bench/ab.sh A:target/dist/config-manager B:/tmp/other/config-manager
#   scripts/bench/ab.sh ours:target/dist/config-manager 'quiet:target/dist/config-manager:RUST_LOG=warn'
#
# Starts one mosquitto and every variant at once with the shipped defaults
# (RUST_LOG=info, so each request writes its access line; standard error to a
# file, as under a service manager), each on its own port and data directory,
# then ROUNDS times: for each endpoint, wrk against every variant in turn (the
# order rotates per round, so no variant always runs first after a pause).
# Variants that are not being loaded sit idle. Prints per variant and
# endpoint the median requests/s with the spread (min-max), p50, p99, server
# CPU per request, and the median of the per-round ratios to the first
# variant: the ratio of neighbouring runs is what survives background load on
# a shared machine.
#
# Endpoints: GET /api/config/services/tts-worker with a token (the cached
# read path) and GET /api/config/health (no token).
# Knobs: ROUNDS (5), DURATION (seconds per run; 10), CONNS (16),
# WRK_THREADS (2), PIN=1 (every server on CPU 0, wrk on CPU 1, one wrk
# thread), AB_OUT (also write the table there). Needs wrk, mosquitto,
# python3, curl. Loopback only; everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

[ "$#" -ge 2 ] || { sed -n '2,29p' "$0"; exit 2; }
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-16}"
WRK_THREADS="${WRK_THREADS:-2}"
MOSQUITTO="${MOSQUITTO:-/usr/sbin/mosquitto}"
for bin in wrk python3 curl; do
  command -v "$bin" >/dev/null 2>&1 || { echo "$bin is missing" >&2; exit 1; }
done
[ -x "$MOSQUITTO" ] || { echo "mosquitto is missing at $MOSQUITTO" >&2; exit 1; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  local pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "== kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

TOKEN="bench-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
MQTT_PORT="$(free_port)"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n' \
  "$MQTT_PORT" >"$WORK/mosquitto.conf"
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)

declare -A PORT=() PID=()
NAMES=()
for spec in "$@"; do
  name="${spec%%:*}" rest="${spec#*:}"
  bin="${rest%%:*}" extra=""
  [ "$rest" != "$bin" ] && extra="${rest#*:}"
  [ -x "$bin" ] || { echo "$name: no executable at $bin" >&2; exit 1; }
  dir="$WORK/$name"
  mkdir -p "$dir"
  PORT[$name]="$(free_port)"
  # shellcheck disable=SC2086 # $extra is a list of VAR=value words
  env -i PATH="$PATH" HOME="$dir" \
    CONFIG_ENV_FILE="$dir/.env" \
    CONFIG_DB_PATH="$dir/data/config.db" \
    CONFIG_LKG_CACHE_PATH="$dir/data/config.lkg.json" \
    CONFIG_MANAGER_PORT="${PORT[$name]}" \
    CONFIG_API_TOKENS="bench=$TOKEN:config.write" \
    MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT" \
    RUST_LOG=info \
    $extra \
    "$bin" >"$dir/server.log" 2>&1 &
  PID[$name]=$!
  PIDS+=($!)
  NAMES+=("$name")
done
for name in "${NAMES[@]}"; do
  url="http://127.0.0.1:${PORT[$name]}/api/config/health"
  for ((i = 0; i < 600; i++)); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
  curl -sf -o /dev/null -H "X-API-Token: $TOKEN" \
    "http://127.0.0.1:${PORT[$name]}/api/config/services/tts-worker" ||
    { echo "$name did not answer; its log:" >&2; tail -20 "$WORK/$name/server.log" >&2; exit 1; }
  if [ "${PIN:-0}" = 1 ]; then taskset -a -p -c 0 "${PID[$name]}" >/dev/null; fi
done

WRK=(wrk)
threads=$WRK_THREADS
if [ "${PIN:-0}" = 1 ]; then WRK=(taskset -c 1 wrk); threads=1; fi
ENDPOINTS=(get health)
path_of() { case $1 in get) echo /api/config/services/tts-worker ;; health) echo /api/config/health ;; esac; }

echo "== $(date -u +%FT%TZ) load average $(cut -d' ' -f1-3 /proc/loadavg); ${#NAMES[@]} variants, $ROUNDS rounds x ${DURATION}s, $CONNS connections, PIN=${PIN:-0}" >&2
for ((r = 0; r < ROUNDS; r++)); do
  for ep in "${ENDPOINTS[@]}"; do
    n=${#NAMES[@]}
    for ((k = 0; k < n; k++)); do
      name="${NAMES[$(((k + r) % n))]}"
      pid="${PID[$name]}"
      c0="$(cpu_ticks "$pid")"
      line="$(BENCH_TOKEN="$([ "$ep" = get ] && echo "$TOKEN")" "${WRK[@]}" -t"$threads" \
        -c"$CONNS" -d"${DURATION}s" --timeout 5s -s scripts/bench/wrk.lua \
        "http://127.0.0.1:${PORT[$name]}$(path_of "$ep")" | grep '^WRK ')"
      c1="$(cpu_ticks "$pid")"
      cpu="$(echo "$line" | awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" \
        '{split($2, n, "="); printf "cpu_us=%.1f", d / hz / n[2] * 1e6}')"
      load="$(cut -d' ' -f1 /proc/loadavg)"
      echo "$r ${line#WRK } $cpu load=$load" >>"$WORK/$name.$ep"
      echo "   round $r $ep $name: ${line#WRK } $cpu load $load" >&2
    done
  done
done

field() { grep -o " $2=[0-9.]*" "$1" | cut -d= -f2; }
{
  echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u +%F); wrk ${DURATION}s x $ROUNDS interleaved, $CONNS connections, PIN=${PIN:-0}; load average (1 min) during the runs $(cat "$WORK"/*.get "$WORK"/*.health | grep -o 'load=[0-9.]*' | cut -d= -f2 | sort -g | sed -n '1p;$p' | paste -sd'-')"
  echo
  echo "| endpoint | variant | req/s median (min-max) | × ${NAMES[0]} (median of rounds; min-max) | p50 ms | p99 ms | server CPU µs/request |"
  echo "|---|---|---|---|---|---|---|"
  for ep in "${ENDPOINTS[@]}"; do
    for name in "${NAMES[@]}"; do
      f="$WORK/$name.$ep"
      rps="$(field "$f" rps | median)"
      spread="$(field "$f" rps | sort -g | sed -n '1p;$p' | paste -sd'-' | awk -F- '{printf "%.0f-%.0f", $1, $2}')"
      ratios="$(paste -d' ' <(field "$f" rps) <(field "$WORK/${NAMES[0]}.$ep" rps) | awk '{printf "%.3f\n", $1 / $2}')"
      rmed="$(echo "$ratios" | median)"
      rspread="$(echo "$ratios" | sort -g | sed -n '1p;$p' | paste -sd'-')"
      printf '| %s | %s | %.0f (%s) | %s (%s) | %s | %s | %s |\n' "$ep" "$name" "$rps" "$spread" \
        "$rmed" "$rspread" "$(field "$f" p50_ms | median)" "$(field "$f" p99_ms | median)" \
        "$(grep -o 'cpu_us=[0-9.]*' "$f" | cut -d= -f2 | median)"
    done
  done
} | tee "$WORK/table.md"
if [ -n "${AB_OUT:-}" ]; then cp "$WORK/table.md" "$AB_OUT"; fi
