#!/usr/bin/env bash
# Refreshes docs/screenshots/*.png: runs the Chromium tests with
# CM_UI_SCREENSHOTS set, so each step saves what the browser shows: the
# operator journey (tests/ui.rs) and the round-2 tests (tests/ui_round2.rs,
# tests/ui_round2b.rs: the save's arrival, the phone layout, tab indicators,
# diffs, history on a phone, sections, adoption notes).
# Run it after changing the UI and commit the pictures with the change.
set -euo pipefail
cd "$(dirname "$0")/.."
export CM_UI_SCREENSHOTS="$PWD/docs/screenshots"
cargo test -p config-manager --test ui operator_journey_in_chromium -- --exact
cargo test -p config-manager --test ui_round2 --test ui_round2b -- --test-threads=1
ls -1 docs/screenshots
