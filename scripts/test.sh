#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need when it is
# missing (mosquitto, Chromium + chromedriver, Python venv with Litestream and
# an S3-compatible server), then runs the test groups.
#
#   scripts/test.sh            # everything
#   scripts/test.sh unit       # unit tests only (no external components)
#   scripts/test.sh integration
#   scripts/test.sh contract
#   scripts/test.sh python     # the Python client (clients/python): lint, types, pytest
set -euo pipefail
cd "$(dirname "$0")/.."
group="${1:-all}"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
# The web UI tests (tests/ui.rs) drive Debian's headless Chromium via chromedriver.
if [ "$group" != python ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
fi
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ "${#need_apt[@]}" -gt 0 ] && [ "$group" != unit ]; then
  echo "== installing ${need_apt[*]} (apt)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing ${need_apt[*]}: run 'sudo apt-get install ${need_apt[*]}'" >&2; exit 1
  fi
fi
export PATH="$PATH:/usr/sbin"

# The project-local Python venv (.venv-test/): Litestream and moto for the backup
# tests, paho-mqtt/cryptography/rfc8785 for the cross-language MQTT test.
if [ -f scripts/test-deps.sh ] && [ "$group" != unit ] && [ "$group" != python ]; then
  # shellcheck source=/dev/null
  source scripts/test-deps.sh
fi

# The Python client: its own venv (.venv-client/) with TARS' pins
# (asyncio-mqtt==0.16.2 on paho-mqtt<2) next to the client, so a conflict
# shows up here; ruff, mypy, then pytest against the binary built here and a
# mosquitto the tests start themselves.
# The client venv is set up before any test group runs: some Rust tests
# (tests/applied_clients.rs) start Python clients from it.
client_venv() {
  local venv="$PWD/.venv-client" stamp
  if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv"
    python3 -m venv "$venv"
  fi
  # tars-core's pins (reference: TARS' pyproject), installed with the client.
  # asyncio-mqtt 0.16 declares no upper bound on paho but only works on
  # paho 1.x, so TARS runs paho 1.6: pinned here so the suite runs on it.
  local tars_pins=("asyncio-mqtt==0.16.2" "paho-mqtt>=1.6,<2" "pydantic>=2.9" "cryptography>=42" "httpx>=0.27" "orjson")
  stamp="$( (cat clients/python/pyproject.toml; echo "${tars_pins[*]}") | sha256sum | cut -c1-16)"
  if ! grep -qxF "$stamp" "$venv/.installed" 2>/dev/null; then
    echo "== installing the Python client and TARS' pins into $venv"
    "$venv/bin/pip" install --quiet "${tars_pins[@]}" -e "./clients/python[test]" || {
      echo "pip could not install clients/python into $venv; check access to PyPI" >&2
      return 1
    }
    echo "$stamp" >"$venv/.installed"
  fi
  "$venv/bin/pip" check
}

python_client_tests() {
  local venv="$PWD/.venv-client"
  "$venv/bin/python" -c 'import asyncio_mqtt, config_manager_client, orjson, paho.mqtt; print("python client installs beside tars-core pins (asyncio-mqtt 0.16.2, paho", paho.mqtt.__version__ + ")")'
  # The debug build by default (quick to build); CONFIG_MANAGER_BIN picks
  # another, e.g. target/release/config-manager.
  if [ -z "${CONFIG_MANAGER_BIN:-}" ]; then
    cargo build -q -p config-manager
    export CONFIG_MANAGER_BIN="$PWD/target/debug/config-manager"
  fi
  (
    cd clients/python
    "$venv/bin/ruff" check .
    "$venv/bin/ruff" format --check .
    "$venv/bin/mypy"
    "$venv/bin/pytest" -q
  )
  # The same tests on paho-mqtt 2.x (what a service without asyncio-mqtt
  # gets), in a second venv; PYTHON_CLIENT_PAHO2=0 skips it.
  if [ "${PYTHON_CLIENT_PAHO2:-1}" = 1 ]; then
    local venv2="$PWD/.venv-client-paho2"
    [ -x "$venv2/bin/python" ] || python3 -m venv "$venv2"
    "$venv2/bin/pip" install --quiet "paho-mqtt>=2,<3" -e "./clients/python[test]"
    (cd clients/python && "$venv2/bin/pytest" -q)
  fi
}

if [ "$group" != unit ] && [ "$group" != contract ]; then
  client_venv
fi

case "$group" in
  unit)        cargo test --workspace --lib --bins ;;
  integration) cargo test --workspace --test '*'; python_client_tests ;;
  contract)    cargo test --workspace --test 'contract*' ;;
  python)      python_client_tests ;;
  all)         cargo test --workspace; python_client_tests ;;
  *) echo "unknown group $group (unit|integration|contract|python|all)" >&2; exit 2 ;;
esac
