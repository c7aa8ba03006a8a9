#!/usr/bin/env bash
# mart-preprocess on 1 rank vs 2 ranks over the same corpus, in one run: wall time, audio per
# second, speed-up, peak memory per rank. Usage: bench/preprocess/stage_ranks.sh [BUILD] [TRACKS]
set -euo pipefail
BUILD=${1:-build}; TRACKS=${2:-120}
source "$(dirname "$0")/../../scripts/env.sh"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$BUILD/src/synth/mart-synth" --output "$W/corpus" --synth.tracks "$TRACKS" --synth.seconds 12 >/dev/null 2>&1
printf "%-6s %10s %14s %10s  %s\n" ranks "wall s" "audio h/s" speed-up "peak memory per rank"
base=0
for np in 1 2; do
  t0=$(date +%s.%N)
  out=$(mpirun -np $np "$BUILD/src/preprocess/mart-preprocess" --config configs/preprocess-demo.ini \
        --input "$W/corpus" --output "$W/shards$np" 2>&1)
  t=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{print a-b}')
  [ "$np" = 1 ] && base=$t
  mem=$(echo "$out" | sed -n 's/.*peak memory per rank: //p')
  awk -v np=$np -v t="$t" -v n="$TRACKS" -v b="$base" -v m="$mem" \
    'BEGIN{printf "%-6s %10.1f %14.3f %9.2fx  %s\n", np, t, n*12/3600/t, b/t, m}'
done
