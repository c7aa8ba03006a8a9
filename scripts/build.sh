#!/usr/bin/env bash
# Configures and builds mart into $MART_BUILD (default ./build). Extra arguments go to cmake.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cmake -S "$MART_ROOT" -B "$MART_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
cmake --build "$MART_BUILD" -j "$MART_JOBS"
