#!/usr/bin/env bash
# Refreshes docs/screenshots/*.png: runs the Chromium journey test with
# CM_UI_SCREENSHOTS set, so each step saves what the browser shows.
# Run it after changing the UI and commit the pictures with the change.
set -euo pipefail
cd "$(dirname "$0")/.."
CM_UI_SCREENSHOTS="$PWD/docs/screenshots" \
  cargo test -p config-manager --test ui operator_journey_in_chromium -- --exact
ls -1 docs/screenshots
