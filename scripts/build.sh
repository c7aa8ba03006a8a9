#!/usr/bin/env bash
# Configures and builds mart into $MART_BUILD (default ./build). Extra arguments go to cmake.
# MART_TARGETS="mart-train mart-eval ..." builds only those targets (and what they need); the
# default builds everything, tests and benchmarks included.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cmake -S "$MART_ROOT" -B "$MART_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
if [ -n "${MART_TARGETS:-}" ]; then
  # shellcheck disable=SC2086
  cmake --build "$MART_BUILD" -j "$MART_JOBS" --target $MART_TARGETS
else
  cmake --build "$MART_BUILD" -j "$MART_JOBS"
fi
