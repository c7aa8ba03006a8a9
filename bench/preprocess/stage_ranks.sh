#!/usr/bin/env bash
# mart-preprocess on 1 rank vs 2 ranks over the same corpus, in one run: wall time, audio per
# second, speed-up, peak memory per rank. The rank counts alternate for ROUNDS rounds and the
# median wall time of each is reported (single runs on a shared machine vary by 20%).
# Usage: bench/preprocess/stage_ranks.sh [BUILD] [TRACKS] [ROUNDS]
set -euo pipefail
BUILD=${1:-build}; TRACKS=${2:-120}; ROUNDS=${3:-3}
source "$(dirname "$0")/../../scripts/env.sh"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$BUILD/src/synth/mart-synth" --output "$W/corpus" --synth.tracks "$TRACKS" --synth.seconds 12 >/dev/null 2>&1
declare -A times mem
for r in $(seq "$ROUNDS"); do
  for np in 1 2; do
    rm -rf "$W/shards$np"
    t0=$(date +%s.%N)
    out=$(mpirun -np $np "$BUILD/src/preprocess/mart-preprocess" --config configs/preprocess-demo.ini \
          --input "$W/corpus" --output "$W/shards$np" 2>&1)
    times[$np]+="$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{print a-b}') "
    mem[$np]=$(echo "$out" | sed -n 's/.*peak memory per rank: //p')
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
base=$(echo "${times[1]}" | median)
printf "%-6s %10s %14s %10s  %-24s %s\n" ranks "wall s" "audio h/s" speed-up "peak memory per rank" "all rounds (s)"
for np in 1 2; do
  t=$(echo "${times[$np]}" | median)
  awk -v np=$np -v t="$t" -v n="$TRACKS" -v b="$base" -v m="${mem[$np]}" -v all="${times[$np]}" \
    'BEGIN{printf "%-6s %10.1f %14.3f %9.2fx  %-24s %s\n", np, t, n*12/3600/t, b/t, m, all}'
done
