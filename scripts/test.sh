#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need when it is
# missing (mosquitto, Chromium + chromedriver, Python venv with Litestream and
# an S3-compatible server), then runs the test groups.
#
#   scripts/test.sh            # everything
#   scripts/test.sh unit       # unit tests only (no external components)
#   scripts/test.sh integration
#   scripts/test.sh contract
set -euo pipefail
cd "$(dirname "$0")/.."
group="${1:-all}"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
# The web UI tests (tests/ui.rs) drive Debian's headless Chromium via chromedriver.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
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
if [ -f scripts/test-deps.sh ] && [ "$group" != unit ]; then
  # shellcheck source=/dev/null
  source scripts/test-deps.sh
fi

case "$group" in
  unit)        cargo test --workspace --lib --bins ;;
  integration) cargo test --workspace --test '*' ;;
  contract)    cargo test --workspace --test 'contract*' ;;
  all)         cargo test --workspace ;;
  *) echo "unknown group $group (unit|integration|contract|all)" >&2; exit 2 ;;
esac
