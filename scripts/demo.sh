#!/usr/bin/env bash
# The main command: installs what is missing, builds, and runs the pipeline on the built-in demo
# corpus. Output goes to $MART_DEMO (default ./demo).
set -euo pipefail
source "$(dirname "$0")/env.sh"
DEMO=${MART_DEMO:-$MART_ROOT/demo}
NP=${MART_NP:-2}
bash "$MART_ROOT/scripts/setup.sh"
bash "$MART_ROOT/scripts/build.sh"
BIN=$MART_BUILD/src
t0=$(date +%s)
echo "== mart demo: 1/1 mart-synth writes the demo corpus ($NP ranks)"
mpirun -np "$NP" "$BIN/synth/mart-synth" --config "$MART_ROOT/configs/demo-synth.ini" --output "$DEMO/corpus"
echo "== mart demo: done in $(( $(date +%s) - t0 )) s; corpus in $DEMO/corpus"
