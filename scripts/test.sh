#!/usr/bin/env bash
# The test command: installs what is missing, builds (warnings are errors), runs the whole suite.
set -euo pipefail
source "$(dirname "$0")/env.sh"
start=$(date +%s)
bash "$MART_ROOT/scripts/setup.sh"
bash "$MART_ROOT/scripts/build.sh" -DMART_WERROR=ON
built=$(date +%s)
echo "mart test: build took $((built - start)) s"
cd "$MART_BUILD"
ctest --output-on-failure -j 1 --timeout 900 "$@"
echo "mart test: suite took $(( $(date +%s) - built )) s"
